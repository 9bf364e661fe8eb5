//! Versions: adding one (changes over a base version, sealed under a fresh data key), making
//! one current, scheduling and cancelling destruction, and destroying due versions.

use super::payload::payload_ids;
use super::read_cache::CachedSecret;
use super::{Caller, Done, Lockbox, quotas};
use crate::crypto::envelope::{self, Dek};
use crate::error::LockboxError;
use crate::iam::roles::Permission;
use crate::model::entries::{self, EntriesLayout, Entry};
use crate::model::ids::{self, new_id};
use crate::model::{
    OperationOutcome, SealedPayload, SecretRecord, VersionMeta, VersionRecord, VersionStatus,
    WrappedDek, validate,
};
use crate::store::Batch;
use crate::store::records::Listed;
use aes_gcm::Aes256Gcm;
use std::collections::BTreeSet;

/// One change to a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryChange {
    /// Set or replace the entry with this key.
    Set(Entry),
    /// Remove the entry with this key.
    Remove(String),
}

/// What `add_version` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// Description.
    pub description: String,
    /// Changes over the base version.
    pub changes: Vec<EntryChange>,
    /// Base version; `None` means the current version.
    pub base_version_id: Option<String>,
}

/// How many times `add_version` builds its version again on a current version that moved
/// before giving up.
const MAX_REBUILDS: usize = 16;

/// A new version, sealed but not yet stored.
pub(super) struct BuiltVersion {
    /// The record to store.
    pub(super) record: VersionRecord,
    /// The data key's cipher when the service keyring wraps it, so the read cache can keep
    /// it; `None` for a key wrapped by the secret's KMS key, which is never kept.
    pub(super) dek: Option<Aes256Gcm>,
}

/// Checks changes before any work: keys valid, each key changed at most once.
pub(super) fn validate_changes(changes: &[EntryChange]) -> Result<(), LockboxError> {
    let mut seen = BTreeSet::new();
    for change in changes {
        let key = match change {
            EntryChange::Set(e) => &e.key,
            EntryChange::Remove(k) => k,
        };
        validate::entry_key(key)?;
        if !seen.insert(key.as_str()) {
            return Err(LockboxError::InvalidArgument(format!(
                "payload_entries: key {key:?} appears more than once"
            )));
        }
    }
    Ok(())
}

/// Whether the caller of a change may read the base version's payload, and so be told what
/// it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BaseVisible {
    /// It may: the size error names the size.
    Yes,
    /// It may not (an editor): the size error names only the limit, so no answer tells how
    /// large the base is. (Which keys it has is metadata, `payload_entry_keys`, that an
    /// editor reads anyway.)
    No,
}

/// The base entries with `changes` applied, checked against the size limit. Keys are found
/// through an index, so the work grows with the number of entries and changes, not with
/// their product (a payload may hold tens of thousands of one-byte entries).
pub(super) fn apply_changes(
    entries: Vec<Entry>,
    changes: Vec<EntryChange>,
    limit: usize,
    visible: BaseVisible,
) -> Result<Vec<Entry>, LockboxError> {
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    let mut index: std::collections::HashMap<String, usize> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.as_ref().map(|e| (e.key.clone(), i)))
        .collect();
    for change in changes {
        match change {
            EntryChange::Set(new) => match index.get(&new.key) {
                Some(&i) => slots[i] = Some(new),
                None => {
                    index.insert(new.key.clone(), slots.len());
                    slots.push(Some(new));
                }
            },
            EntryChange::Remove(key) => match index.remove(&key) {
                Some(i) => slots[i] = None,
                None => {
                    return Err(LockboxError::InvalidArgument(format!(
                        "payload_entries: cannot remove {key:?}: the base version has no such key"
                    )));
                }
            },
        }
    }
    let entries: Vec<Entry> = slots.into_iter().flatten().collect();
    let size: usize = entries.iter().map(|e| e.key.len() + e.value.len()).sum();
    if size > limit {
        return Err(LockboxError::ResourceExhausted(match visible {
            BaseVisible::Yes => format!(
                "quota {} exceeded: the new version's keys and values take {size} bytes of \
                 {limit}",
                quotas::PAYLOAD_SIZE
            ),
            BaseVisible::No => format!(
                "quota {} exceeded: the new version's keys and values would take more than \
                 {limit} bytes",
                quotas::PAYLOAD_SIZE
            ),
        }));
    }
    Ok(entries)
}

