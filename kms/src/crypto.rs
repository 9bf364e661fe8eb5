//! Symmetric key material and the ciphertext format of `Encrypt`/`Decrypt`.
//!
//! A ciphertext is `0x01 | len(version_id) | version_id | nonce(12) | AES-GCM(ct || tag)`.
//! The AES-GCM associated data binds the key id, the version id and the caller's
//! `aad_context`, so a ciphertext cannot be moved to another key or context.

use crate::error::KmsError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use lockbox_proto::Wiping;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// Format byte of every ciphertext this module makes.
const FORMAT_V1: u8 = 0x01;
/// Domain separation for the associated data.
const AAD_LABEL: &[u8] = b"lockbox-kms ciphertext v1";
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

type Aes192Gcm = AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill_random(buf: &mut [u8]) {
    // The OS random source failing is unrecoverable for a KMS: refusing to run is the only
    // safe answer, and getrandom only fails when the kernel has no entropy interface at all.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(buf).expect("the operating system's random source failed");
}

/// AES key sizes, as in Yandex KMS's `SymmetricAlgorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// AES-128-GCM.
    Aes128,
    /// AES-192-GCM.
    Aes192,
    /// AES-256-GCM.
    Aes256,
}

impl Algorithm {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128 => 16,
            Algorithm::Aes192 => 24,
            Algorithm::Aes256 => 32,
        }
    }
}

/// Raw key material. Zeroized on drop, never printed, serialized only into the sealed keystore.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMaterial(#[serde(with = "lockbox_proto::bytes::zeroizing")] Zeroizing<Vec<u8>>);

impl KeyMaterial {
    /// Fresh random material of `len` bytes.
    pub fn random(len: usize) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        fill_random(&mut bytes);
        Self(bytes)
    }

    /// Wraps existing bytes.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The raw bytes; keep uses short and never copy them anywhere unzeroized.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial([REDACTED; {}])", self.0.len())
    }
}

/// An initialised AES-GCM cipher for one key version (key schedule precomputed).
#[derive(Clone)]
pub enum VersionCipher {
    /// AES-128-GCM.
    Aes128(Box<Aes128Gcm>),
    /// AES-192-GCM.
    Aes192(Box<Aes192Gcm>),
    /// AES-256-GCM.
    Aes256(Box<Aes256Gcm>),
}

impl fmt::Debug for VersionCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VersionCipher([REDACTED])")
    }
}

impl VersionCipher {
    /// A cipher over `material` of `algorithm`.
    pub fn new(algorithm: Algorithm, material: &KeyMaterial) -> Result<Self, KmsError> {
        let bad = |_| KmsError::Internal("key material has the wrong length".into());
        let k = material.expose();
        Ok(match algorithm {
            Algorithm::Aes128 => Self::Aes128(Box::new(Aes128Gcm::new_from_slice(k).map_err(bad)?)),
            Algorithm::Aes192 => Self::Aes192(Box::new(Aes192Gcm::new_from_slice(k).map_err(bad)?)),
            Algorithm::Aes256 => Self::Aes256(Box::new(Aes256Gcm::new_from_slice(k).map_err(bad)?)),
        })
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
        let nonce = &Nonce::from(*nonce);
        let payload = Payload { msg, aad };
        match self {
            Self::Aes128(c) => c.encrypt(nonce, payload).ok(),
            Self::Aes192(c) => c.encrypt(nonce, payload).ok(),
            Self::Aes256(c) => c.encrypt(nonce, payload).ok(),
        }
    }

    fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
        let nonce = &Nonce::from(*nonce);
        let payload = Payload { msg, aad };
        match self {
            Self::Aes128(c) => c.decrypt(nonce, payload).ok(),
            Self::Aes192(c) => c.decrypt(nonce, payload).ok(),
            Self::Aes256(c) => c.decrypt(nonce, payload).ok(),
        }
    }
}

/// Bytes of associated data built on the stack; a longer context goes to the heap.
const INLINE_AAD: usize = 256;

/// The associated data of one operation: on the stack when it fits, as it does for the
/// secrets daemon's decrypt on every read of a secret with its own key.
#[expect(
    clippy::large_enum_variant,
    reason = "built and used in one call, on the stack to save an allocation"
)]
enum AssociatedData {
    Inline { bytes: [u8; INLINE_AAD], len: usize },
    Heap(Vec<u8>),
}

impl AssociatedData {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { bytes, len } => &bytes[..*len],
            Self::Heap(bytes) => bytes,
        }
    }
}

