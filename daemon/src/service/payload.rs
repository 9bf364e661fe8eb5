//! Reading payloads: by secret id, or by folder and secret name.

use super::hot::{HotSecret, HotVersion};
use super::{Caller, Lockbox};
use crate::access::Permission;
use crate::error::LockboxError;
use crate::model::SecretStatus;
use crate::{envelope, validate};
use aes_gcm::Aes256Gcm;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// A payload ready to be read: the cached secret and version it comes from, and the cipher
/// of the version's data key. The caller was allowed to read it and the version was
/// readable when it was made; it is decrypted where the answer is written.
pub struct PayloadRead {
    secret: Arc<HotSecret>,
    version: Arc<HotVersion>,
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
    /// Secret.
    pub fn secret_id(&self) -> &str {
        &self.secret.record.id
    }

    /// Version read.
    pub fn version_id(&self) -> &str {
        &self.version.record.meta.id
    }

    /// Decrypts the entries, appending them to `out` as the wire encodes a
    /// `Vec<PayloadEntry>`, with no other copy of the plaintext made
    /// ([`envelope::open_entries_as_sent`]). On failure `out` is left as it was.
    pub fn write_entries(&self, out: &mut Vec<u8>) -> Result<(), LockboxError> {
        let secret = &self.secret.record;
        let sealed = self.version.record.sealed.as_ref().ok_or_else(|| {
            LockboxError::Internal(format!("version {} has no payload", self.version_id()))
        })?;
        envelope::open_entries_as_sent(
            &self.data_key,
            &secret.id,
            self.version_id(),
            Lockbox::wrapping_key_id(secret),
            &sealed.ciphertext,
            out,
        )
    }
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
/// changes.
#[derive(Debug, Default)]
pub struct ReadMemo(Mutex<Option<Remembered>>);

#[derive(Debug)]
struct Remembered {
    /// The service's generation before the lookups and the check.
    generation: u64,
    secret: Arc<HotSecret>,
    /// As the request named it (`None`: the current version).
    version_id: Option<String>,
    version: Arc<HotVersion>,
}

impl ReadMemo {
    /// Forgets the last read.
    pub fn forget(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Remembered>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The remembered secret and version, if they answer this read at `generation`.
    fn recall(
        &self,
        generation: u64,
        secret_id: &str,
        version_id: Option<&str>,
    ) -> Option<(Arc<HotSecret>, Arc<HotVersion>)> {
        self.lock()
            .as_ref()
            .filter(|r| {
                r.generation == generation
                    && r.secret.record.id == secret_id
                    && r.version_id.as_deref() == version_id
            })
            .map(|r| (r.secret.clone(), r.version.clone()))
    }
}

impl Lockbox {
    /// [`get_payload`](Self::get_payload) for a connection that remembers its last read in
    /// `memo`.
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
        let (secret, version) = match memo.recall(generation, secret_id, version_id) {
            Some(remembered) => remembered,
            None => {
                let secret = self.hot_secret(secret_id)?;
                let version = self.readable_version(caller, &secret, version_id)?;
                *memo.lock() = Some(Remembered {
                    generation,
                    secret: secret.clone(),
                    version_id: version_id.map(str::to_owned),
                    version: version.clone(),
                });
                (secret, version)
            }
        };
        self.open_payload(caller, secret, version).await
    }

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
        let version = self.readable_version(caller, &secret, version_id)?;
        self.open_payload(caller, secret, version).await
    }

    /// The version of `secret` a payload read names (`None`: the current one), once the
    /// caller is allowed to read the payload and the secret is active.
    fn readable_version(
        &self,
        caller: &Caller,
        secret: &HotSecret,
        version_id: Option<&str>,
    ) -> Result<Arc<HotVersion>, LockboxError> {
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
        self.hot_version(record, version_id)
    }

    /// Unlocks a version found by [`readable_version`](Self::readable_version) for reading.
    async fn open_payload(
        &self,
        caller: &Caller,
        secret: Arc<HotSecret>,
        version: Arc<HotVersion>,
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
}
