//! Reading payloads: by secret id, or by folder and secret name; and the entries of a version
//! a new one is built over.
//!
//! A read ends in a [`PayloadRead`], which decrypts the entries into the caller's buffer in
//! their stored layout ([`EntriesLayout`]): the front-end encodes them for its own wire, in
//! place, so no other copy of the plaintext is made on the way and this layer knows no wire.

use super::read_cache::{CachedSecret, CachedVersion};
use super::{Caller, Lockbox};
use crate::crypto::envelope::{self, Dek, KEYRING_KEY_ID, PayloadIds};
use crate::error::LockboxError;
use crate::iam::roles::Permission;
use crate::model::entries::{self, EntriesLayout, Entry};
use crate::model::{
    Resource, SealedPayload, SecretRecord, SecretStatus, VersionMeta, VersionRecord, VersionStatus,
    WrappedDek, validate,
};
use aes_gcm::Aes256Gcm;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// A payload ready to be read: the cached secret and version it comes from, and the cipher
/// of the version's data key. The caller was allowed to read it and the version was
/// readable when it was made; it is decrypted where the answer is written.
pub struct PayloadRead {
    secret: Arc<CachedSecret>,
    version: Arc<CachedVersion>,
    data_key: Arc<Aes256Gcm>,
}

impl std::fmt::Debug for PayloadRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadRead")
            .field("secret_id", &self.secret_id())
            .field("version_id", &self.version_id())
            .finish_non_exhaustive()
    }
}

impl PayloadRead {
    /// The secret read.
    pub fn secret_id(&self) -> &str {
        &self.secret.record.id
    }

    /// The version read (the current one when the request named none).
    pub fn version_id(&self) -> &str {
        &self.version.record.meta.id
    }

    /// Decrypts the entries, appending them to `out` in their stored layout, which it
    /// returns: a front-end rewrites them from there into its own encoding. No other copy of
    /// the plaintext is made. On failure `out` is left as it was.
    pub fn decrypt_into(&self, out: &mut Vec<u8>) -> Result<EntriesLayout, LockboxError> {
        let secret = &self.secret.record;
        let sealed = self.version.record.sealed.as_ref().ok_or_else(|| {
            LockboxError::Internal(format!("version {} has no payload", self.version_id()))
        })?;
        envelope::open_payload_into(
            &self.data_key,
            payload_ids(secret, self.version_id()),
            &sealed.ciphertext,
            out,
        )?;
        Ok(sealed.layout)
    }
}

/// The ids a payload's ciphertext is bound to.
pub(super) fn payload_ids<'a>(secret: &'a SecretRecord, version_id: &'a str) -> PayloadIds<'a> {
    PayloadIds {
        secret_id: &secret.id,
        version_id,
        wrapping_key_id: wrapping_key_id(secret),
    }
}

/// The id of the key that wraps a secret's data keys, bound into payload ciphertexts.
fn wrapping_key_id(secret: &SecretRecord) -> &str {
    secret.kms_key_id.as_deref().unwrap_or(KEYRING_KEY_ID)
}

/// What a connection remembers of its last payload read by id: the secret and version it
/// found and the caller was allowed to read. It stands in for the read cache lookups and the
/// authorization check of the next read of the same secret and version, for as long as no
/// mutation has completed since it was made (the service's generation is unchanged):
/// bindings, the hierarchy, a secret's status and current version and a version's record
/// change only under the writer lock, whose release bumps the generation. What changes
/// without a mutation (a version's destruction time passing, the keyring, lockbox-kms's own
/// decision) is checked on every read.
///
/// It belongs to one caller: [`forget`](Self::forget) it when the connection's caller
/// changes. With an audit trail it also counts the reads it answers (see
/// [`ReadRun`](super::audit::ReadRun)).
#[derive(Debug, Default)]
pub struct ReadMemo {
    last: Mutex<Option<Remembered>>,
    /// The reads it answered since it was made, not yet recorded.
    pub(super) run: Arc<super::audit::ReadRun>,
}

#[derive(Debug)]
struct Remembered {
    /// The service's generation before the lookups and the check.
    generation: u64,
    secret: Arc<CachedSecret>,
    /// As the request named it (`None`: the current version).
    version_id: Option<String>,
    version: Arc<CachedVersion>,
}

