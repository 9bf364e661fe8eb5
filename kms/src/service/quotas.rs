//! The KMS's quotas: keys per folder and versions per key, their per-folder overrides, and
//! what a folder uses of them. Usage is never stored: it is counted from the state, which
//! every change replaces whole.

use super::{Caller, Kms};
use crate::access::Permission;
use crate::error::KmsError;
use crate::model::{State, SymmetricKeyRecord, VersionStatus};
use crate::validate;
use std::collections::BTreeMap;

/// Keys of both kinds per folder.
pub(super) const KEYS_COUNT: &str = "kms.keys.count";
/// Versions not destroyed per symmetric key.
pub(super) const VERSIONS_COUNT: &str = "kms.symmetricKeyVersions.count";

/// Limits on what callers may create: the defaults, and per folder where configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// Keys (of both kinds) per folder (`kms.keys.count`).
    pub keys_per_folder: usize,
    /// Versions not destroyed per symmetric key (`kms.symmetricKeyVersions.count`).
    pub versions_per_key: usize,
    /// Quotas of particular folders, by folder id; what one leaves out is the default.
    pub folders: BTreeMap<String, FolderQuotas>,
}

/// A folder's own quotas (`[quotas.folders.<folder id>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderQuotas {
    /// `kms.keys.count` of the folder.
    pub keys_per_folder: Option<usize>,
    /// `kms.symmetricKeyVersions.count` of its keys.
    pub versions_per_key: Option<usize>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            keys_per_folder: 100,
            versions_per_key: 100,
            folders: BTreeMap::new(),
        }
    }
}

impl Quotas {
    /// `kms.keys.count` of `folder_id`.
    pub fn keys_per_folder(&self, folder_id: &str) -> usize {
        self.folders
            .get(folder_id)
            .and_then(|f| f.keys_per_folder)
            .unwrap_or(self.keys_per_folder)
    }

    /// `kms.symmetricKeyVersions.count` of the keys of `folder_id`.
    pub fn versions_per_key(&self, folder_id: &str) -> usize {
        self.folders
            .get(folder_id)
            .and_then(|f| f.versions_per_key)
            .unwrap_or(self.versions_per_key)
    }
}

/// The refusal of a change that would take `usage` past `limit` of quota `name` on
/// `resource`.
pub(super) fn exceeded(name: &str, resource: &str, usage: usize, limit: usize) -> KmsError {
    KmsError::ResourceExhausted(format!(
        "quota {name} exceeded: {resource} uses {usage} of {limit}"
    ))
}

/// A key's versions not destroyed.
pub(super) fn live_versions(key: &SymmetricKeyRecord) -> usize {
    key.versions
        .iter()
        .filter(|v| v.status != VersionStatus::Destroyed)
        .count()
}

/// Refuses a new key in `folder_id` beyond its quota.
pub(super) fn check_key_quota(
    state: &State,
    quotas: &Quotas,
    folder_id: &str,
) -> Result<(), KmsError> {
    let count = state.keys_in_folder(folder_id);
    let limit = quotas.keys_per_folder(folder_id);
    if count >= limit {
        return Err(exceeded(
            KEYS_COUNT,
            &format!("folder {folder_id}"),
            count,
            limit,
        ));
    }
    Ok(())
}

/// A quota of a folder and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUsage {
    /// The quota's name.
    pub name: &'static str,
    /// What one unit of it limits: `folder` or `key`.
    pub per: &'static str,
    /// The limit.
    pub limit: u64,
    /// The folder's usage, or its most used key's for a per-key quota.
    pub usage: u64,
    /// Whose usage it is: `folder ID` or `key ID`.
    pub resource: String,
}

impl Kms {
    /// The quotas of `folder_id` and their usage, for anyone who may see its keys
    /// (`kms.keys.get`: `kms.auditor` and up).
    pub fn list_quotas(
        &self,
        caller: &Caller<'_>,
        folder_id: &str,
    ) -> Result<Vec<QuotaUsage>, KmsError> {
        validate::folder_id(folder_id)?;
        let snap = self.snapshot();
        Self::authorize(&snap, caller, None, folder_id, Permission::Get)?;
        let folder = format!("folder {folder_id}");
        let busiest = snap
            .state
            .symmetric_keys
            .values()
            .filter(|k| k.meta.folder_id == folder_id)
            .map(|k| (live_versions(k), &k.meta.id))
            .max_by_key(|(n, _)| *n);
        let (versions, busiest) =
            busiest.map_or((0, folder.clone()), |(n, id)| (n, format!("key {id}")));
        Ok(vec![
            QuotaUsage {
                name: KEYS_COUNT,
                per: "folder",
                limit: self.quotas.keys_per_folder(folder_id) as u64,
                usage: snap.state.keys_in_folder(folder_id) as u64,
                resource: folder,
            },
            QuotaUsage {
                name: VERSIONS_COUNT,
                per: "key",
                limit: self.quotas.versions_per_key(folder_id) as u64,
                usage: versions as u64,
                resource: busiest,
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_s_own_quotas_override_the_defaults_it_names() {
        let quotas: Quotas =
            toml::from_str("keys_per_folder = 5\n[folders.big]\nkeys_per_folder = 50\n").unwrap();
        assert_eq!(quotas.keys_per_folder("big"), 50);
        assert_eq!(quotas.keys_per_folder("other"), 5);
        assert_eq!(quotas.versions_per_key("big"), 100);
        assert!(toml::from_str::<Quotas>("[folders.x]\nkeys = 1\n").is_err());
    }
}
