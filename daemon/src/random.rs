//! Randomness for keys, nonces and ids: the operating system's CSPRNG, served from a small
//! per-thread pool so that the handful of values a new version needs cost one system call per
//! many versions.

use zeroize::Zeroize;

/// Bytes of the operating system's CSPRNG each thread fetches at once.
const RANDOM_POOL: usize = 4096;

/// A thread's unused random bytes: fetched from the kernel a pool at a time, handed out
/// once each and wiped as they are handed out.
struct RandomPool {
    bytes: [u8; RANDOM_POOL],
    used: usize,
}

impl Drop for RandomPool {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

thread_local! {
    static POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool {
            bytes: [0; RANDOM_POOL],
            used: RANDOM_POOL,
        })
    };
}

fn os_random(buf: &mut [u8]) {
    // Without randomness no key can be made safely; refusing to continue is the only answer.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(buf).expect("the operating system's random source failed");
}

/// Fills `buf` from the operating system's CSPRNG. Small requests (keys, nonces, ids) come
/// from a per-thread pool refilled 4 KiB at a time, so a version's five random values
/// (about 70 bytes) cost one system call per fifty or so versions instead of five each.
pub fn fill_random(buf: &mut [u8]) {
    if buf.len() > RANDOM_POOL / 8 {
        return os_random(buf);
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.used + buf.len() > RANDOM_POOL {
            os_random(&mut pool.bytes);
            pool.used = 0;
        }
        let (start, end) = (pool.used, pool.used + buf.len());
        buf.copy_from_slice(&pool.bytes[start..end]);
        pool.bytes[start..end].zeroize();
        pool.used = end;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_random_bytes_are_never_handed_out_twice() {
        let mut seen = std::collections::HashSet::new();
        // Several refills' worth of 16-byte values.
        for _ in 0..(3 * RANDOM_POOL / 16) {
            let mut v = [0u8; 16];
            fill_random(&mut v);
            assert!(seen.insert(v), "a repeated 16-byte random value");
        }
        let mut big = vec![0u8; RANDOM_POOL];
        fill_random(&mut big);
        assert!(big.iter().any(|&b| b != 0));
    }
}