impl Lockbox {
    /// Seals `entries` for a new version: a fresh data key, wrapped by the keyring or by the
    /// secret's KMS key on behalf of the caller. Also returns the data key's cipher when the
    /// keyring wraps it, for the read cache.
    async fn seal(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        version_id: &str,
        entries: &[Entry],
    ) -> Result<(SealedPayload, Option<Aes256Gcm>), LockboxError> {
        let dek = Dek::generate();
        let cipher = dek.cipher();
        let layout = EntriesLayout::CURRENT;
        let ciphertext = envelope::seal_payload(
            &cipher,
            payload_ids(secret, version_id),
            &entries::encode(entries),
        )?;
        let (dek, cipher) = match &secret.kms_key_id {
            None => (
                WrappedDek::Keyring(self.keyring()?.wrap(&dek, &secret.id, version_id)?),
                Some(cipher),
            ),
            Some(key_id) => (
                WrappedDek::Kms(
                    self.kms
                        .encrypt(
                            Some(&caller.principal),
                            key_id,
                            &envelope::kms_aad_context(&secret.id, version_id),
                            dek.expose(),
                        )
                        .await?,
                ),
                None,
            ),
        };
        Ok((
            SealedPayload {
                layout,
                dek,
                ciphertext,
            },
            cipher,
        ))
    }

    /// A version of `secret`, or `NotFound`.
    pub(super) fn version(
        &self,
        secret: &SecretRecord,
        version_id: &str,
    ) -> Result<VersionRecord, LockboxError> {
        validate::id("version_id", version_id)?;
        self.records
            .version(&secret.id, version_id)?
            .ok_or_else(|| {
                LockboxError::NotFound(format!(
                    "version {version_id} of secret {} not found",
                    secret.id
                ))
            })
    }

    /// Builds a new version record from entries (sealing them).
    pub(super) async fn build_version(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        description: String,
        entries: Vec<Entry>,
    ) -> Result<BuiltVersion, LockboxError> {
        let id = new_id(ids::VERSION);
        let (sealed, dek) = self.seal(caller, secret, &id, &entries).await?;
        let record = VersionRecord {
            meta: VersionMeta {
                id,
                secret_id: secret.id.clone(),
                created_at: self.now(),
                destroy_at: None,
                description,
                status: VersionStatus::Active,
                entry_keys: entries.iter().map(|e| e.key.clone()).collect(),
            },
            sealed: Some(sealed),
        };
        Ok(BuiltVersion { record, dek })
    }

    fn check_version_quota(&self, secret: &SecretRecord) -> Result<(), LockboxError> {
        let limit = self.limits.versions_per_secret(&secret.cloud_id);
        if secret.version_count >= limit {
            return Err(quotas::exceeded(
                quotas::VERSIONS_COUNT,
                &format!("secret {}", secret.id),
                secret.version_count.into(),
                limit.into(),
            ));
        }
        Ok(())
    }

    /// Adds a version: the base version's entries with the changes applied. It becomes the
    /// current version.
    ///
    /// The version is sealed outside the writer lock (sealing may call lockbox-kms, and no
    /// mutation waits for the KMS). Under the lock the permission is checked again, so a
    /// role removed while the version was being sealed stops the write. When the version
    /// was built on the current version and another version became current meanwhile, the
    /// lock is released and the version built again on that one, so concurrent additions
    /// never lose each other's changes.
    ///
    /// The new secret and version are written through to the read cache, so the next
    /// addition to the secret and reads of its payload go to neither the store nor the
    /// keyring.
    ///
    /// The new version is the outcome of the operation returned.
    pub async fn add_version(
        &self,
        caller: &Caller,
        secret_id: &str,
        new: NewVersion,
    ) -> Result<Done, LockboxError> {
        validate::description("description", &new.description)?;
        validate_changes(&new.changes)?;
        let before = self.cached_secret(secret_id)?;
        self.authorize(caller, &before.chain, Permission::AddVersion)?;
        self.check_version_quota(&before.record)?;
        let mut base_id = new
            .base_version_id
            .clone()
            .or_else(|| before.record.current_version_id.clone());
        let mut version = self
            .version_over(caller, &before.record, base_id.as_deref(), &new)
            .await?;
        for _ in 0..MAX_REBUILDS {
            let writer = self.write_lock().await;
            // The secret or the caller's roles may have changed (or gone) while the payload
            // was being sealed. Under the writer lock the read cache agrees with the store
            // (see `cached_secret`) and the bindings are the committed ones.
            let hot = self.cached_secret(secret_id)?;
            self.authorize(caller, &hot.chain, Permission::AddVersion)?;
            let mut secret = hot.record.clone();
            self.check_version_quota(&secret)?;
            if new.base_version_id.is_none() && secret.current_version_id != base_id {
                drop(writer);
                base_id.clone_from(&secret.current_version_id);
                version = self
                    .version_over(caller, &secret, base_id.as_deref(), &new)
                    .await?;
                continue;
            }
            secret.version_count += 1;
            let superseded = secret
                .current_version_id
                .replace(version.record.meta.id.clone());
            let mut batch = Batch::default();
            self.records.put_version(&mut batch, &version.record);
            self.records
                .put_secret(&mut batch, &secret, Some(&secret.name));
            let done = self.record(
                &mut batch,
                caller,
                "Add secret version",
                &secret.id,
                OperationOutcome::Version(version.record.meta.clone()),
            )?;
            self.commit_then(writer, batch, || {
                self.read_cache
                    .put_version(version.record, version.dek, superseded.as_deref());
                self.read_cache.put_secret(CachedSecret {
                    record: secret,
                    chain: hot.chain.clone(),
                });
            })
            .await?;
            return Ok(done);
        }
        Err(LockboxError::Unavailable(format!(
            "secret {secret_id} got {MAX_REBUILDS} other new versions while this one was being \
             built on the current one; try again"
        )))
    }

