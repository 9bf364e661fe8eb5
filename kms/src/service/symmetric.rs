//! Symmetric key management: create, read, list, update, delete, rotate, versions.

use super::holds::refuse_if_held;
use super::quotas::{Quotas, VERSIONS_COUNT, check_key_quota, exceeded, live_versions};
use super::{
    Caller, Kms, Page, SymmetricKeyInfo, VersionInfo, page_by_offset, symmetric_key,
    symmetric_key_mut,
};
use crate::access::Permission;
use crate::crypto::{Algorithm, KeyMaterial};
use crate::error::KmsError;
use crate::ids::{KEY_PREFIX, new_id};
use crate::model::{
    KeyMeta, KeyStatus, KeyVersionRecord, Resource, SymmetricKeyRecord, VersionStatus,
};
use crate::validate;
use std::collections::BTreeMap;
use std::ops::Bound;

/// What every new key needs, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMetaSpec {
    /// Folder to create the key in.
    pub folder_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Whether deletion is refused.
    pub deletion_protection: bool,
}

impl KeyMetaSpec {
    /// Checks every field, naming the first that fails.
    pub(super) fn validate(&self) -> Result<(), KmsError> {
        validate::folder_id(&self.folder_id)?;
        validate::name(&self.name)?;
        validate::description(&self.description)?;
        validate::labels(&self.labels)
    }

    /// The metadata of a new, active key with a fresh id.
    pub(super) fn into_meta(self, now: i64) -> KeyMeta {
        KeyMeta {
            id: new_id(KEY_PREFIX),
            folder_id: self.folder_id,
            created_at: now,
            name: self.name,
            description: self.description,
            labels: self.labels,
            status: KeyStatus::Active,
            deletion_protection: self.deletion_protection,
        }
    }
}

/// What `create_symmetric_key` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Folder, name, description, labels, deletion protection.
    pub meta: KeyMetaSpec,
    /// Algorithm of versions.
    pub algorithm: Algorithm,
    /// Automatic rotation period.
    pub rotation_period: Option<u64>,
}

/// Changes for `update_symmetric_key`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// New status (`Active` or `Inactive`).
    pub status: Option<KeyStatus>,
    /// New default algorithm.
    pub default_algorithm: Option<Algorithm>,
    /// New rotation period (`Some(None)` turns rotation off).
    pub rotation_period: Option<Option<u64>>,
    /// New deletion protection.
    pub deletion_protection: Option<bool>,
}

pub(super) fn info(key: &SymmetricKeyRecord) -> Result<SymmetricKeyInfo, KmsError> {
    let primary = key
        .primary()
        .ok_or_else(|| KmsError::Internal(format!("key {} has no primary version", key.meta.id)))?;
    Ok(SymmetricKeyInfo {
        meta: key.meta.clone(),
        default_algorithm: key.default_algorithm,
        primary_version: version_info(key, primary),
        rotation_period: key.rotation_period,
        rotated_at: key.rotated_at,
    })
}

fn version_info(key: &SymmetricKeyRecord, v: &KeyVersionRecord) -> VersionInfo {
    VersionInfo {
        id: v.id.clone(),
        key_id: key.meta.id.clone(),
        status: v.status,
        algorithm: v.algorithm,
        created_at: v.created_at,
        primary: v.id == key.primary_version_id,
        destroy_at: v.destroy_at,
    }
}

fn new_version(algorithm: Algorithm, now: i64) -> KeyVersionRecord {
    KeyVersionRecord {
        id: new_id(KEY_PREFIX),
        status: VersionStatus::Active,
        algorithm,
        created_at: now,
        destroy_at: None,
        material: Some(KeyMaterial::random(algorithm.key_len())),
    }
}

/// Adds a new primary version, within the versions quota (versions not destroyed).
pub(super) fn rotate_in_place(
    key: &mut SymmetricKeyRecord,
    now: i64,
    quotas: &Quotas,
) -> Result<VersionInfo, KmsError> {
    let live = live_versions(key);
    let limit = quotas.versions_per_key(&key.meta.folder_id);
    if live >= limit {
        return Err(exceeded(
            VERSIONS_COUNT,
            &format!("key {}", key.meta.id),
            live,
            limit,
        ));
    }
    let version = new_version(key.default_algorithm, now);
    key.primary_version_id = version.id.clone();
    key.rotated_at = Some(now);
    key.versions.push(version);
    let v = key.versions.last().map(|v| version_info(key, v));
    // The version was pushed on the line above.
    v.ok_or_else(|| KmsError::Internal("rotation lost its version".into()))
}

