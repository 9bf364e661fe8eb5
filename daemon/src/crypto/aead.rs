//! AES-256-GCM as the daemon uses it: `nonce || ciphertext || tag` in one buffer, a fresh
//! random nonce per message, and associated data built from a label and length-prefixed ids.

use crate::error::LockboxError;
use crate::random::fill_random;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use lockbox_proto::Wiping;
use zeroize::Zeroize;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Associated data: a label, then each part after its length (big-endian u32). A label and
/// three ids fit in its 128 inline bytes, so the read path builds it on the stack; longer
/// parts go to the heap. Read it as a byte slice.
pub(crate) struct Aad {
    inline: [u8; Aad::INLINE],
    len: usize,
    heap: Vec<u8>,
}

impl Aad {
    const INLINE: usize = 128;
}

impl std::ops::Deref for Aad {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.len <= Self::INLINE {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

pub(crate) fn aad(label: &[u8], parts: &[&str]) -> Aad {
    let len = label.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut aad = Aad {
        inline: [0; Aad::INLINE],
        len,
        heap: Vec::new(),
    };
    let out = if len <= Aad::INLINE {
        &mut aad.inline[..len]
    } else {
        aad.heap.resize(len, 0);
        &mut aad.heap[..]
    };
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(label);
    for p in parts {
        // Ids are short; their lengths fit in u32.
        put(&(p.len() as u32).to_be_bytes());
        put(p.as_bytes());
    }
    aad
}

/// `nonce || ciphertext || tag`, encrypted in place in one buffer sized up front, so no
/// copy of the plaintext is left behind in memory the buffer gave back.
pub(crate) fn seal(
    cipher: &Aes256Gcm,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, LockboxError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    match cipher.encrypt_in_place_detached(&Nonce::from(nonce), aad, &mut out[NONCE_LEN..]) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            out.zeroize();
            Err(LockboxError::Internal("encryption failed".into()))
        }
    }
}

pub(crate) fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Result<Wiping, LockboxError> {
    let mut plain = Wiping::new(Vec::with_capacity(sealed.len()));
    open_into(cipher, aad, sealed, &mut plain)?;
    Ok(plain)
}

/// Appends the plaintext of `nonce || ciphertext || tag` to `out`, decrypting in place. On
/// failure `out` is left as it was, the bytes it was given wiped.
pub(crate) fn open_into(
    cipher: &Aes256Gcm,
    aad: &[u8],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LockboxError> {
    let (nonce, body) = sealed
        .split_first_chunk::<NONCE_LEN>()
        .and_then(|(nonce, rest)| Some((nonce, rest.split_last_chunk::<TAG_LEN>()?)))
        .ok_or_else(|| LockboxError::Internal("stored ciphertext is truncated".into()))?;
    let (ciphertext, tag) = body;
    let start = out.len();
    // `out` may be an answer buffer holding other plaintexts: it grows by moving and wiping.
    lockbox_proto::bytes::reserve_wiped(out, ciphertext.len());
    out.extend_from_slice(ciphertext);
    let opened = cipher.decrypt_in_place_detached(
        &Nonce::from(*nonce),
        aad,
        &mut out[start..],
        &Tag::from(*tag),
    );
    if opened.is_err() {
        out[start..].zeroize();
        out.truncate(start);
        return Err(LockboxError::Internal(
            "stored payload failed authentication".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::KeyInit;

    fn cipher() -> Aes256Gcm {
        let mut key = [0u8; 32];
        fill_random(&mut key);
        Aes256Gcm::new(&key.into())
    }

    #[test]
    fn sealed_bytes_open_only_under_the_same_key_and_associated_data() {
        let (a, b) = (cipher(), cipher());
        let sealed = seal(&a, b"ids", b"plaintext").unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + 9 + TAG_LEN);
        assert_eq!(open(&a, b"ids", &sealed).unwrap().as_slice(), b"plaintext");
        assert!(open(&a, b"other ids", &sealed).is_err());
        assert!(open(&b, b"ids", &sealed).is_err());
        // Fresh nonces: the same message seals differently each time.
        assert_ne!(seal(&a, b"ids", b"plaintext").unwrap(), sealed);
    }

    #[test]
    fn opening_into_a_buffer_appends_or_leaves_it_as_it_was() {
        let cipher = cipher();
        let sealed = seal(&cipher, b"ids", b"plaintext").unwrap();
        let mut out = b"head".to_vec();
        open_into(&cipher, b"ids", &sealed, &mut out).unwrap();
        assert_eq!(out, b"headplaintext");

        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let truncated = &sealed[..NONCE_LEN + TAG_LEN - 1];
        for (bytes, aad) in [
            (&tampered[..], &b"ids"[..]),
            (&sealed[..], b"x"),
            (truncated, b"ids"),
        ] {
            let mut out = b"head".to_vec();
            let err = open_into(&cipher, aad, bytes, &mut out);
            assert!(matches!(err, Err(LockboxError::Internal(_))));
            assert_eq!(out, b"head");
        }
    }

    #[test]
    fn associated_data_is_the_same_on_the_stack_and_on_the_heap() {
        let expected = |label: &[u8], parts: &[&str]| {
            let mut v = label.to_vec();
            for p in parts {
                v.extend_from_slice(&(p.len() as u32).to_be_bytes());
                v.extend_from_slice(p.as_bytes());
            }
            v
        };
        let long = "x".repeat(Aad::INLINE);
        for parts in [&["s1", "v1"][..], &["s1", &long, "k"][..], &[][..]] {
            assert_eq!(&*aad(b"label", parts), &expected(b"label", parts)[..]);
        }
        // Sealed under long ids (heap), opened under the same ids, refused under others.
        let cipher = cipher();
        let sealed = seal(&cipher, &aad(b"label", &[&long]), b"plaintext").unwrap();
        assert!(open(&cipher, &aad(b"label", &[&long]), &sealed).is_ok());
        assert!(open(&cipher, &aad(b"label", &[&long[1..]]), &sealed).is_err());
    }
}
