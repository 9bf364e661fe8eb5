//! Online backups: a checkpoint of the store taken while lockboxd serves, read out by the
//! caller a piece at a time (so the files are written where and as whom the caller wants,
//! never by lockboxd), then released. One backup is open at a time.

use super::{Caller, Lockbox};
use crate::error::LockboxError;
use crate::model::ids::{self, new_id};
use crate::model::validate;
use crate::store::backup::{Checkpoint, CheckpointFile};
use std::sync::Arc;

/// Most bytes one read of a backup file returns.
pub const MAX_BACKUP_CHUNK: usize = 256 * 1024;

/// The open backup.
pub(super) struct OpenBackup {
    id: String,
    checkpoint: Arc<Checkpoint>,
}

/// What `BeginBackup` took.
#[derive(Debug, Clone)]
pub struct BackupStarted {
    /// Names the backup in the reads that follow.
    pub backup_id: String,
    /// Schema of the data.
    pub schema: u32,
    /// When the checkpoint was taken.
    pub created_at: i64,
    /// The KMS key wrapping the service keyring, which the keystore backed up beside this
    /// must hold.
    pub keyring_kms_key_id: String,
    /// The checkpoint's files.
    pub files: Vec<CheckpointFile>,
}

impl Lockbox {
    /// Takes a checkpoint for a backup, abandoning any backup still open. Needs
    /// `lockbox.service.manage` on the organization.
    pub async fn begin_backup(&self, caller: &Caller) -> Result<BackupStarted, LockboxError> {
        self.authorize_service(caller)?;
        let keyring = self.records.keyring()?.ok_or_else(|| {
            LockboxError::FailedPrecondition(
                "lockboxd has no service keyring yet; there is nothing to back up".into(),
            )
        })?;
        let backup_id = new_id(ids::BACKUP);
        let created_at = self.now();
        let (backups, records, id) = (
            self.backups.clone(),
            self.records.clone(),
            backup_id.clone(),
        );
        let checkpoint = tokio::task::spawn_blocking(move || backups.take(&records, &id))
            .await
            .map_err(|e| LockboxError::Internal(format!("the checkpoint task failed: {e}")))??;
        let started = BackupStarted {
            backup_id: backup_id.clone(),
            schema: crate::model::SCHEMA,
            created_at,
            keyring_kms_key_id: keyring.kms_key_id,
            files: checkpoint.files().to_vec(),
        };
        let previous = self.lock_backup().replace(OpenBackup {
            id: backup_id,
            checkpoint: Arc::new(checkpoint),
        });
        if let Some(previous) = previous {
            tracing::warn!(backup_id = %previous.id, "an unfinished backup was abandoned for a new one");
        }
        tracing::info!(backup_id = %started.backup_id, files = started.files.len(),
                       by = caller.subject(), "backup checkpoint taken");
        Ok(started)
    }

    /// Up to `length` bytes (at most [`MAX_BACKUP_CHUNK`]) of `file` of the open backup.
    pub async fn read_backup(
        &self,
        caller: &Caller,
        backup_id: &str,
        file: &str,
        offset: u64,
        length: u32,
    ) -> Result<Vec<u8>, LockboxError> {
        self.authorize_service(caller)?;
        let checkpoint = self.open_backup(backup_id)?;
        let length = usize::try_from(length)
            .unwrap_or(usize::MAX)
            .min(MAX_BACKUP_CHUNK);
        let name = file.to_owned();
        tokio::task::spawn_blocking(move || checkpoint.read(&name, offset, length))
            .await
            .map_err(|e| LockboxError::Internal(format!("the read task failed: {e}")))??
            .ok_or_else(|| {
                LockboxError::NotFound(format!("backup {backup_id} has no file {file:?}"))
            })
    }

    /// Releases the open backup's checkpoint.
    pub async fn end_backup(&self, caller: &Caller, backup_id: &str) -> Result<(), LockboxError> {
        self.authorize_service(caller)?;
        self.open_backup(backup_id)?;
        let ended = self.lock_backup().take();
        // Removing the files is blocking work.
        tokio::task::spawn_blocking(move || drop(ended))
            .await
            .map_err(|e| LockboxError::Internal(format!("the cleanup task failed: {e}")))?;
        tracing::info!(backup_id, "backup finished");
        Ok(())
    }

    fn lock_backup(&self) -> std::sync::MutexGuard<'_, Option<OpenBackup>> {
        self.open_backup.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checkpoint of the open backup `backup_id`, or `NotFound`.
    fn open_backup(&self, backup_id: &str) -> Result<Arc<Checkpoint>, LockboxError> {
        validate::id("backup_id", backup_id)?;
        match &*self.lock_backup() {
            Some(open) if open.id == backup_id => Ok(open.checkpoint.clone()),
            _ => Err(LockboxError::NotFound(format!(
                "backup {backup_id} is not open (finished, abandoned for a newer one, or \
                 lockboxd restarted)"
            ))),
        }
    }
}
