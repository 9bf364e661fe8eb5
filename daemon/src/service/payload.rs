//! Reading payloads: by secret id, or by folder and secret name.

use super::hot::{HotSecret, HotVersion};
use super::{Caller, Lockbox};
use crate::access::Permission;
use crate::envelope::OpenedEntries;
use crate::error::LockboxError;
use crate::model::{EntryRef, SecretStatus};
use crate::validate;
use std::sync::Arc;

/// A payload as read: the cached secret and version it came from, and the decrypted
/// entries (zeroized on drop).
#[derive(Debug)]
pub struct PayloadRead {
    secret: Arc<HotSecret>,
    version: Arc<HotVersion>,
    opened: OpenedEntries,
}

impl PayloadRead {
    /// Secret.
    pub fn secret_id(&self) -> &str {
        &self.secret.record.id
    }

    /// Version read.
    pub fn version_id(&self) -> &str {
        &self.version.record.meta.id
    }

    /// The entries, borrowed from the decrypted payload.
    pub fn entries(&self) -> Result<Vec<EntryRef<'_>>, LockboxError> {
        self.opened.entries()
    }
}

impl Lockbox {
    /// The payload of a version (default: the current one).
    pub async fn get_payload(
        &self,
        caller: &Caller,
        secret_id: &str,
        version_id: Option<&str>,
    ) -> Result<PayloadRead, LockboxError> {
        let secret = self.hot_secret(secret_id)?;
        self.read_payload(caller, secret, version_id).await
    }

    /// The payload of the secret named `name` in a folder (empty: the default folder).
    pub async fn get_payload_by_name(
        &self,
        caller: &Caller,
        folder_id: &str,
        name: &str,
        version_id: Option<&str>,
    ) -> Result<PayloadRead, LockboxError> {
        if name.is_empty() {
            return Err(LockboxError::InvalidArgument(
                "secret_name: must not be empty".into(),
            ));
        }
        validate::secret_name(name)?;
        let folder = self.folder_or_default(folder_id)?;
        let id = self
            .records
            .secret_id_by_name(&folder.id, name)?
            .ok_or_else(|| {
                LockboxError::NotFound(format!("no secret named {name:?} in folder {}", folder.id))
            })?;
        let secret = self.hot_secret(&id)?;
        self.read_payload(caller, secret, version_id).await
    }

    async fn read_payload(
        &self,
        caller: &Caller,
        secret: Arc<HotSecret>,
        version_id: Option<&str>,
    ) -> Result<PayloadRead, LockboxError> {
        self.authorize(caller, &secret.chain, Permission::GetPayload)?;
        let record = &secret.record;
        if record.status != SecretStatus::Active {
            return Err(LockboxError::FailedPrecondition(format!(
                "secret {} is deactivated; its payload cannot be read until it is activated",
                record.id
            )));
        }
        let version_id = match version_id {
            Some(v) => v,
            None => record.current_version_id.as_deref().ok_or_else(|| {
                LockboxError::NotFound(format!("secret {} has no versions", record.id))
            })?,
        };
        let version = self.hot_version(record, version_id)?;
        let opened = self
            .open(caller, record, &version.record, Some(&version.dek))
            .await?;
        Ok(PayloadRead {
            secret,
            version,
            opened,
        })
    }
}