impl Kms {
    /// Creates a symmetric key with one active, primary version.
    pub async fn create_symmetric_key(
        &self,
        caller: &Caller<'_>,
        spec: KeySpec,
    ) -> Result<SymmetricKeyInfo, KmsError> {
        spec.meta.validate()?;
        validate::rotation_period(spec.rotation_period)?;
        self.mutate(|snap, state, now| {
            Self::authorize(snap, caller, None, &spec.meta.folder_id, Permission::Create)?;
            check_key_quota(state, &self.quotas, &spec.meta.folder_id)?;
            let version = new_version(spec.algorithm, now);
            let meta = spec.meta.into_meta(now);
            let id = meta.id.clone();
            let key = SymmetricKeyRecord {
                meta,
                default_algorithm: spec.algorithm,
                primary_version_id: version.id.clone(),
                rotation_period: spec.rotation_period,
                rotated_at: None,
                versions: vec![version],
            };
            let out = info(&key)?;
            tracing::info!(key_id = %id, subject = caller.principal.subject, "symmetric key created");
            state.symmetric_keys.insert(id, key);
            Ok(out)
        })
        .await
    }

    /// Reads a symmetric key.
    pub fn get_symmetric_key(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
    ) -> Result<SymmetricKeyInfo, KmsError> {
        let snap = self.snapshot();
        let key = symmetric_key(&snap.state, key_id)?;
        Self::authorize_key(&snap, caller, &key.meta, Permission::Get)?;
        info(key)
    }

