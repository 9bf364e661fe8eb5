//! Resource ids that sort by creation time: a three-letter prefix, 10 characters of
//! milliseconds and 7 random characters, in an alphabet whose ASCII order matches its value
//! order. Listing a key range of ids is therefore listing in creation order.

use crate::envelope::fill_random;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use lockbox_proto::ids::{ALPHABET, ID_LEN, looks_like_id};

/// Secret ids.
pub const SECRET: &str = "e6q";
/// Version ids.
pub const VERSION: &str = "e6v";
/// Operation ids.
pub const OPERATION: &str = "e6o";
/// Service account ids.
pub const SERVICE_ACCOUNT: &str = "aje";
/// Service account key ids.
pub const SERVICE_ACCOUNT_KEY: &str = "ajk";
/// Organization ids.
pub const ORGANIZATION: &str = "bpf";
/// Cloud ids.
pub const CLOUD: &str = "b1g";
/// Folder ids.
pub const FOLDER: &str = "b1f";

/// The last time component handed out, so ids made in the same millisecond still increase.
static LAST: AtomicU64 = AtomicU64::new(0);

fn next_time() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A new id with `prefix`, greater than every id this process made before.
pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(ID_LEN);
    id.push_str(prefix);
    let time = next_time();
    for i in (0..10).rev() {
        id.push(char::from(ALPHABET[((time >> (i * 5)) & 31) as usize]));
    }
    let mut random = [0u8; 7];
    fill_random(&mut random);
    for b in random {
        id.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_have_the_shape() {
        let mut previous = new_id(SECRET);
        for _ in 0..1000 {
            let next = new_id(SECRET);
            assert!(next > previous, "{next} after {previous}");
            assert!(looks_like_id(&next));
            previous = next;
        }
        assert!(!looks_like_id("e6q"));
        assert!(!looks_like_id("E6Q0000000000000000000"));
    }
}
