//! Sealing the keystore at rest.
//!
//! The unseal material is 32 random bytes in a file (mode 0600; under systemd a credential, so
//! `systemd-creds` can bind it to the TPM). The key-encryption key is derived from it with
//! HKDF-SHA256 and a per-file salt; the keystore is sealed with AES-256-GCM under that key.
//!
//! Sealed file: `MAGIC | format (u32 BE) | salt (32) | check (32) | nonce (12) | ciphertext`.
//! `check` is a second HKDF output from the same material and salt: it tells wrong unseal
//! material apart from a damaged file without revealing anything about the key.

use crate::crypto::fill_random;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use std::path::Path;
use zeroize::Zeroizing;

/// First bytes of every sealed keystore.
pub const MAGIC: &[u8; 8] = b"LBKMSKS\0";
/// Sealed file format version.
pub const FORMAT: u32 = 1;
/// HKDF label of the key-encryption key.
const KEK_LABEL: &[u8] = b"lockbox-kms keystore key-encryption key v1";
/// HKDF label of the material check value.
const CHECK_LABEL: &[u8] = b"lockbox-kms keystore unseal check v1";
/// Unseal material length.
pub const MATERIAL_LEN: usize = 32;

const SALT_LEN: usize = 32;
const CHECK_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = MAGIC.len() + 4 + SALT_LEN + CHECK_LEN + NONCE_LEN;

/// The secret that unseals the keystore.
pub struct UnsealMaterial(SecretBox<[u8; MATERIAL_LEN]>);

impl std::fmt::Debug for UnsealMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsealMaterial([REDACTED])")
    }
}

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The unseal material is not the one this keystore was sealed with.
    #[error("the unseal material does not match this keystore")]
    WrongMaterial,
    /// The file is not a sealed keystore, is truncated or was modified.
    #[error("the keystore is damaged or truncated: {0}")]
    Damaged(&'static str),
    /// The keystore was written by a newer version.
    #[error("the keystore has format {0}, newer than this lockbox-kms understands ({FORMAT})")]
    NewerFormat(u32),
    /// The unseal material file is unusable.
    #[error("unseal material {path}: {reason}")]
    Material {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl UnsealMaterial {
    /// Fresh random material.
    pub fn generate() -> Self {
        let mut m = SecretBox::new(Box::new([0u8; MATERIAL_LEN]));
        fill_random(secrecy::ExposeSecretMut::expose_secret_mut(&mut m));
        Self(m)
    }

    /// Material from raw bytes (exactly 32).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; MATERIAL_LEN] = bytes.try_into().ok()?;
        Some(Self(SecretBox::new(Box::new(array))))
    }

    /// The raw bytes, for writing the material file.
    pub fn expose(&self) -> &[u8; MATERIAL_LEN] {
        self.0.expose_secret()
    }

    /// Reads material from `path`, refusing a file readable by group or others.
    pub fn read(path: &Path) -> Result<Self, SealError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| SealError::Material {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(format!(
                "mode {:o} lets other users read it; chmod 600 it",
                meta.permissions().mode() & 0o777
            )));
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
        Self::from_bytes(&bytes).ok_or_else(|| {
            err(format!(
                "must be exactly {MATERIAL_LEN} bytes, found {}",
                bytes.len()
            ))
        })
    }

    fn derive(&self, salt: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; CHECK_LEN]) {
        let hk = Hkdf::<Sha256>::new(Some(salt), self.0.expose_secret());
        let mut kek = Zeroizing::new([0u8; 32]);
        let mut check = [0u8; CHECK_LEN];
        // 32-byte outputs are far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        let ok = hk.expand(KEK_LABEL, kek.as_mut()).is_ok()
            && hk.expand(CHECK_LABEL, &mut check).is_ok();
        debug_assert!(ok);
        (kek, check)
    }
}

/// Seals `plaintext` under `material` with a fresh salt and nonce.
pub fn seal(material: &UnsealMaterial, plaintext: &[u8]) -> Vec<u8> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut salt);
    fill_random(&mut nonce);
    let (kek, check) = material.derive(&salt);
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&check);
    out.extend_from_slice(&nonce);
    let cipher = Aes256Gcm::new(kek.as_ref().into());
    // AES-GCM encryption only fails for inputs beyond 64 GiB.
    #[allow(clippy::expect_used)]
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &out[..HEADER_LEN],
            },
        )
        .expect("keystore larger than AES-GCM allows");
    out.extend_from_slice(&sealed);
    out
}

/// Opens a sealed keystore.
pub fn unseal(material: &UnsealMaterial, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < HEADER_LEN + 16 {
        return Err(SealError::Damaged("shorter than a sealed keystore"));
    }
    if &sealed[..MAGIC.len()] != MAGIC {
        return Err(SealError::Damaged("not a lockbox-kms keystore"));
    }
    let mut at = MAGIC.len();
    let format = u32::from_be_bytes([sealed[at], sealed[at + 1], sealed[at + 2], sealed[at + 3]]);
    if format > FORMAT {
        return Err(SealError::NewerFormat(format));
    }
    at += 4;
    let salt = &sealed[at..at + SALT_LEN];
    at += SALT_LEN;
    let check = &sealed[at..at + CHECK_LEN];
    at += CHECK_LEN;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[at..at + NONCE_LEN]);
    let (kek, expected_check) = material.derive(salt);
    if !constant_time_eq(check, &expected_check) {
        return Err(SealError::WrongMaterial);
    }
    let cipher = Aes256Gcm::new(kek.as_ref().into());
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &sealed[HEADER_LEN..],
                aad: &sealed[..HEADER_LEN],
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Damaged("authentication failed"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip() {
        let m = UnsealMaterial::generate();
        let sealed = seal(&m, b"keystore bytes");
        assert_eq!(&*unseal(&m, &sealed).unwrap(), b"keystore bytes");
    }

    #[test]
    fn wrong_material_is_told_apart_from_damage() {
        let m = UnsealMaterial::generate();
        let sealed = seal(&m, b"keystore bytes");
        assert!(matches!(
            unseal(&UnsealMaterial::generate(), &sealed),
            Err(SealError::WrongMaterial)
        ));
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(matches!(unseal(&m, &damaged), Err(SealError::Damaged(_))));
        assert!(matches!(
            unseal(&m, &sealed[..sealed.len() / 2]),
            Err(SealError::Damaged(_))
        ));
        assert!(matches!(unseal(&m, b"garbage"), Err(SealError::Damaged(_))));
    }

    #[test]
    fn newer_format_is_refused() {
        let m = UnsealMaterial::generate();
        let mut sealed = seal(&m, b"x");
        sealed[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&2u32.to_be_bytes());
        assert!(matches!(
            unseal(&m, &sealed),
            Err(SealError::NewerFormat(2))
        ));
    }

    #[test]
    fn material_file_must_be_private_and_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unseal");
        std::fs::write(&path, [7u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            UnsealMaterial::read(&path),
            Err(SealError::Material { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(UnsealMaterial::read(&path).is_ok());
        std::fs::write(&path, [7u8; 31]).unwrap();
        assert!(matches!(
            UnsealMaterial::read(&path),
            Err(SealError::Material { .. })
        ));
    }
}
