//! Resource ids that sort by creation time: a three-letter prefix, 10 characters of
//! milliseconds, 2 characters counting the ids made within that millisecond and 5 random
//! characters, in an alphabet whose ASCII order matches its value order. Listing a key range
//! of ids is therefore listing in creation order.

use crate::random::fill_random;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use lockbox_proto::ids::{ALPHABET, ID_LEN, IdHashing, looks_like_id};

/// Secret ids.
pub const SECRET: &str = "e6q";
/// Version ids.
pub const VERSION: &str = "e6v";
/// Operation ids.
pub const OPERATION: &str = "e6o";
/// Backup ids.
pub const BACKUP: &str = "e6b";
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

/// Bits of the in-millisecond count (two characters): 1,024 ids per millisecond before the
/// time component has to run ahead of the clock to keep ids increasing.
const COUNT_BITS: u32 = 10;

/// The last stamp handed out: milliseconds, then the count within that millisecond.
static LAST: AtomicU64 = AtomicU64::new(0);

/// The next stamp: the clock's millisecond with a count of 0, or one past the last stamp
/// when that is later (more ids in this millisecond, or a clock that stepped back).
fn next_stamp() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> COUNT_BITS)
    });
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = (now << COUNT_BITS).max(last + 1);
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
    // Ten characters of milliseconds, then two of the count.
    let stamp = next_stamp();
    for i in (0..12).rev() {
        id.push(char::from(ALPHABET[((stamp >> (i * 5)) & 31) as usize]));
    }
    let mut random = [0u8; 5];
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
    fn id_hashes_spread_over_shards_and_buckets() {
        use std::hash::BuildHasher;
        let hashing = IdHashing::default();
        let mut shards = [0u32; 32];
        let mut low = std::collections::HashSet::new();
        for _ in 0..32_000 {
            let h = hashing.hash_one(new_id(SECRET));
            shards[((h >> 32) % 32) as usize] += 1;
            low.insert(h & 0xffff);
        }
        // About 1,000 each; a skewed hash would leave some shards far emptier.
        assert!(
            shards.iter().all(|&n| (700..1300).contains(&n)),
            "{shards:?}"
        );
        // Ids made in the same millisecond differ only in their count and random tail.
        assert!(
            low.len() > 20_000,
            "{} distinct low 16-bit values",
            low.len()
        );
    }

    #[test]
    fn the_time_component_keeps_to_the_clock_under_load() {
        let millis = |id: &str| {
            id[3..13]
                .bytes()
                .map(|c| ALPHABET.iter().position(|&a| a == c).unwrap_or(0) as u64)
                .fold(0, |acc, v| acc << 5 | v)
        };
        let now = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let before = now();
        let mut last = String::new();
        for _ in 0..20_000 {
            last = new_id(VERSION);
        }
        let after = now();
        // 20,000 ids in a few milliseconds. Ahead of the clock by a millisecond per 1,024
        // ids at most (other tests make ids meanwhile too); a millisecond per id, as before,
        // would be 20 s ahead.
        let at = millis(&last);
        assert!(
            (before..=after + 2_000).contains(&at),
            "id time {at} outside {before}..={after} + 2 s"
        );
    }

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
