//! Unlocking the service keyring at start: unwrap the stored keyring through `lockbox-kms`,
//! or on first start create the daemon's own KMS key and a fresh keyring wrapped by it.
//!
//! An unwrapped keyring is wrapped again under the key's primary version when the stored
//! wrapping is from an older one, so rotating the daemon's KMS key and later destroying the
//! old version never strands the keyring. The new wrapping replaces the old in one synced
//! write: a crash leaves one or the other, both readable.

use super::Lockbox;
use crate::crypto::keyring::Keyring;
use crate::error::LockboxError;
use crate::store::Batch;
use crate::store::records::StoredKeyring;
use std::sync::Arc;
use std::time::Duration;

/// Associated data of the wrapped keyring in the KMS.
const KEYRING_AAD: &[u8] = b"lockboxd service keyring v1";

impl Lockbox {
    /// Unwraps the stored keyring (or, on first start, creates one under a new KMS key of
    /// the daemon's own in `kms_folder`) and installs it.
    pub async fn unlock_keyring(&self, kms_folder: &str) -> Result<(), LockboxError> {
        let unlocked = self.try_unlock_keyring(kms_folder).await;
        if let Err(e) = &unlocked {
            *self
                .keyring_locked
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = e.to_string();
        }
        unlocked
    }

    async fn try_unlock_keyring(&self, kms_folder: &str) -> Result<(), LockboxError> {
        let keyring = match self.records.keyring()? {
            Some(stored) => {
                let (version_id, plain) = self
                    .kms
                    .decrypt_versioned(&stored.kms_key_id, KEYRING_AAD, &stored.wrapped)
                    .await?;
                let keyring = Keyring::from_bytes(plain.expose())?;
                // The keyring is usable either way; a failed rewrap is tried at the next start.
                if let Err(e) = self
                    .rewrap_keyring(&stored.kms_key_id, &version_id, &keyring)
                    .await
                {
                    tracing::warn!(error = %e, "could not wrap the service keyring under its \
                                                KMS key's primary version; it stays wrapped \
                                                as it was");
                }
                keyring
            }
            None => {
                let key_id = self
                    .kms
                    .create_own_key(kms_folder, "lockboxd-keyring")
                    .await?;
                let keyring = Keyring::generate();
                let wrapped = self
                    .kms
                    .encrypt(None, &key_id, KEYRING_AAD, keyring.expose())
                    .await?;
                let mut batch = Batch::default();
                self.records.put_keyring(
                    &mut batch,
                    &StoredKeyring {
                        kms_key_id: key_id.clone(),
                        wrapped,
                    },
                );
                self.records.commit(batch)?;
                tracing::info!(kms_key_id = %key_id, "created the service keyring");
                keyring
            }
        };
        *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(keyring));
        tracing::info!("service keyring unlocked");
        Ok(())
    }

    /// Wraps `keyring` under `key_id`'s primary version and stores that wrapping, unless the
    /// stored one, made by `stored_version`, is already the primary's.
    async fn rewrap_keyring(
        &self,
        key_id: &str,
        stored_version: &str,
        keyring: &Keyring,
    ) -> Result<(), LockboxError> {
        let (version_id, wrapped) = self
            .kms
            .encrypt_versioned(None, key_id, KEYRING_AAD, keyring.expose())
            .await?;
        if version_id == stored_version {
            return Ok(());
        }
        let mut batch = Batch::default();
        self.records.put_keyring(
            &mut batch,
            &StoredKeyring {
                kms_key_id: key_id.to_owned(),
                wrapped,
            },
        );
        self.records.commit(batch)?;
        tracing::info!(
            kms_key_id = %key_id,
            from = %stored_version,
            to = %version_id,
            "rewrapped the service keyring under its KMS key's primary version"
        );
        Ok(())
    }

    /// Keeps trying to unlock the keyring until it works, backing off up to ten seconds
    /// between attempts. For when `lockbox-kms` was unreachable at start.
    pub async fn unlock_keyring_until_done(self: Arc<Self>, kms_folder: String) {
        let mut wait = Duration::from_millis(250);
        loop {
            tokio::time::sleep(wait).await;
            match self.unlock_keyring(&kms_folder).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "service keyring still locked; retrying"),
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }
}
