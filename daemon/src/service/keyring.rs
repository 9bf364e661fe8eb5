//! Unlocking the service keyring at start: unwrap the stored keyring through `lockbox-kms`,
//! or on first start create the daemon's own KMS key and a fresh keyring wrapped by it.
//!
//! An unwrapped keyring is wrapped again under the key's primary version when the stored
//! wrapping is from an older one: at start, on the `RewrapKeyring` command, and every
//! `keyring_rewrap_interval` while serving. So rotating the daemon's KMS key (it rotates by
//! itself, every `keyring_rotation_period`) and later destroying the old version never
//! strands the keyring. The new wrapping replaces the old in one synced write: a crash
//! leaves one or the other, both readable.

use super::{Caller, Lockbox};
use crate::crypto::keyring::Keyring;
use crate::error::LockboxError;
use crate::store::Batch;
use crate::store::records::StoredKeyring;
use std::sync::Arc;
use std::time::Duration;

/// Associated data of the wrapped keyring in the KMS.
const KEYRING_AAD: &[u8] = b"lockboxd service keyring v1";

/// What a rewrap of the keyring found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyringRewrap {
    /// The daemon's own KMS key.
    pub kms_key_id: String,
    /// The version that wrapped the keyring before.
    pub from_version_id: String,
    /// The version that wraps it now (the same as before when it was already the primary).
    pub version_id: String,
}

impl Lockbox {
    /// Unwraps the stored keyring (or, on first start, creates one under a new KMS key of
    /// the daemon's own in `kms_folder`, rotated every `rotation_period` seconds) and
    /// installs it.
    pub async fn unlock_keyring(
        &self,
        kms_folder: &str,
        rotation_period: Option<u64>,
    ) -> Result<(), LockboxError> {
        let unlocked = self.try_unlock_keyring(kms_folder, rotation_period).await;
        if let Err(e) = &unlocked {
            *self
                .keyring_locked
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = e.to_string();
        }
        unlocked
    }

    async fn try_unlock_keyring(
        &self,
        kms_folder: &str,
        rotation_period: Option<u64>,
    ) -> Result<(), LockboxError> {
        let keyring = match self.records.keyring()? {
            Some(stored) => {
                let (version_id, plain) = self
                    .kms
                    .decrypt_versioned(&stored.kms_key_id, KEYRING_AAD, &stored.wrapped)
                    .await?;
                let keyring = Keyring::from_bytes(plain.expose())?;
                // The keyring is usable either way; a failed rewrap is tried at the next start.
                if let Err(e) = self
                    .wrap_under_primary(&stored.kms_key_id, &version_id, &keyring)
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
                    .create_own_key(kms_folder, "lockboxd-keyring", rotation_period)
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
    /// stored one, made by `stored_version`, is already the primary's. Returns the primary.
    async fn wrap_under_primary(
        &self,
        key_id: &str,
        stored_version: &str,
        keyring: &Keyring,
    ) -> Result<String, LockboxError> {
        let (version_id, wrapped) = self
            .kms
            .encrypt_versioned(None, key_id, KEYRING_AAD, keyring.expose())
            .await?;
        if version_id == stored_version {
            return Ok(version_id);
        }
        let mut batch = Batch::default();
        self.records.put_keyring(
            &mut batch,
            &StoredKeyring {
                kms_key_id: key_id.to_owned(),
                wrapped,
            },
        );
        let writer = self.write_lock().await;
        self.commit(writer, batch).await?;
        tracing::info!(
            kms_key_id = %key_id,
            from = %stored_version,
            to = %version_id,
            "rewrapped the service keyring under its KMS key's primary version"
        );
        // The old version may now be released for destruction.
        if let Err(e) = self.report_holds(key_id).await {
            tracing::warn!(error = %e, "could not report the keyring's new wrapping to \
                                        lockbox-kms; the old version stays held");
        }
        Ok(version_id)
    }

    /// Wraps the unlocked keyring under its KMS key's primary version, if an older one
    /// wraps it.
    pub(super) async fn rewrap_unlocked_keyring(&self) -> Result<KeyringRewrap, LockboxError> {
        let keyring = self.keyring()?;
        let stored = self.records.keyring()?.ok_or_else(|| {
            LockboxError::Internal("the unlocked keyring has no stored wrapping".into())
        })?;
        let from_version_id = crate::crypto::kms_link::kms_version_of(&stored.wrapped)
            .unwrap_or_default()
            .to_owned();
        let version_id = self
            .wrap_under_primary(&stored.kms_key_id, &from_version_id, &keyring)
            .await?;
        Ok(KeyringRewrap {
            kms_key_id: stored.kms_key_id,
            from_version_id,
            version_id,
        })
    }

    /// The `RewrapKeyring` command: [`rewrap_unlocked_keyring`](Self::rewrap_unlocked_keyring)
    /// for a caller with `lockbox.service.manage` on the organization.
    pub async fn rewrap_keyring(&self, caller: &Caller) -> Result<KeyringRewrap, LockboxError> {
        self.authorize_service(caller)?;
        self.rewrap_unlocked_keyring().await
    }

    /// Rewraps the keyring every `interval` while it is unlocked, so a rotation of the
    /// daemon's key reaches the keyring without a restart. Failures are logged and tried
    /// again at the next interval.
    pub async fn keep_keyring_wrapped_under_primary(self: Arc<Self>, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            if self.keyring().is_err() {
                continue;
            }
            if let Err(e) = self.rewrap_unlocked_keyring().await {
                tracing::warn!(error = %e, "could not rewrap the service keyring; \
                                            will try again");
            }
        }
    }

    /// Keeps trying to unlock the keyring until it works, backing off up to ten seconds
    /// between attempts. For when `lockbox-kms` was unreachable at start.
    pub async fn unlock_keyring_until_done(
        self: Arc<Self>,
        kms_folder: String,
        rotation_period: Option<u64>,
    ) {
        let mut wait = Duration::from_millis(250);
        loop {
            tokio::time::sleep(wait).await;
            match self.unlock_keyring(&kms_folder, rotation_period).await {
                Ok(()) => {
                    self.reconcile_holds_logged().await;
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "service keyring still locked; retrying"),
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }
}