impl ReadMemo {
    /// Forgets the last read.
    pub fn forget(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Remembered>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered secret and version, if they answer this read at `generation`. The ids
    /// are compared as bytes, so a front-end may ask before it has checked them as text.
    fn recall(
        &self,
        generation: u64,
        secret_id: &[u8],
        version_id: Option<&[u8]>,
    ) -> Option<(Arc<CachedSecret>, Arc<CachedVersion>)> {
        self.lock()
            .as_ref()
            .filter(|r| {
                r.generation == generation
                    && r.secret.record.id.as_bytes() == secret_id
                    && r.version_id.as_deref().map(str::as_bytes) == version_id
            })
            .map(|r| (r.secret.clone(), r.version.clone()))
    }
}

impl Lockbox {
    /// The payload read `memo` remembers, when `secret_id` and `version_id` (as a front-end
    /// received them, compared as bytes) name it and no mutation has completed since: the
    /// lookups and the authorization check are skipped. `None` when they do not; then read
    /// through [`get_payload_remembered`](Self::get_payload_remembered).
    pub async fn recall_payload(
        &self,
        caller: &Caller,
        secret_id: &[u8],
        version_id: Option<&[u8]>,
        memo: &ReadMemo,
    ) -> Option<Result<PayloadRead, LockboxError>> {
        let generation = self.generation.load(Ordering::Acquire);
        let (secret, version) = memo.recall(generation, secret_id, version_id)?;
        if self.audit.is_none() {
            return Some(self.open_payload(caller, secret, version).await);
        }
        let read = self.open_payload(caller, secret.clone(), version).await;
        Some(self.audit_repeated_read(caller, memo, &secret.record.id, read))
    }

    /// [`get_payload`](Self::get_payload) for a read [`recall_payload`](Self::recall_payload)
    /// did not find, remembered in `memo` for the connection's next one.
    pub async fn get_payload_remembered(
        &self,
        caller: &Caller,
        secret_id: &str,
        version_id: Option<&str>,
        memo: &ReadMemo,
    ) -> Result<PayloadRead, LockboxError> {
        // Loaded before anything is looked up: a mutation completing from here on makes
        // what follows stale, and moves the generation past this one.
        let generation = self.generation.load(Ordering::Acquire);
        // The reads the memo answered end here, before it changes.
        self.end_read_run(memo);
        let read = async {
            let secret = self.cached_secret(secret_id)?;
            let version = self.readable_version(caller, &secret, version_id)?;
            *memo.lock() = Some(Remembered {
                generation,
                secret: secret.clone(),
                version_id: version_id.map(str::to_owned),
                version: version.clone(),
            });
            self.open_payload(caller, secret, version).await
        };
        let read = read.await;
        self.audit_read(caller, secret_id, version_id, read)
    }

    /// The payload of a version (default: the current one).
    pub async fn get_payload(
        &self,
        caller: &Caller,
        secret_id: &str,
        version_id: Option<&str>,
    ) -> Result<PayloadRead, LockboxError> {
        let read = match self.cached_secret(secret_id) {
            Ok(secret) => self.read_payload(caller, secret, version_id).await,
            Err(e) => Err(e),
        };
        self.audit_read(caller, secret_id, version_id, read)
    }

    /// The payload of the secret named `name` in a folder (empty: the default folder).
    pub async fn get_payload_by_name(
        &self,
        caller: &Caller,
        folder_id: &str,
        name: &str,
        version_id: Option<&str>,
    ) -> Result<PayloadRead, LockboxError> {
        let read = self
            .read_payload_by_name(caller, folder_id, name, version_id)
            .await;
        if self.audit.is_none() {
            return read;
        }
        self.audit_read(caller, &format!("{folder_id}/{name}"), version_id, read)
    }

    async fn read_payload_by_name(
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
        // Authorized before anything about the secret is told: a caller who may not read a
        // secret of that name gets the same answer whether it exists or not.
        let denied = || {
            LockboxError::PermissionDenied(format!(
                "permission {} denied on the secret named {name:?} in folder {} for {}",
                Permission::GetPayload.name(),
                folder.id,
                caller.subject()
            ))
        };
        let secret = match self.records.secret_id_by_name(&folder.id, name)? {
            Some(id) => self.cached_secret(&id)?,
            None => {
                let chain = self.chain(&Resource::Folder(folder.id.clone()))?;
                if !self.allowed(caller, &chain, Permission::GetPayload) {
                    return Err(denied());
                }
                return Err(LockboxError::NotFound(format!(
                    "no secret named {name:?} in folder {}",
                    folder.id
                )));
            }
        };
        if !self.allowed(caller, &secret.chain, Permission::GetPayload) {
            return Err(denied());
        }
        self.read_payload(caller, secret, version_id).await
    }

