//! Reading payloads: by secret id, or by folder and secret name.

use super::{Caller, Lockbox};
use crate::access::Permission;
use crate::error::LockboxError;
use crate::model::{Entry, SecretRecord, SecretStatus};
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
        let secret = self.secret(secret_id)?;
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
        let secret = self.secret(&id)?;
        self.read_payload(caller, secret, version_id).await
    }

    async fn read_payload(
        &self,
        caller: &Caller,
        secret: SecretRecord,
        version_id: Option<&str>,
    ) -> Result<PayloadRead, LockboxError> {
        self.authorize_secret(caller, &secret, Permission::GetPayload)?;
        if secret.status != SecretStatus::Active {
            return Err(LockboxError::FailedPrecondition(format!(
                "secret {} is deactivated; its payload cannot be read until it is activated",
                secret.id
            )));
        }
        let version_id = match version_id {
            Some(v) => v.to_owned(),
            None => secret.current_version_id.clone().ok_or_else(|| {
                LockboxError::NotFound(format!("secret {} has no versions", secret.id))
            })?,
        };
        let version = self.version(&secret, &version_id)?;
        let entries = self.open(caller, &secret, &version).await?;
        Ok(PayloadRead {
            secret_id: secret.id,
            version_id,
            entries,
        })
    }
}
