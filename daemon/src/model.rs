//! Lockbox's records: resources, secrets, versions, operations. What the store holds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Schema of the stored records; a data directory with a newer one is refused.
pub const SCHEMA: u32 = 1;

/// An organization, the root of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: i64,
}

/// A cloud in an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cloud {
    /// Id.
    pub id: String,
    /// Parent organization.
    pub organization_id: String,
    /// Name, unique in the organization.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time.
    pub created_at: i64,
}

/// A folder in a cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    /// Id.
    pub id: String,
    /// Parent cloud.
    pub cloud_id: String,
    /// Name, unique in the cloud.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time.
    pub created_at: i64,
}

/// Lifecycle of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretStatus {
    /// Payload readable.
    Active,
    /// Payload refused.
    Inactive,
}

/// Lifecycle of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionStatus {
    /// Readable.
    Active,
    /// Readable until `destroy_at`.
    ScheduledForDestruction,
    /// Payload erased.
    Destroyed,
}

/// How passwords are generated for a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordSpec {
    /// Entry key receiving the password.
    pub password_key: String,
    /// Length.
    pub length: u32,
    /// A-Z.
    pub include_uppercase: bool,
    /// a-z.
    pub include_lowercase: bool,
    /// 0-9.
    pub include_digits: bool,
    /// Punctuation.
    pub include_punctuation: bool,
    /// Only these punctuation characters (empty: all).
    pub included_punctuation: String,
    /// Never these.
    pub excluded_punctuation: String,
}

/// A secret's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Id.
    pub id: String,
    /// Folder.
    pub folder_id: String,
    /// The folder's cloud, for the per-cloud quota.
    pub cloud_id: String,
    /// Creation time.
    pub created_at: i64,
    /// Name (may be empty).
    pub name: String,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// KMS key wrapping payload keys; `None` for the service keyring.
    pub kms_key_id: Option<String>,
    /// Lifecycle.
    pub status: SecretStatus,
    /// Current version.
    pub current_version_id: Option<String>,
    /// Whether deletion is refused.
    pub deletion_protection: bool,
    /// Password generation.
    pub password_spec: Option<PasswordSpec>,
    /// Versions ever created (destroyed ones included), for the quota.
    pub version_count: u32,
}

/// A version's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Id.
    pub id: String,
    /// Secret.
    pub secret_id: String,
    /// Creation time.
    pub created_at: i64,
    /// Scheduled or actual destruction.
    pub destroy_at: Option<i64>,
    /// Description.
    pub description: String,
    /// Lifecycle.
    pub status: VersionStatus,
    /// Entry keys, in payload order.
    pub entry_keys: Vec<String>,
}

/// A payload key wrapped by the service keyring or by a KMS key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WrappedDek {
    /// AES-256-GCM under the daemon's service keyring.
    Keyring(#[serde(with = "lockbox_proto::bytes::vec")] Vec<u8>),
    /// A `lockbox-kms` ciphertext under the secret's key.
    Kms(#[serde(with = "lockbox_proto::bytes::vec")] Vec<u8>),
}

/// An encrypted payload and its wrapped key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPayload {
    /// The payload key, wrapped.
    pub dek: WrappedDek,
    /// `nonce | AES-256-GCM(entries)`.
    #[serde(with = "lockbox_proto::bytes::vec")]
    pub ciphertext: Vec<u8>,
}

/// A version: metadata and, until destroyed, its sealed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Metadata.
    pub meta: VersionMeta,
    /// The payload; `None` once destroyed.
    pub sealed: Option<SealedPayload>,
}

/// What a finished operation produced, as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationOutcome {
    /// A secret and its current version.
    Secret(Box<SecretRecord>, Option<VersionMeta>),
    /// A version.
    Version(VersionMeta),
    /// A cloud.
    Cloud(Cloud),
    /// A folder.
    Folder(Folder),
    /// Nothing.
    Empty,
}

/// A recorded mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    /// Id.
    pub id: String,
    /// What was done.
    pub description: String,
    /// When.
    pub created_at: i64,
    /// Who.
    pub created_by: String,
    /// The resource acted on.
    pub resource_id: String,
    /// The result.
    pub outcome: OperationOutcome,
}

/// One payload entry in plaintext. Zeroized on drop; its `Debug` shows only the key.
#[derive(
    Clone, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop,
)]
pub struct Entry {
    /// Key.
    pub key: String,
    /// Whether the value is text (else binary).
    pub text: bool,
    /// Value bytes.
    #[serde(with = "lockbox_proto::bytes::vec")]
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("value", &format_args!("[REDACTED; {}]", self.value.len()))
            .finish()
    }
}

/// A service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountRecord {
    /// Id.
    pub id: String,
    /// Folder.
    pub folder_id: String,
    /// Name, unique in the folder.
    pub name: String,
    /// Description.
    pub description: String,
    /// Creation time.
    pub created_at: i64,
}

/// The public half of a service-account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKeyRecord {
    /// Key id.
    pub id: String,
    /// The account.
    pub service_account_id: String,
    /// Description.
    pub description: String,
    /// Creation time.
    pub created_at: i64,
    /// SEC1-encoded P-256 public key.
    #[serde(with = "lockbox_proto::bytes::vec")]
    pub public_key: Vec<u8>,
}
