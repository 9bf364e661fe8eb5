//! The shape every resource id has on the wire, in both services: a three-letter prefix and
//! 17 characters, 20 in all, drawn from `[0-9a-v]`. Checking the shape first lets a malformed
//! id get `InvalidArgument` rather than `NotFound`. Also the hasher of in-memory maps keyed
//! by ids the process made itself ([`IdHasher`]).

/// The id alphabet, in ascending ASCII order: 32 symbols, 5 bits each.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// Length of every id.
pub const ID_LEN: usize = 20;

/// `IN_ALPHABET[b]`: whether byte `b` is in [`ALPHABET`].
const IN_ALPHABET: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};

/// Whether `s` has the shape of an id.
pub fn looks_like_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| IN_ALPHABET[usize::from(b)])
}

/// Hashes ids in in-memory maps: FxHash-style, a rotate, an xor and a multiplication per
/// eight bytes, several times cheaper than SipHash on a 20-character id.
///
/// It has no key, which is safe only for maps whose keys the process made itself: resource
/// ids, which end in OS randomness (lockboxd's read cache and bindings), and request ids,
/// which count up (a client's calls in flight). No peer can fill such a map with colliding
/// keys; it can only look up keys of its choosing, which costs one probe.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

/// Builds [`IdHasher`]s, for `HashMap<_, _, IdHashing>`.
pub type IdHashing = std::hash::BuildHasherDefault<IdHasher>;

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // A product's high bits depend on all of its input, its low ones only on the input's
        // low bits; tables index by the low bits, so bring the high ones down.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if rest.is_empty() {
            return;
        }
        // The tail as one word without a variable-length copy: the last eight bytes,
        // overlapping the last chunk, or the few bytes there are.
        let word = match bytes.last_chunk::<8>() {
            Some(last) => u64::from_le_bytes(*last),
            None => rest.iter().fold(0, |w, &b| (w << 8) | u64::from(b)),
        };
        self.mix(word);
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(looks_like_id("e6q0123456789abcdefg"));
        assert!(looks_like_id("abjuvuvuvuvuvuvuvuvu"));
        assert!(!looks_like_id("e6q"));
        assert!(!looks_like_id("e6q0123456789abcdefw"));
        assert!(!looks_like_id("E6Q0123456789abcdefg"));
        assert!(!looks_like_id("e6q0123456789abcdéf"));
    }
}
