//! Unlocking the service keyring at start: unwrap the stored keyring through `lockbox-kms`,
//! or on first start create the daemon's own KMS key and a fresh keyring wrapped by it.

use crate::envelope::Keyring;
use crate::error::LockboxError;
use crate::service::Lockbox;
use crate::store::Batch;
use crate::store::records::StoredKeyring;
use std::sync::Arc;
use std::time::Duration;

/// Associated data of the wrapped keyring in the KMS.
const KEYRING_AAD: &[u8] = b"lockboxd service keyring v1";

/// Unwraps (or creates) the keyring and installs it in `lockbox`.
pub async fn unlock(lockbox: &Lockbox, kms_folder: &str) -> Result<(), LockboxError> {
    let kms = lockbox.kms();
    let keyring = match lockbox.records().keyring()? {
        Some(stored) => {
            let plain = kms
                .decrypt(None, &stored.kms_key_id, KEYRING_AAD, &stored.wrapped)
                .await?;
            Keyring::from_bytes(plain.plaintext())?
        }
        None => {
            let key_id = kms.create_own_key(kms_folder, "lockboxd-keyring").await?;
            let keyring = Keyring::generate();
            let wrapped = kms
                .encrypt(None, &key_id, KEYRING_AAD, keyring.expose())
                .await?;
            let mut batch = Batch::default();
            lockbox.records().put_keyring(
                &mut batch,
                &StoredKeyring {
                    kms_key_id: key_id.clone(),
                    wrapped,
                },
            );
            lockbox.records().commit(batch)?;
            tracing::info!(kms_key_id = %key_id, "created the service keyring");
            keyring
        }
    };
    lockbox.set_keyring(keyring);
    tracing::info!("service keyring unlocked");
    Ok(())
}

/// Keeps trying to unlock the keyring until it works, backing off up to ten seconds between
/// attempts. Used when `lockbox-kms` was unreachable at start.
pub async fn unlock_until_done(lockbox: Arc<Lockbox>, kms_folder: String) {
    let mut wait = Duration::from_millis(250);
    loop {
        tokio::time::sleep(wait).await;
        match unlock(&lockbox, &kms_folder).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "service keyring still locked; retrying"),
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}
