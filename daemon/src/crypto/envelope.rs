//! Envelope encryption of payloads.
//!
//! Each version gets a fresh random 256-bit data key ([`Dek`]). Its payload's plaintext (the
//! entries in their stored layout, `model::entries`) is encrypted with it (AES-256-GCM) under
//! associated data binding the secret id, the version id and the id of the key that wraps the
//! data key, so a ciphertext cannot be moved to another secret, version or key. The data key
//! itself is wrapped by the daemon's service keyring (`crypto::keyring`) or by the secret's
//! `lockbox-kms` key (`crypto::kms_link`). This module knows nothing of what the plaintext
//! holds.

use super::aead::{Aad, aad, open, open_into, seal};
use crate::error::LockboxError;
use crate::random::fill_random;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use lockbox_proto::Wiping;
use zeroize::Zeroizing;

/// Domain separation of the payload's associated data.
const PAYLOAD_AAD_LABEL: &[u8] = b"lockbox payload v1";
/// Domain separation of the associated data of a data key wrapped by `lockbox-kms`.
const KMS_AAD_LABEL: &[u8] = b"lockbox dek";
/// Key id bound into the associated data of keyring-wrapped payloads.
pub const KEYRING_KEY_ID: &str = "service-keyring";

/// A payload data key. Zeroized on drop.
pub struct Dek(Zeroizing<[u8; 32]>);

impl Dek {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(k.as_mut());
        Self(k)
    }

    /// A key from unwrapped bytes; refuses any length but 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LockboxError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            LockboxError::Internal("unwrapped data key has the wrong length".into())
        })?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The raw key, for wrapping.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The AES-256-GCM cipher of this key (the `aes` crate's `zeroize` feature wipes the
    /// expanded key schedule when the cipher is dropped).
    pub fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

/// Associated data of a payload: its secret, its version and the key that wraps its data
/// key, so a ciphertext cannot be replayed for another version or under another key.
fn payload_aad(secret_id: &str, version_id: &str, wrapping_key_id: &str) -> Aad {
    aad(PAYLOAD_AAD_LABEL, &[secret_id, version_id, wrapping_key_id])
}

/// Associated data for a DEK wrapped by the KMS: secret and version, so a wrapped key cannot
/// be replayed for another version.
pub(crate) fn kms_aad_context(secret_id: &str, version_id: &str) -> Aad {
    aad(KMS_AAD_LABEL, &[secret_id, version_id])
}

/// Where a payload belongs: what its associated data binds.
#[derive(Debug, Clone, Copy)]
pub struct PayloadIds<'a> {
    /// The secret the version belongs to.
    pub secret_id: &'a str,
    /// The version the payload is.
    pub version_id: &'a str,
    /// The key wrapping the data key: [`KEYRING_KEY_ID`], or the secret's KMS key.
    pub wrapping_key_id: &'a str,
}

impl PayloadIds<'_> {
    fn aad(&self) -> Aad {
        payload_aad(self.secret_id, self.version_id, self.wrapping_key_id)
    }
}

/// Encrypts a payload's plaintext with the data key's cipher ([`Dek::cipher`]).
pub fn seal_payload(
    dek: &Aes256Gcm,
    ids: PayloadIds<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, LockboxError> {
    seal(dek, &ids.aad(), plaintext)
}

/// Decrypts a payload sealed by [`seal_payload`] for the same ids.
pub fn open_payload(
    dek: &Aes256Gcm,
    ids: PayloadIds<'_>,
    ciphertext: &[u8],
) -> Result<Wiping, LockboxError> {
    open(dek, &ids.aad(), ciphertext)
}

/// Decrypts a payload sealed by [`seal_payload`], appending its plaintext to `out` in place:
/// no other copy is made. On failure `out` is left as it was.
pub fn open_payload_into(
    dek: &Aes256Gcm,
    ids: PayloadIds<'_>,
    ciphertext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LockboxError> {
    open_into(dek, &ids.aad(), ciphertext, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(secret_id: &'a str, version_id: &'a str, key: &'a str) -> PayloadIds<'a> {
        PayloadIds {
            secret_id,
            version_id,
            wrapping_key_id: key,
        }
    }

    #[test]
    fn payloads_are_bound_to_their_secret_version_and_wrapping_key() {
        let dek = Dek::generate();
        let cipher = dek.cipher();
        let sealed = seal_payload(&cipher, ids("s1", "v1", KEYRING_KEY_ID), b"entries").unwrap();
        let opened = open_payload(&cipher, ids("s1", "v1", KEYRING_KEY_ID), &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"entries");
        for other in [
            ids("s2", "v1", KEYRING_KEY_ID),
            ids("s1", "v2", KEYRING_KEY_ID),
            ids("s1", "v1", "abj-other"),
        ] {
            assert!(open_payload(&cipher, other, &sealed).is_err());
        }
        let stranger = Dek::generate().cipher();
        assert!(open_payload(&stranger, ids("s1", "v1", KEYRING_KEY_ID), &sealed).is_err());
        let mut out = b"head".to_vec();
        open_payload_into(&cipher, ids("s1", "v1", KEYRING_KEY_ID), &sealed, &mut out).unwrap();
        assert_eq!(out, b"headentries");
    }

    #[test]
    fn a_data_key_has_exactly_32_bytes() {
        assert!(Dek::from_bytes(&[7; 32]).is_ok());
        assert!(Dek::from_bytes(&[7; 31]).is_err());
        assert!(Dek::from_bytes(&[7; 33]).is_err());
    }
}