    async fn read_payload(
        &self,
        caller: &Caller,
        secret: Arc<CachedSecret>,
        version_id: Option<&str>,
    ) -> Result<PayloadRead, LockboxError> {
        let version = self.readable_version(caller, &secret, version_id)?;
        self.open_payload(caller, secret, version).await
    }

    /// The version of `secret` a payload read names (`None`: the current one), once the
    /// caller is allowed to read the payload and the secret is active.
    fn readable_version(
        &self,
        caller: &Caller,
        secret: &CachedSecret,
        version_id: Option<&str>,
    ) -> Result<Arc<CachedVersion>, LockboxError> {
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
        self.cached_version(record, version_id)
    }

    /// Unlocks a version found by [`readable_version`](Self::readable_version) for reading.
    async fn open_payload(
        &self,
        caller: &Caller,
        secret: Arc<CachedSecret>,
        version: Arc<CachedVersion>,
    ) -> Result<PayloadRead, LockboxError> {
        let sealed = self.sealed(&secret.record, &version.record)?;
        let data_key = self
            .data_key(caller, &secret.record, &version, sealed)
            .await?;
        Ok(PayloadRead {
            secret,
            version,
            data_key,
        })
    }

    /// The entries of a readable version, as owned values: what a new version is built over.
    pub(super) async fn read_entries(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        version: &CachedVersion,
    ) -> Result<Vec<Entry>, LockboxError> {
        let sealed = self.sealed(secret, &version.record)?;
        let cipher = self.data_key(caller, secret, version, sealed).await?;
        let plaintext = envelope::open_payload(
            &cipher,
            payload_ids(secret, &version.record.meta.id),
            &sealed.ciphertext,
        )?;
        entries::decode(sealed.layout, &plaintext)
    }

    /// The cipher of the data key of a version's `sealed` payload (see
    /// [`sealed`](Self::sealed)). The keyring's unwrap is kept in the cached version for the
    /// next read; a KMS-wrapped key is never kept, so every read of such a version is
    /// authorized by `lockbox-kms`.
    async fn data_key(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        version: &CachedVersion,
        sealed: &SealedPayload,
    ) -> Result<Arc<Aes256Gcm>, LockboxError> {
        let id = &version.record.meta.id;
        match (&sealed.dek, &secret.kms_key_id) {
            (WrappedDek::Keyring(w), None) => match version.dek.get() {
                Some(cipher) => Ok(cipher.clone()),
                None => {
                    let cipher = self.keyring()?.unwrap(w, &secret.id, id)?.cipher();
                    Ok(version.dek.get_or_init(|| Arc::new(cipher)).clone())
                }
            },
            (WrappedDek::Kms(w), Some(key_id)) => {
                let plain = self
                    .kms
                    .decrypt(
                        Some(&caller.principal),
                        key_id,
                        &envelope::kms_aad_context(&secret.id, id),
                        w,
                    )
                    .await?;
                Ok(Arc::new(Dek::from_bytes(plain.plaintext())?.cipher()))
            }
            _ => Err(LockboxError::Internal(format!(
                "version {id} is wrapped by a different kind of key than its secret"
            ))),
        }
    }

    /// A version's sealed payload, if the version can still be read.
    fn sealed<'v>(
        &self,
        secret: &SecretRecord,
        version: &'v VersionRecord,
    ) -> Result<&'v SealedPayload, LockboxError> {
        match &version.sealed {
            Some(s) if !self.is_destroyed(&version.meta) => Ok(s),
            _ => Err(LockboxError::FailedPrecondition(format!(
                "version {} of secret {} is destroyed",
                version.meta.id, secret.id
            ))),
        }
    }

    /// Whether a version can no longer be read (destroyed, or scheduled and due).
    pub(super) fn is_destroyed(&self, meta: &VersionMeta) -> bool {
        match meta.status {
            VersionStatus::Destroyed => true,
            VersionStatus::ScheduledForDestruction => {
                meta.destroy_at.is_some_and(|t| t <= self.now())
            }
            VersionStatus::Active => false,
        }
    }
}
