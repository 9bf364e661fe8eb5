//! Unlocking the service keyring at start: unwrap the stored keyring through `lockbox-kms`,
//! or on first start create the daemon's own KMS key and a fresh keyring wrapped by it.

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
        let keyring = match self.records.keyring()? {
            Some(stored) => {
                let plain = self
                    .kms
                    .decrypt(None, &stored.kms_key_id, KEYRING_AAD, &stored.wrapped)
                    .await?;
                Keyring::from_bytes(plain.plaintext())?
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
