//! Reading payloads: by secret id, or by folder and secret name.

use super::hot::HotSecret;
use super::{Caller, Lockbox};
use crate::access::Permission;
use crate::error::LockboxError;
use crate::model::{Entry, SecretStatus};
use crate::validate;

/// A payload as read.
#[derive(Debug)]
pub struct PayloadRead {
    /// Secret.
    pub secret_id: String,
    /// Version read.
    pub version_id: String,
    /// Entries (zeroized on drop).
    pub entries: Vec<Entry>,
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
        self.read_payload(caller, &secret, version_id).await
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
        self.read_payload(caller, &secret, version_id).await
    }

    async fn read_payload(
        &self,
        caller: &Caller,
        secret: &HotSecret,
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
        let entries = self
            .open(caller, record, &version.record, Some(&version.dek))
            .await?;
        Ok(PayloadRead {
            secret_id: record.id.clone(),
            version_id: version_id.to_owned(),
            entries,
        })
    }
}
