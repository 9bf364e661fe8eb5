//! The daemon's service keyring: the key that wraps the data keys of secrets without a KMS
//! key of their own. It is kept wrapped by a `lockbox-kms` key the daemon owns and unwrapped
//! once at start (`service::keyring`).

use super::aead::{aad, open, seal};
use super::envelope::Dek;
use crate::error::LockboxError;
use crate::random::fill_random;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use zeroize::Zeroizing;

/// Domain separation of a keyring-wrapped DEK's associated data.
const KEYRING_AAD_LABEL: &[u8] = b"lockbox keyring dek v1";

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

    /// Wraps a DEK for one version.
    pub fn wrap(
        &self,
        dek: &Dek,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Vec<u8>, LockboxError> {
        seal(
            &self.cipher,
            &aad(KEYRING_AAD_LABEL, &[secret_id, version_id]),
            dek.expose(),
        )
    }

    /// Unwraps a DEK wrapped by [`Keyring::wrap`] for the same version.
    pub fn unwrap(
        &self,
        wrapped: &[u8],
        secret_id: &str,
        version_id: &str,
    ) -> Result<Dek, LockboxError> {
        let plain = open(
            &self.cipher,
            &aad(KEYRING_AAD_LABEL, &[secret_id, version_id]),
            wrapped,
        )?;
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
    fn debug_output_hides_the_key() {
        assert_eq!(format!("{:?}", Keyring::generate()), "Keyring([REDACTED])");
    }
}
