//! Symmetric key material and the ciphertext format of `Encrypt`/`Decrypt`.
//!
//! A ciphertext is `0x02 | len(version_id) | version_id | salt(16) | nonce(12) | ct || tag`.
//! Each message is sealed with AES-GCM under its own key, derived from the version's key and
//! the message's random salt (SP 800-108 counter-mode KDF, HMAC-SHA256), so a version's key
//! never wears out: the nonce-collision bound of random 96-bit nonces (about 2^32 messages
//! under one key) applies to each derived key, which seals one message. The associated data
//! binds the format, the key id, the version id and the caller's `aad_context`, so a
//! ciphertext cannot be moved to another key or context.
//!
//! Format `0x01` (`0x01 | len | version_id | nonce(12) | ct || tag`, sealed directly under
//! the version's key) is what earlier releases wrote; it is still read, never written.

use crate::error::KmsError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use hmac::{Hmac, Mac};
use lockbox_proto::Wiping;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

/// Format byte of ciphertexts sealed directly under a version's key (read only).
const FORMAT_V1: u8 = 0x01;
/// Format byte of ciphertexts sealed under a per-message key: every one this module makes.
const FORMAT_V2: u8 = 0x02;
/// Domain separation for the associated data of format 1.
const AAD_LABEL_V1: &[u8] = b"lockbox-kms ciphertext v1";
/// Domain separation for the associated data of format 2.
const AAD_LABEL_V2: &[u8] = b"lockbox-kms ciphertext v2";
/// The KDF's label for a message key.
const KDF_LABEL: &[u8] = b"lockbox-kms message key";
/// Random salt per message, from which its key is derived.
const SALT_LEN: usize = 16;
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