    /// Lists a folder's symmetric keys by id.
    pub fn list_symmetric_keys(
        &self,
        caller: &Caller<'_>,
        folder_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<SymmetricKeyInfo>, KmsError> {
        validate::folder_id(folder_id)?;
        let size = validate::page_size(page_size)?;
        let snap = self.snapshot();
        Self::authorize(&snap, caller, None, folder_id, Permission::Get)?;
        let start = if page_token.is_empty() {
            Bound::Unbounded
        } else {
            validate::id("page_token", page_token)?;
            Bound::Excluded(page_token.to_owned())
        };
        let mut matching = snap
            .state
            .symmetric_keys
            .range((start, Bound::Unbounded))
            .map(|(_, k)| k)
            .filter(|k| k.meta.folder_id == folder_id);
        let items = matching
            .by_ref()
            .take(size)
            .map(info)
            .collect::<Result<Vec<_>, _>>()?;
        let more = matching.next().is_some();
        let next_page_token = match (more, items.last()) {
            (true, Some(last)) => last.meta.id.clone(),
            _ => String::new(),
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// Changes the fields set in `update`.
    pub async fn update_symmetric_key(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        update: KeyUpdate,
    ) -> Result<SymmetricKeyInfo, KmsError> {
        validate::id("key_id", key_id)?;
        if let Some(n) = &update.name {
            validate::name(n)?;
        }
        if let Some(d) = &update.description {
            validate::description(d)?;
        }
        if let Some(l) = &update.labels {
            validate::labels(l)?;
        }
        if let Some(p) = update.rotation_period {
            validate::rotation_period(p)?;
        }
        if update.status == Some(KeyStatus::Creating) {
            return Err(KmsError::InvalidArgument(
                "status: may only be set to ACTIVE or INACTIVE".into(),
            ));
        }
        self.mutate_symmetric_key(caller, key_id, Permission::Update, |key, _| {
            let KeyUpdate {
                name,
                description,
                labels,
                status,
                default_algorithm,
                rotation_period,
                deletion_protection,
            } = update;
            if let Some(v) = name {
                key.meta.name = v;
            }
            if let Some(v) = description {
                key.meta.description = v;
            }
            if let Some(v) = labels {
                key.meta.labels = v;
            }
            if let Some(v) = status {
                key.meta.status = v;
            }
            if let Some(v) = default_algorithm {
                key.default_algorithm = v;
            }
            if let Some(v) = rotation_period {
                key.rotation_period = v;
            }
            if let Some(v) = deletion_protection {
                key.meta.deletion_protection = v;
            }
            info(key)
        })
        .await
    }

    /// Deletes a symmetric key, erasing every version's material.
    pub async fn delete_symmetric_key(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
    ) -> Result<(), KmsError> {
        self.mutate(|snap, state, _| {
            let key = symmetric_key(&snap.state, key_id)?;
            Self::authorize_key(snap, caller, &key.meta, Permission::Delete)?;
            if key.meta.deletion_protection {
                return Err(KmsError::FailedPrecondition(format!(
                    "key {key_id} has deletion protection; turn it off first"
                )));
            }
            for version in &key.versions {
                refuse_if_held(&snap.state, key_id, &version.id)?;
            }
            state.symmetric_keys.remove(key_id);
            state.bindings.remove(&Resource::Key(key_id.to_owned()));
            tracing::info!(
                key_id,
                subject = caller.principal.subject,
                "symmetric key deleted"
            );
            Ok(())
        })
        .await
    }

    /// Lists a key's versions, newest first.
    pub fn list_symmetric_key_versions(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<VersionInfo>, KmsError> {
        let snap = self.snapshot();
        let key = symmetric_key(&snap.state, key_id)?;
        Self::authorize_key(&snap, caller, &key.meta, Permission::Get)?;
        let versions = key
            .versions
            .iter()
            .rev()
            .map(|v| version_info(key, v))
            .collect();
        page_by_offset(versions, page_size, page_token)
    }

    /// Creates a new version of the key's default algorithm and makes it primary.
    pub async fn rotate_symmetric_key(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
    ) -> Result<SymmetricKeyInfo, KmsError> {
        self.mutate_symmetric_key(caller, key_id, Permission::Rotate, |key, now| {
            let v = rotate_in_place(key, now, &self.quotas)?;
            tracing::info!(key_id, version_id = %v.id, subject = caller.principal.subject, "key rotated");
            info(key)
        })
        .await
    }

    /// Makes an active version primary.
    pub async fn set_primary_version(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        version_id: &str,
    ) -> Result<SymmetricKeyInfo, KmsError> {
        validate::id("version_id", version_id)?;
        self.mutate_symmetric_key(caller, key_id, Permission::SetPrimaryVersion, |key, _| {
            if key.existing_version(version_id)?.status != VersionStatus::Active {
                return Err(KmsError::FailedPrecondition(format!(
                    "version {version_id} is not active and cannot be primary"
                )));
            }
            key.primary_version_id = version_id.to_owned();
            info(key)
        })
        .await
    }

    /// Schedules a non-primary version's destruction after `pending_period` seconds.
    pub async fn schedule_version_destruction(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        version_id: &str,
        pending_period: Option<u64>,
    ) -> Result<VersionInfo, KmsError> {
        validate::id("version_id", version_id)?;
        let period = pending_period.unwrap_or(validate::DEFAULT_PENDING_PERIOD);
        if period < validate::MIN_PENDING_PERIOD {
            return Err(KmsError::InvalidArgument(format!(
                "pending_period: must be at least {} seconds (1 day), got {period}",
                validate::MIN_PENDING_PERIOD
            )));
        }
        let permission = Permission::ScheduleVersionDestruction;
        self.mutate(|snap, state, now| {
            let key = symmetric_key(&snap.state, key_id)?;
            Self::authorize_key(snap, caller, &key.meta, permission)?;
            refuse_if_held(&snap.state, key_id, version_id)?;
            let key = symmetric_key_mut(state, key_id)?;
            if key.primary_version_id == version_id {
                return Err(KmsError::FailedPrecondition(format!(
                    "version {version_id} is the primary version of key {key_id}; \
                     make another version primary first"
                )));
            }
            let version = key.existing_version_mut(version_id)?;
            if version.status != VersionStatus::Active {
                return Err(KmsError::FailedPrecondition(format!(
                    "version {version_id} is not active"
                )));
            }
            version.status = VersionStatus::ScheduledForDestruction;
            version.destroy_at =
                Some(now.saturating_add(i64::try_from(period).unwrap_or(i64::MAX)));
            tracing::info!(
                key_id,
                version_id,
                destroy_at = ?version.destroy_at,
                subject = caller.principal.subject,
                "version destruction scheduled"
            );
            Ok(version_info(key, key.existing_version(version_id)?))
        })
        .await
    }

    /// Cancels a scheduled destruction.
    pub async fn cancel_version_destruction(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        version_id: &str,
    ) -> Result<VersionInfo, KmsError> {
        validate::id("version_id", version_id)?;
        let permission = Permission::CancelVersionDestruction;
        self.mutate_symmetric_key(caller, key_id, permission, |key, now| {
            let version = key.existing_version_mut(version_id)?;
            if version.status != VersionStatus::ScheduledForDestruction
                || version.is_destroyed_at(now)
            {
                return Err(KmsError::FailedPrecondition(format!(
                    "version {version_id} is not scheduled for destruction"
                )));
            }
            version.status = VersionStatus::Active;
            version.destroy_at = None;
            Ok(version_info(key, key.existing_version(version_id)?))
        })
        .await
    }
}