    /// A new version of `secret`: the entries of version `base_id` (none: empty) with the
    /// changes of `new` applied, sealed.
    async fn version_over(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        base_id: Option<&str>,
        new: &NewVersion,
    ) -> Result<BuiltVersion, LockboxError> {
        let base_entries = match base_id {
            Some(id) => {
                let base = self.cached_version(secret, id)?;
                self.read_entries(caller, secret, &base).await?
            }
            None => Vec::new(),
        };
        let visible = match base_id {
            Some(_)
                if !self.allowed(caller, &self.secret_chain(secret)?, Permission::GetPayload) =>
            {
                BaseVisible::No
            }
            _ => BaseVisible::Yes,
        };
        let entries = apply_changes(
            base_entries,
            new.changes.clone(),
            self.limits.payload_bytes(&secret.cloud_id),
            visible,
        )?;
        self.build_version(caller, secret, new.description.clone(), entries)
            .await
    }

    /// A secret's versions, newest first.
    pub fn list_versions(
        &self,
        caller: &Caller,
        secret_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<VersionMeta>, LockboxError> {
        validate::page_token(page_token)?;
        let secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Get)?;
        let page =
            self.records
                .versions(&secret.id, page_token, validate::page_size(page_size)?)?;
        Ok(Listed {
            items: page
                .items
                .into_iter()
                .map(|v| self.visible(v.meta))
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// A version as callers see it: a scheduled version past its time shows as destroyed
    /// even before the sweep has erased it.
    pub(super) fn visible(&self, mut meta: VersionMeta) -> VersionMeta {
        if self.is_destroyed(&meta) {
            meta.status = VersionStatus::Destroyed;
        }
        meta
    }

    /// Makes an active version current.
    pub async fn set_current_version(
        &self,
        caller: &Caller,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Done, LockboxError> {
        let writer = self.write_lock().await;
        let mut secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Update)?;
        let version = self.version(&secret, version_id)?;
        if version.meta.status != VersionStatus::Active {
            return Err(LockboxError::FailedPrecondition(format!(
                "version {version_id} is not active and cannot be current"
            )));
        }
        secret.current_version_id = Some(version.meta.id.clone());
        let mut batch = Batch::default();
        self.records
            .put_secret(&mut batch, &secret, Some(&secret.name));
        let outcome = OperationOutcome::Secret(Box::new(secret.clone()), Some(version.meta));
        let done = self.record(
            &mut batch,
            caller,
            "Set current secret version",
            &secret.id,
            outcome,
        )?;
        self.commit(writer, batch).await?;
        Ok(done)
    }

    /// Schedules a non-current version's destruction after `pending_period` seconds.
    pub async fn schedule_version_destruction(
        &self,
        caller: &Caller,
        secret_id: &str,
        version_id: &str,
        pending_period: Option<u64>,
    ) -> Result<(VersionMeta, Done), LockboxError> {
        let period = pending_period.unwrap_or(validate::DEFAULT_PENDING_PERIOD);
        let period = i64::try_from(period).map_err(|_| {
            LockboxError::InvalidArgument(format!("pending_period: {period} is too long"))
        })?;
        let writer = self.write_lock().await;
        let secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Update)?;
        let mut version = self.version(&secret, version_id)?;
        if secret.current_version_id.as_deref() == Some(version_id) {
            return Err(LockboxError::FailedPrecondition(format!(
                "version {version_id} is the current version of secret {secret_id}; make another version current first"
            )));
        }
        if version.meta.status != VersionStatus::Active {
            return Err(LockboxError::FailedPrecondition(format!(
                "version {version_id} is not active"
            )));
        }
        let at = self.now().saturating_add(period);
        version.meta.status = VersionStatus::ScheduledForDestruction;
        version.meta.destroy_at = Some(at);
        let mut batch = Batch::default();
        self.records.put_version(&mut batch, &version);
        self.records
            .queue_destruction(&mut batch, at, &secret.id, version_id);
        let outcome = OperationOutcome::Version(version.meta.clone());
        let done = self.record(
            &mut batch,
            caller,
            "Schedule secret version destruction",
            &secret.id,
            outcome,
        )?;
        self.commit(writer, batch).await?;
        Ok((version.meta, done))
    }

    /// Cancels a scheduled destruction that has not happened yet.
    pub async fn cancel_version_destruction(
        &self,
        caller: &Caller,
        secret_id: &str,
        version_id: &str,
    ) -> Result<(VersionMeta, Done), LockboxError> {
        let writer = self.write_lock().await;
        let secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Update)?;
        let mut version = self.version(&secret, version_id)?;
        let at = match (version.meta.status, version.meta.destroy_at) {
            (VersionStatus::ScheduledForDestruction, Some(at)) if at > self.now() => at,
            _ => {
                return Err(LockboxError::FailedPrecondition(format!(
                    "version {version_id} is not scheduled for destruction"
                )));
            }
        };
        version.meta.status = VersionStatus::Active;
        version.meta.destroy_at = None;
        let mut batch = Batch::default();
        self.records.put_version(&mut batch, &version);
        self.records
            .unqueue_destruction(&mut batch, at, &secret.id, version_id);
        let outcome = OperationOutcome::Version(version.meta.clone());
        let done = self.record(
            &mut batch,
            caller,
            "Cancel secret version destruction",
            &secret.id,
            outcome,
        )?;
        self.commit(writer, batch).await?;
        Ok((version.meta, done))
    }

    /// The earliest queued destruction, if any.
    pub fn next_destruction(&self) -> Result<Option<i64>, LockboxError> {
        Ok(self
            .records
            .queued_destructions(1)?
            .first()
            .map(|(at, _, _)| *at))
    }

    /// Erases the payloads of versions whose destruction time has come.
    pub async fn destroy_due_versions(&self) -> Result<usize, LockboxError> {
        let mut destroyed = 0;
        loop {
            let writer = self.write_lock().await;
            let now = self.now();
            let due: Vec<_> = self
                .records
                .queued_destructions(256)?
                .into_iter()
                .filter(|(at, _, _)| *at <= now)
                .collect();
            if due.is_empty() {
                return Ok(destroyed);
            }
            let mut batch = Batch::default();
            // Versions destroyed, by secret: they stop counting against its quota.
            let mut freed: std::collections::BTreeMap<&str, u32> = Default::default();
            for (at, secret_id, version_id) in &due {
                self.records
                    .unqueue_destruction(&mut batch, *at, secret_id, version_id);
                let Some(mut version) = self.records.version(secret_id, version_id)? else {
                    continue;
                };
                if version.meta.status == VersionStatus::ScheduledForDestruction
                    && version.meta.destroy_at == Some(*at)
                {
                    version.meta.status = VersionStatus::Destroyed;
                    version.sealed = None;
                    self.records.put_version(&mut batch, &version);
                    *freed.entry(secret_id).or_default() += 1;
                    destroyed += 1;
                    tracing::info!(secret_id, version_id, "secret version destroyed");
                }
            }
            // Under the writer lock the read cache agrees with the store.
            let mut secrets = Vec::new();
            for (secret_id, n) in freed {
                // A secret deleted takes its versions and queued destructions with it; one
                // missing here has nothing left to count.
                let mut secret = match self.cached_secret(secret_id) {
                    Ok(hot) => hot.record.clone(),
                    Err(LockboxError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                secret.version_count = secret.version_count.saturating_sub(n);
                self.records
                    .put_secret(&mut batch, &secret, Some(&secret.name));
                secrets.push(secret.id);
            }
            self.commit_then(writer, batch, || {
                for id in &secrets {
                    self.read_cache.invalidate_secret(id);
                }
            })
            .await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, value: &str) -> Entry {
        Entry {
            key: key.into(),
            text: true,
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn changes_set_replace_and_remove() {
        let base = vec![e("a", "1"), e("b", "2")];
        let out = apply_changes(
            base,
            vec![
                EntryChange::Set(e("b", "22")),
                EntryChange::Set(e("c", "3")),
                EntryChange::Remove("a".into()),
            ],
            1024,
            BaseVisible::Yes,
        )
        .unwrap();
        assert_eq!(out, vec![e("b", "22"), e("c", "3")]);
    }

    #[test]
    fn removing_a_missing_key_or_exceeding_the_size_fails() {
        assert!(matches!(
            apply_changes(
                vec![],
                vec![EntryChange::Remove("x".into())],
                1024,
                BaseVisible::Yes
            ),
            Err(LockboxError::InvalidArgument(_))
        ));
        assert!(matches!(
            apply_changes(
                vec![],
                vec![EntryChange::Set(e("k", &"v".repeat(100)))],
                100,
                BaseVisible::Yes
            ),
            Err(LockboxError::ResourceExhausted(_))
        ));
        assert!(
            validate_changes(&[
                EntryChange::Set(e("k", "1")),
                EntryChange::Remove("k".into())
            ])
            .is_err()
        );
    }
}
