//! The shape every resource id has on the wire, in both services: a three-letter prefix and
//! 17 characters, 20 in all, drawn from `[0-9a-v]`. Checking the shape first lets a malformed
//! id get `InvalidArgument` rather than `NotFound`.

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
