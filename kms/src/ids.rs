//! Resource ids: a three-letter prefix and 17 random characters, like Yandex Cloud ids.

pub use lockbox_proto::ids::{ALPHABET, ID_LEN, looks_like_id};

/// Prefix of KMS key and key version ids.
pub const KEY_PREFIX: &str = "abj";

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