fn associated_data(key_id: &str, version_id: &str, aad_context: &[u8]) -> AssociatedData {
    // Ids are 20 bytes, far below u32::MAX.
    let parts = [
        AAD_LABEL,
        &(key_id.len() as u32).to_be_bytes(),
        key_id.as_bytes(),
        &(version_id.len() as u32).to_be_bytes(),
        version_id.as_bytes(),
        aad_context,
    ];
    let len = parts.iter().map(|p| p.len()).sum();
    if len > INLINE_AAD {
        return AssociatedData::Heap(parts.concat());
    }
    let mut bytes = [0; INLINE_AAD];
    let mut at = 0;
    for part in parts {
        bytes[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    AssociatedData::Inline { bytes, len }
}

/// Encrypts `plaintext` under one key version.
pub fn encrypt(
    cipher: &VersionCipher,
    key_id: &str,
    version_id: &str,
    aad_context: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let version = version_id.as_bytes();
    let version_len = u8::try_from(version.len())
        .map_err(|_| KmsError::Internal("version id too long for the ciphertext format".into()))?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let sealed = cipher
        .seal(
            &nonce,
            associated_data(key_id, version_id, aad_context).as_bytes(),
            plaintext,
        )
        .ok_or_else(|| KmsError::Internal("encryption failed".into()))?;
    let mut out = Vec::with_capacity(2 + version.len() + NONCE_LEN + sealed.len());
    out.push(FORMAT_V1);
    out.push(version_len);
    out.extend_from_slice(version);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The version id a ciphertext names, if it is shaped like one of ours.
pub fn version_of(ciphertext: &[u8]) -> Option<&str> {
    let (&format, rest) = ciphertext.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if format != FORMAT_V1 {
        return None;
    }
    let id = rest.get(..usize::from(len))?;
    std::str::from_utf8(id).ok()
}

/// Decrypts a ciphertext made by [`encrypt`] with the same key, version and context.
pub fn decrypt(
    cipher: &VersionCipher,
    key_id: &str,
    version_id: &str,
    aad_context: &[u8],
    ciphertext: &[u8],
) -> Result<Wiping, KmsError> {
    // The same test as `version_of(ciphertext) == Some(version_id)`, without checking the
    // UTF-8 of an id the caller already read from this ciphertext.
    let names_version = matches!(ciphertext, [FORMAT_V1, len, rest @ ..]
        if usize::from(*len) == version_id.len() && rest.starts_with(version_id.as_bytes()));
    if !names_version {
        return Err(KmsError::DecryptionFailed);
    }
    let header = 2 + version_id.len();
    let body = ciphertext
        .get(header..)
        .filter(|b| b.len() >= NONCE_LEN + TAG_LEN)
        .ok_or(KmsError::DecryptionFailed)?;
    let (nonce, sealed) = body
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(KmsError::DecryptionFailed)?;
    cipher
        .open(
            nonce,
            associated_data(key_id, version_id, aad_context).as_bytes(),
            sealed,
        )
        .map(Wiping::new)
        .ok_or(KmsError::DecryptionFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(alg: Algorithm) -> VersionCipher {
        VersionCipher::new(alg, &KeyMaterial::random(alg.key_len())).unwrap()
    }

    #[test]
    fn round_trip_every_algorithm() {
        for alg in [Algorithm::Aes128, Algorithm::Aes192, Algorithm::Aes256] {
            let c = cipher(alg);
            let ct = encrypt(&c, "key", "ver", b"ctx", b"secret").unwrap();
            assert_eq!(version_of(&ct), Some("ver"));
            assert_eq!(&*decrypt(&c, "key", "ver", b"ctx", &ct).unwrap(), b"secret");
        }
    }

    #[test]
    fn wrong_context_key_or_tampering_fails_opaquely() {
        let c = cipher(Algorithm::Aes256);
        let ct = encrypt(&c, "key", "ver", b"ctx", b"secret").unwrap();
        assert_eq!(
            decrypt(&c, "key", "ver", b"other", &ct),
            Err(KmsError::DecryptionFailed)
        );
        assert_eq!(
            decrypt(&c, "key2", "ver", b"ctx", &ct),
            Err(KmsError::DecryptionFailed)
        );
        assert_eq!(
            decrypt(&cipher(Algorithm::Aes256), "key", "ver", b"ctx", &ct),
            Err(KmsError::DecryptionFailed)
        );
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(
                decrypt(&c, "key", "ver", b"ctx", &bad).is_err(),
                "flip at {i}"
            );
        }
        // Another version's id, however close, does not name this ciphertext.
        for version in ["ve", "verr", "VER", "", "ver\0"] {
            assert_eq!(
                decrypt(&c, "key", version, b"ctx", &ct),
                Err(KmsError::DecryptionFailed),
                "{version:?}"
            );
        }
        assert!(decrypt(&c, "key", "ver", b"ctx", &ct[..ct.len() - 1]).is_err());
        assert!(decrypt(&c, "key", "ver", b"ctx", &[]).is_err());
    }

    #[test]
    fn contexts_of_every_length_bind_the_ciphertext() {
        let c = cipher(Algorithm::Aes256);
        // Up to the stack buffer, just past it, and the largest context accepted.
        let inline_room = INLINE_AAD - (AAD_LABEL.len() + 8 + "key".len() + "ver".len());
        for len in [0, 1, inline_room, inline_room + 1, 8192] {
            let context: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let aad = associated_data("key", "ver", &context);
            assert!(matches!(aad, AssociatedData::Inline { .. }) == (len <= inline_room));
            let expected = [
                AAD_LABEL,
                &[0, 0, 0, 3],
                b"key",
                &[0, 0, 0, 3],
                b"ver",
                &context,
            ]
            .concat();
            assert_eq!(aad.as_bytes(), expected, "context of {len} bytes");
            let ct = encrypt(&c, "key", "ver", &context, b"secret").unwrap();
            assert_eq!(
                &*decrypt(&c, "key", "ver", &context, &ct).unwrap(),
                b"secret"
            );
            let mut other = context.clone();
            match other.last_mut() {
                Some(b) => *b ^= 1,
                None => other.push(0),
            }
            assert_eq!(
                decrypt(&c, "key", "ver", &other, &ct),
                Err(KmsError::DecryptionFailed),
                "context of {len} bytes"
            );
        }
    }

    #[test]
    fn version_of_rejects_garbage() {
        assert_eq!(version_of(&[]), None);
        assert_eq!(version_of(&[2, 1, b'a']), None);
        assert_eq!(version_of(&[1, 5, b'a']), None);
    }

    #[test]
    fn key_material_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", KeyMaterial::random(32)),
            "KeyMaterial([REDACTED; 32])"
        );
    }
}
