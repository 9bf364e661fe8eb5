//! The KMS's records: keys, versions, bindings. This is what the sealed keystore holds.
//!
//! Records are documented where a field or variant has more to say than its name and
//! type; `id`, `name`, `created_at` and the like go without a comment.
#![allow(missing_docs)]

use crate::crypto::{Algorithm, KeyMaterial};
use crate::error::KmsError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Folder reserved for the secrets daemon's own keys; `init --daemon` grants the daemon
/// `kms.editor` and `kms.keys.encrypterDecrypter` on it.
pub const DAEMON_FOLDER: &str = "lockboxd";

/// Schema of [`State`]; a keystore with a newer one is refused. Schema 2 added
/// [`State::holds`]; a schema-1 keystore reads as one with no holds.
pub const SCHEMA: u32 = 2;

/// Lifecycle of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    /// Being created (never persisted in this implementation: creation is atomic).
    Creating,
    /// Usable.
    Active,
    /// Refuses crypto operations.
    Inactive,
}

/// Lifecycle of a symmetric key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionStatus {
    /// Usable.
    Active,
    /// Decrypts until `destroy_at`, then destroyed.
    ScheduledForDestruction,
    /// Material erased.
    Destroyed,
}

/// Metadata shared by both kinds of key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMeta {
    pub id: String,
    /// Folder the key belongs to.
    pub folder_id: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Name (may be empty).
    pub name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub status: KeyStatus,
    /// Whether deletion is refused.
    pub deletion_protection: bool,
}

/// A symmetric key with all its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SymmetricKeyRecord {
    pub meta: KeyMeta,
    /// Algorithm of new versions.
    pub default_algorithm: Algorithm,
    /// Id of the primary version (always an active version of this key).
    pub primary_version_id: String,
    /// Automatic rotation period, seconds.
    pub rotation_period: Option<u64>,
    /// Last rotation, Unix seconds.
    pub rotated_at: Option<i64>,
    /// Versions, oldest first.
    pub versions: Vec<KeyVersionRecord>,
}

impl SymmetricKeyRecord {
    /// The version with `id`.
    pub fn version(&self, id: &str) -> Option<&KeyVersionRecord> {
        self.versions.iter().find(|v| v.id == id)
    }

    /// The version with `id`, or `NotFound` naming it.
    pub fn existing_version(&self, id: &str) -> Result<&KeyVersionRecord, KmsError> {
        self.version(id).ok_or_else(|| self.version_not_found(id))
    }

    /// The version with `id` mutably, or `NotFound` naming it.
    pub fn existing_version_mut(&mut self, id: &str) -> Result<&mut KeyVersionRecord, KmsError> {
        let err = self.version_not_found(id);
        self.versions.iter_mut().find(|v| v.id == id).ok_or(err)
    }

    fn version_not_found(&self, id: &str) -> KmsError {
        KmsError::NotFound(format!("version {id} of key {} not found", self.meta.id))
    }

    /// The primary version. Every key has one; a missing one means a corrupt keystore.
    pub fn primary(&self) -> Option<&KeyVersionRecord> {
        self.version(&self.primary_version_id)
    }

    /// When automatic rotation is next due, if it is on.
    pub fn rotation_due_at(&self) -> Option<i64> {
        let period = i64::try_from(self.rotation_period?).ok()?;
        Some(
            self.rotated_at
                .unwrap_or(self.meta.created_at)
                .saturating_add(period),
        )
    }
}

/// One version of a symmetric key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyVersionRecord {
    /// Id, embedded in ciphertexts.
    pub id: String,
    pub status: VersionStatus,
    /// Algorithm of the material.
    pub algorithm: Algorithm,
    pub created_at: i64,
    /// Scheduled or actual destruction time.
    pub destroy_at: Option<i64>,
    /// The material; `None` once destroyed.
    pub material: Option<KeyMaterial>,
}

impl KeyVersionRecord {
    /// Whether the version can no longer decrypt at time `now` (destroyed, or scheduled and
    /// due even if the sweep has not run yet).
    pub fn is_destroyed_at(&self, now: i64) -> bool {
        match self.status {
            VersionStatus::Destroyed => true,
            VersionStatus::ScheduledForDestruction => self.destroy_at.is_some_and(|t| t <= now),
            VersionStatus::Active => false,
        }
    }
}

/// An asymmetric signature key (ECDSA P-256).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureKeyRecord {
    pub meta: KeyMeta,
    /// The private scalar.
    pub private_key: KeyMaterial,
}

