//! Resource ids: a three-letter prefix and 17 random characters, like Yandex Cloud ids.

/// Alphabet of the random part: 32 symbols, so each character carries 5 bits (85 in all).
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuv0123456789";

/// Prefix of KMS key and key version ids.
pub const KEY_PREFIX: &str = "abj";

/// Length of every id.
pub const ID_LEN: usize = 20;

/// A fresh random id with `prefix` (three characters).
pub fn new_id(prefix: &str) -> String {
    let mut random = [0u8; ID_LEN];
    crate::crypto::fill_random(&mut random);
    let mut id = String::with_capacity(ID_LEN);
    id.push_str(prefix);
    for b in &random[prefix.len()..] {
        id.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    id
}

/// Whether `s` could be an id this service issued: checks shape only, so a malformed id gets
/// `InvalidArgument` instead of `NotFound`.
pub fn looks_like_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_length_and_alphabet() {
        let a = new_id(KEY_PREFIX);
        let b = new_id(KEY_PREFIX);
        assert!(a.starts_with("abj"));
        assert!(looks_like_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!looks_like_id("abj"));
        assert!(!looks_like_id("ABJ12345678901234567"));
    }
}
