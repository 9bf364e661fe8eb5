//! The daemon's service keyring: the key that wraps the data keys of secrets without a KMS
//! key of their own. It is kept wrapped by a `lockbox-kms` key the daemon owns and unwrapped
//! once at start (`service::keyring`).
//!
//! A wrapped data key is `0x02 | salt(16) | nonce(12) | ct || tag`: each is sealed under a
//! key of its own, derived from the keyring and the random salt (SP 800-108 counter-mode KDF
//! with HMAC-SHA256), so the keyring never wears out however many versions it wraps; random
//! 96-bit nonces directly under one key would be safe for only about 2^32 of them. Earlier
//! releases sealed directly under the keyring (`nonce(12) | ct || tag`, 60 bytes); those
//! still unwrap.

use super::aead::{aad, open, seal};
use super::envelope::Dek;
use crate::error::LockboxError;
use crate::random::fill_random;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Domain separation of the associated data of a DEK sealed directly under the keyring.
const KEYRING_AAD_LABEL_V1: &[u8] = b"lockbox keyring dek v1";
/// Domain separation of the associated data of a DEK sealed under a per-message key.
const KEYRING_AAD_LABEL_V2: &[u8] = b"lockbox keyring dek v2";
/// The KDF's label for a message key.
const KDF_LABEL: &[u8] = b"lockbox keyring message key";
/// Format byte of a wrapping under a per-message key.
const FORMAT_V2: u8 = 0x02;
/// Random salt per wrapping.
const SALT_LEN: usize = 16;
/// Length of a wrapping of format 1: nonce, data key, tag.
const V1_LEN: usize = 12 + 32 + 16;

/// The daemon's service keyring: a random key, kept wrapped by a `lockbox-kms` key and
/// unwrapped once at start, that wraps the DEKs of secrets without their own KMS key.
pub struct Keyring {
    key: Zeroizing<[u8; 32]>,
    /// The key's expanded schedule, built once.
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([REDACTED])")
    }
}