/// AES-GCM of one key size, key schedule precomputed.
#[derive(Clone)]
enum Gcm {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl Gcm {
    fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self, KmsError> {
        let bad = |_| KmsError::Internal("key material has the wrong length".into());
        Ok(match algorithm {
            Algorithm::Aes128 => {
                Self::Aes128(Box::new(Aes128Gcm::new_from_slice(key).map_err(bad)?))
            }
            Algorithm::Aes192 => {
                Self::Aes192(Box::new(Aes192Gcm::new_from_slice(key).map_err(bad)?))
            }
            Algorithm::Aes256 => {
                Self::Aes256(Box::new(Aes256Gcm::new_from_slice(key).map_err(bad)?))
            }
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

/// One key version's ciphers: the key itself, from which each message's key is derived, and
/// AES-GCM directly under it for ciphertexts of format 1.
#[derive(Clone)]
pub struct VersionCipher {
    algorithm: Algorithm,
    material: KeyMaterial,
    direct: Gcm,
}

impl fmt::Debug for VersionCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VersionCipher([REDACTED])")
    }
}

impl VersionCipher {
    /// The ciphers of `material` of `algorithm`.
    pub fn new(algorithm: Algorithm, material: &KeyMaterial) -> Result<Self, KmsError> {
        Ok(Self {
            algorithm,
            material: material.clone(),
            direct: Gcm::new(algorithm, material.expose())?,
        })
    }

    /// AES-GCM under the key derived for the message with `salt`: one block of the SP 800-108
    /// counter-mode KDF with HMAC-SHA256 keyed by the version's key, the salt as context.
    fn for_message(&self, salt: &[u8; SALT_LEN]) -> Result<Gcm, KmsError> {
        let len = self.algorithm.key_len();
        // HMAC takes keys of any length; the output length in bits fits in u32.
        let mut prf = <Hmac<Sha256> as Mac>::new_from_slice(self.material.expose())
            .map_err(|_| KmsError::Internal("key material cannot key HMAC".into()))?;
        prf.update(&1u32.to_be_bytes());
        prf.update(KDF_LABEL);
        prf.update(&[0]);
        prf.update(salt);
        prf.update(&((len * 8) as u32).to_be_bytes());
        let mut block = Zeroizing::new([0u8; 32]);
        block.copy_from_slice(&prf.finalize().into_bytes());
        Gcm::new(self.algorithm, &block[..len])
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

fn associated_data(
    label: &[u8],
    key_id: &str,
    version_id: &str,
    aad_context: &[u8],
) -> AssociatedData {
    // Ids are 20 bytes, far below u32::MAX.
    let parts = [
        label,
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

/// Encrypts `plaintext` under one key version, with a key of its own (format 2).
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
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut salt);
    fill_random(&mut nonce);
    let aad = associated_data(AAD_LABEL_V2, key_id, version_id, aad_context);
    let sealed = cipher
        .for_message(&salt)?
        .seal(&nonce, aad.as_bytes(), plaintext)
        .ok_or_else(|| KmsError::Internal("encryption failed".into()))?;
    let mut out = Vec::with_capacity(2 + version.len() + SALT_LEN + NONCE_LEN + sealed.len());
    out.push(FORMAT_V2);
    out.push(version_len);
    out.extend_from_slice(version);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The version id a ciphertext names, if it is shaped like one of ours.
pub fn version_of(ciphertext: &[u8]) -> Option<&str> {
    lockbox_proto::kms::ciphertext_version(ciphertext)
}

/// Decrypts a ciphertext made by [`encrypt`] (or by format 1) with the same key, version and
/// context.
pub fn decrypt(
    cipher: &VersionCipher,
    key_id: &str,
    version_id: &str,
    aad_context: &[u8],
    ciphertext: &[u8],
) -> Result<Wiping, KmsError> {
    // The same test as `version_of(ciphertext) == Some(version_id)`, without checking the
    // UTF-8 of an id the caller already read from this ciphertext.
    let format = match ciphertext {
        [format @ (FORMAT_V1 | FORMAT_V2), len, rest @ ..]
            if usize::from(*len) == version_id.len() && rest.starts_with(version_id.as_bytes()) =>
        {
            *format
        }
        _ => return Err(KmsError::DecryptionFailed),
    };
    let body = &ciphertext[2 + version_id.len()..];
    let (gcm, label, body) = if format == FORMAT_V1 {
        (None, AAD_LABEL_V1, body)
    } else {
        let (salt, body) = body
            .split_first_chunk::<SALT_LEN>()
            .ok_or(KmsError::DecryptionFailed)?;
        (Some(cipher.for_message(salt)?), AAD_LABEL_V2, body)
    };
    let (nonce, sealed) = body
        .split_first_chunk::<NONCE_LEN>()
        .filter(|(_, sealed)| sealed.len() >= TAG_LEN)
        .ok_or(KmsError::DecryptionFailed)?;
    gcm.as_ref()
        .unwrap_or(&cipher.direct)
        .open(
            nonce,
            associated_data(label, key_id, version_id, aad_context).as_bytes(),
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
        let inline_room = INLINE_AAD - (AAD_LABEL_V2.len() + 8 + "key".len() + "ver".len());
        for len in [0, 1, inline_room, inline_room + 1, 8192] {
            let context: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let aad = associated_data(AAD_LABEL_V2, "key", "ver", &context);
            assert!(matches!(aad, AssociatedData::Inline { .. }) == (len <= inline_room));
            let expected = [
                AAD_LABEL_V2,
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

    /// A ciphertext as format 1 made it: sealed directly under the version's key.
    fn encrypt_v1(c: &VersionCipher, key: &str, ver: &str, ctx: &[u8], msg: &[u8]) -> Vec<u8> {
        let nonce = [7u8; NONCE_LEN];
        let aad = associated_data(AAD_LABEL_V1, key, ver, ctx);
        let sealed = c.direct.seal(&nonce, aad.as_bytes(), msg).unwrap();
        [
            &[FORMAT_V1, ver.len() as u8][..],
            ver.as_bytes(),
            &nonce,
            &sealed,
        ]
        .concat()
    }

    #[test]
    fn ciphertexts_of_format_1_still_decrypt_and_new_ones_are_format_2() {
        for alg in [Algorithm::Aes128, Algorithm::Aes192, Algorithm::Aes256] {
            let c = cipher(alg);
            let old = encrypt_v1(&c, "key", "ver", b"ctx", b"secret");
            assert_eq!(version_of(&old), Some("ver"));
            assert_eq!(
                &*decrypt(&c, "key", "ver", b"ctx", &old).unwrap(),
                b"secret"
            );
            assert!(decrypt(&c, "key", "ver", b"other", &old).is_err());
            // The format byte is bound: the same bytes read as format 2 do not open.
            let mut relabelled = old.clone();
            relabelled[0] = FORMAT_V2;
            assert!(decrypt(&c, "key", "ver", b"ctx", &relabelled).is_err());

            let new = encrypt(&c, "key", "ver", b"ctx", b"secret").unwrap();
            assert_eq!(new[0], FORMAT_V2);
            assert_eq!(new.len(), 2 + 3 + SALT_LEN + NONCE_LEN + 6 + TAG_LEN);
            let mut relabelled = new.clone();
            relabelled[0] = FORMAT_V1;
            assert!(decrypt(&c, "key", "ver", b"ctx", &relabelled).is_err());
        }
    }

    #[test]
    fn every_message_is_sealed_under_a_key_of_its_own() {
        let c = cipher(Algorithm::Aes256);
        let header = 2 + "ver".len();
        let a = encrypt(&c, "key", "ver", b"ctx", b"secret").unwrap();
        let b = encrypt(&c, "key", "ver", b"ctx", b"secret").unwrap();
        assert_ne!(a[header..header + SALT_LEN], b[header..header + SALT_LEN]);
        // Neither opens under the version's own key directly.
        let aad = associated_data(AAD_LABEL_V2, "key", "ver", b"ctx");
        for ct in [&a, &b] {
            let nonce: &[u8; NONCE_LEN] = ct[header + SALT_LEN..][..NONCE_LEN].try_into().unwrap();
            let sealed = &ct[header + SALT_LEN + NONCE_LEN..];
            assert!(c.direct.open(nonce, aad.as_bytes(), sealed).is_none());
        }
        // The same salt and nonce under the same version give the same bytes: the key is a
        // function of the version's key and the salt alone.
        let (salt, nonce) = ([1u8; SALT_LEN], [2u8; NONCE_LEN]);
        let one = c
            .for_message(&salt)
            .unwrap()
            .seal(&nonce, b"", b"m")
            .unwrap();
        let two = c
            .for_message(&salt)
            .unwrap()
            .seal(&nonce, b"", b"m")
            .unwrap();
        let other = c
            .for_message(&[3; SALT_LEN])
            .unwrap()
            .seal(&nonce, b"", b"m")
            .unwrap();
        assert_eq!(one, two);
        assert_ne!(one, other);
    }

    #[test]
    fn the_message_key_derivation_is_fixed() {
        // HMAC-SHA256(key, 00000001 || "lockbox-kms message key" || 00 || salt || 00000080),
        // its first 16 bytes the AES-128 key; computed independently of this code.
        let material = KeyMaterial::from_bytes(Zeroizing::new((0u8..16).collect()));
        let c = VersionCipher::new(Algorithm::Aes128, &material).unwrap();
        let derived = c.for_message(&[0xaa; SALT_LEN]).unwrap();
        let expected = Gcm::new(Algorithm::Aes128, &hex(KDF_KAT_AES128)).unwrap();
        let nonce = [0u8; NONCE_LEN];
        assert_eq!(
            derived.seal(&nonce, b"", b"probe"),
            expected.seal(&nonce, b"", b"probe")
        );
    }

    const KDF_KAT_AES128: &str = "8a6d0c781e278be5153b3ed736ca5ec4";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn version_of_rejects_garbage() {
        assert_eq!(version_of(&[]), None);
        assert_eq!(version_of(&[3, 1, b'a']), None);
        assert_eq!(version_of(&[1, 5, b'a']), None);
        assert_eq!(version_of(&[2, 5, b'a']), None);
        assert_eq!(version_of(&[2, 1, 0xff]), None);
        assert_eq!(version_of(&[2, 1, b'a']), Some("a"));
    }

    #[test]
    fn key_material_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", KeyMaterial::random(32)),
            "KeyMaterial([REDACTED; 32])"
        );
    }
}