/// Where a binding is attached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resource {
    /// The whole KMS.
    Root,
    Folder(String),
    /// A key of either kind.
    Key(String),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Root => f.write_str("the KMS root"),
            Resource::Folder(id) => write!(f, "folder {id}"),
            Resource::Key(id) => write!(f, "key {id}"),
        }
    }
}

/// A role granted to a subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Binding {
    pub role: String,
    pub subject: String,
}

/// Everything the keystore holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// [`SCHEMA`] at the time of writing.
    pub schema: u32,
    /// Symmetric keys by id.
    pub symmetric_keys: BTreeMap<String, SymmetricKeyRecord>,
    /// Signature keys by id.
    pub signature_keys: BTreeMap<String, SignatureKeyRecord>,
    /// Bindings by the resource they are attached to.
    pub bindings: BTreeMap<Resource, BTreeSet<Binding>>,
    /// Subjects allowed to send requests on behalf of others (the secrets daemon).
    pub relays: BTreeSet<String>,
    /// Symmetric key versions under which a relay keeps data it encrypted here, by version
    /// id: such a version cannot be scheduled for destruction.
    pub holds: BTreeMap<String, VersionHolds>,
}

/// Who keeps data under one version: each relay, with how many data keys it reported
/// (`None`: it has encrypted under the version and not reported since).
pub type VersionHolds = BTreeMap<String, Option<u64>>;

/// [`State`] as schema 1 wrote it.
#[derive(Deserialize)]
pub struct StateV1 {
    pub schema: u32,
    pub symmetric_keys: BTreeMap<String, SymmetricKeyRecord>,
    pub signature_keys: BTreeMap<String, SignatureKeyRecord>,
    pub bindings: BTreeMap<Resource, BTreeSet<Binding>>,
    pub relays: BTreeSet<String>,
}

impl From<StateV1> for State {
    fn from(v1: StateV1) -> Self {
        Self {
            schema: SCHEMA,
            symmetric_keys: v1.symmetric_keys,
            signature_keys: v1.signature_keys,
            bindings: v1.bindings,
            relays: v1.relays,
            holds: BTreeMap::new(),
        }
    }
}

impl State {
    /// An empty keystore whose `admins` hold `kms.admin` on the root.
    pub fn new(admins: &[String], relays: &[String]) -> Self {
        let mut bindings = BTreeMap::new();
        let root: BTreeSet<Binding> = admins
            .iter()
            .map(|s| Binding {
                role: "kms.admin".into(),
                subject: s.clone(),
            })
            .collect();
        if !root.is_empty() {
            bindings.insert(Resource::Root, root);
        }
        Self {
            schema: SCHEMA,
            symmetric_keys: BTreeMap::new(),
            signature_keys: BTreeMap::new(),
            bindings,
            relays: relays.iter().cloned().collect(),
            holds: BTreeMap::new(),
        }
    }

    /// Enrols the secrets daemon: it may relay requests for its callers and manage and use
    /// keys in [`DAEMON_FOLDER`], where it keeps the key that wraps its service keyring and
    /// the key that signs its audit trail.
    pub fn enrol_daemon(&mut self, subject: &str) {
        self.relays.insert(subject.to_owned());
        let folder = self
            .bindings
            .entry(Resource::Folder(DAEMON_FOLDER.to_owned()))
            .or_default();
        for role in [
            "kms.editor",
            "kms.keys.encrypterDecrypter",
            "kms.asymmetricSignatureKeys.signer",
        ] {
            folder.insert(Binding {
                role: role.into(),
                subject: subject.to_owned(),
            });
        }
    }

    /// The folder of a key of either kind.
    pub fn folder_of(&self, key_id: &str) -> Option<&str> {
        self.symmetric_keys
            .get(key_id)
            .map(|k| k.meta.folder_id.as_str())
            .or_else(|| {
                self.signature_keys
                    .get(key_id)
                    .map(|k| k.meta.folder_id.as_str())
            })
    }

    /// Keys of both kinds in `folder_id`.
    pub fn keys_in_folder(&self, folder_id: &str) -> usize {
        self.symmetric_keys
            .values()
            .filter(|k| k.meta.folder_id == folder_id)
            .count()
            + self
                .signature_keys
                .values()
                .filter(|k| k.meta.folder_id == folder_id)
                .count()
    }
}