impl Keyring {
    /// A fresh keyring key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(k.as_mut());
        Self::new(k)
    }

    fn new(key: Zeroizing<[u8; 32]>) -> Self {
        let cipher = Aes256Gcm::new(key.as_ref().into());
        Self { key, cipher }
    }

    /// A keyring from unwrapped bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LockboxError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| LockboxError::Internal("unwrapped keyring has the wrong length".into()))?;
        Ok(Self::new(Zeroizing::new(arr)))
    }

    /// The raw key, for wrapping by the KMS.
    pub fn expose(&self) -> &[u8; 32] {
        &self.key
    }

    /// The cipher of the key derived for the wrapping with `salt`: one block of the SP
    /// 800-108 counter-mode KDF with HMAC-SHA256 keyed by the keyring, the salt as context.
    fn for_message(&self, salt: &[u8; SALT_LEN]) -> Aes256Gcm {
        let mut prf = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        prf.update(&1u32.to_be_bytes());
        prf.update(KDF_LABEL);
        prf.update(&[0]);
        prf.update(salt);
        prf.update(&256u32.to_be_bytes());
        let key = Zeroizing::new(<[u8; 32]>::from(prf.finalize().into_bytes()));
        Aes256Gcm::new(key.as_ref().into())
    }

    /// Wraps a DEK for one version, under a key of its own.
    pub fn wrap(
        &self,
        dek: &Dek,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Vec<u8>, LockboxError> {
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt);
        let sealed = seal(
            &self.for_message(&salt),
            &aad(KEYRING_AAD_LABEL_V2, &[secret_id, version_id]),
            dek.expose(),
        )?;
        Ok([&[FORMAT_V2][..], &salt, &sealed].concat())
    }

    /// Unwraps a DEK wrapped by [`Keyring::wrap`] for the same version.
    pub fn unwrap(
        &self,
        wrapped: &[u8],
        secret_id: &str,
        version_id: &str,
    ) -> Result<Dek, LockboxError> {
        let ids = [secret_id, version_id];
        let plain = if wrapped.len() == V1_LEN {
            open(&self.cipher, &aad(KEYRING_AAD_LABEL_V1, &ids), wrapped)?
        } else {
            let (salt, sealed) = wrapped
                .split_first()
                .filter(|(format, _)| **format == FORMAT_V2)
                .and_then(|(_, rest)| rest.split_first_chunk::<SALT_LEN>())
                .ok_or_else(|| {
                    LockboxError::Internal("keyring-wrapped data key has an unknown format".into())
                })?;
            open(
                &self.for_message(salt),
                &aad(KEYRING_AAD_LABEL_V2, &ids),
                sealed,
            )?
        };
        Dek::from_bytes(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_wraps_deks_per_version() {
        let ring = Keyring::generate();
        let dek = Dek::generate();
        let wrapped = ring.wrap(&dek, "s", "v").unwrap();
        assert_eq!(
            ring.unwrap(&wrapped, "s", "v").unwrap().expose(),
            dek.expose()
        );
        assert!(ring.unwrap(&wrapped, "s", "other").is_err());
        assert!(Keyring::generate().unwrap(&wrapped, "s", "v").is_err());
    }

    #[test]
    fn each_wrapping_has_a_key_of_its_own_and_old_wrappings_still_unwrap() {
        let ring = Keyring::generate();
        let dek = Dek::generate();
        let a = ring.wrap(&dek, "s", "v").unwrap();
        let b = ring.wrap(&dek, "s", "v").unwrap();
        assert_eq!(a.len(), 1 + SALT_LEN + V1_LEN);
        assert_eq!(a[0], FORMAT_V2);
        assert_ne!(a[1..1 + SALT_LEN], b[1..1 + SALT_LEN]);
        // Not sealed under the keyring itself.
        let v2_aad = aad(KEYRING_AAD_LABEL_V2, &["s", "v"]);
        assert!(open(&ring.cipher, &v2_aad, &a[1 + SALT_LEN..]).is_err());
        assert!(
            open(
                &ring.for_message(&a[1..17].try_into().unwrap()),
                &v2_aad,
                &a[17..]
            )
            .is_ok()
        );

        // A wrapping of format 1, as earlier releases made it, unwraps to its key.
        let old = seal(
            &ring.cipher,
            &aad(KEYRING_AAD_LABEL_V1, &["s", "v"]),
            dek.expose(),
        )
        .unwrap();
        assert_eq!(old.len(), V1_LEN);
        assert_eq!(ring.unwrap(&old, "s", "v").unwrap().expose(), dek.expose());
        assert!(ring.unwrap(&old, "s", "w").is_err());

        // Anything else is refused, not misread.
        for bad in [&a[..a.len() - 1], &[0x03; 77][..], &[][..]] {
            assert!(matches!(
                ring.unwrap(bad, "s", "v"),
                Err(LockboxError::Internal(_))
            ));
        }
    }

    #[test]
    fn the_message_key_derivation_is_fixed() {
        // HMAC-SHA256(key, 00000001 || "lockbox keyring message key" || 00 || salt || 00000100),
        // computed independently of this code.
        let ring = Keyring::from_bytes(&(0u8..32).collect::<Vec<_>>()).unwrap();
        let expected: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&KDF_KAT[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let expected = Aes256Gcm::new_from_slice(&expected).unwrap();
        let derived = ring.for_message(&[0xaa; SALT_LEN]);
        assert_eq!(
            seal_with_nonce(&derived, b"probe"),
            seal_with_nonce(&expected, b"probe")
        );
    }

    const KDF_KAT: &str = "bb608ffe7ba8d92719d3fddde77ea8e4c5faaf18bb3cd6da21fcee6ee7b27bee";

    fn seal_with_nonce(cipher: &Aes256Gcm, msg: &[u8]) -> Vec<u8> {
        use aes_gcm::aead::Aead;
        cipher.encrypt(&[0u8; 12].into(), msg).unwrap()
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert_eq!(format!("{:?}", Keyring::generate()), "Keyring([REDACTED])");
    }
}
