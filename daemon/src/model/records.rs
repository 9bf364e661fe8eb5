//! The records the store holds, as the service works with them and as they are encoded on
//! disk (postcard, through serde; a version record's payload keeps schema 1's form readable).
//!
//! Records are documented where a field or variant has more to say than its name and type;
//! `id`, `name`, `created_at` and the like go without a comment.
#![allow(missing_docs)]

use super::EntriesLayout;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The resources access bindings attach to, in the hierarchy organization > cloud > folder >
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Resource {
    Organization(String),
    Cloud(String),
    Folder(String),
    Secret(String),
}

impl Resource {
    /// The resource's id, whatever its level.
    pub fn id(&self) -> &str {
        match self {
            Resource::Organization(id)
            | Resource::Cloud(id)
            | Resource::Folder(id)
            | Resource::Secret(id) => id,
        }
    }
}

/// A role granted to a subject on a resource (which role means what: `iam::roles`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Binding {
    pub role: String,
    pub subject: String,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Organization(id) => write!(f, "organization {id}"),
            Resource::Cloud(id) => write!(f, "cloud {id}"),
            Resource::Folder(id) => write!(f, "folder {id}"),
            Resource::Secret(id) => write!(f, "secret {id}"),
        }
    }
}

/// An organization, the root of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A cloud in an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cloud {
    pub id: String,
    /// Parent organization.
    pub organization_id: String,
    /// Name, unique in the organization.
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// A folder in a cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    pub id: String,
    /// Parent cloud.
    pub cloud_id: String,
    /// Name, unique in the cloud.
    pub name: String,
    pub description: String,
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
    pub length: u32,
    /// A-Z.
    pub include_uppercase: bool,
    /// a-z.
    pub include_lowercase: bool,
    /// 0-9.
    pub include_digits: bool,
    pub include_punctuation: bool,
    /// Only these punctuation characters (empty: all).
    pub included_punctuation: String,
    /// Never these.
    pub excluded_punctuation: String,
}

/// A secret's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub id: String,
    pub folder_id: String,
    /// The folder's cloud, for the per-cloud quota.
    pub cloud_id: String,
    pub created_at: i64,
    /// Name (may be empty).
    pub name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// KMS key wrapping payload keys; `None` for the service keyring.
    pub kms_key_id: Option<String>,
    pub status: SecretStatus,
    pub current_version_id: Option<String>,
    /// Whether deletion is refused.
    pub deletion_protection: bool,
    pub password_spec: Option<PasswordSpec>,
    /// Versions not destroyed, counted against `lockbox.versions.count` (schema 3; before,
    /// every version ever created).
    pub version_count: u32,
}

/// A version's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub id: String,
    pub secret_id: String,
    pub created_at: i64,
    /// Scheduled or actual destruction.
    pub destroy_at: Option<i64>,
    pub description: String,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPayload {
    /// How the plaintext lays out the entries.
    pub layout: EntriesLayout,
    pub dek: WrappedDek,
    /// `nonce | AES-256-GCM(entries)`.
    pub ciphertext: Vec<u8>,
}

/// A version: metadata and, until destroyed, its sealed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub meta: VersionMeta,
    /// The payload; `None` once destroyed.
    #[serde(with = "stored_payload")]
    pub sealed: Option<SealedPayload>,
}

/// How a version record stores its payload. Schema 1 wrote an `Option` of a payload without
/// a layout; its two tags (`None`, `Some`) stay what they were, as the first two variants of
/// [`Stored`](stored_payload::Stored), and a payload that says its layout is a third.
mod stored_payload {
    use super::{EntriesLayout, SealedPayload, WrappedDek};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The stored form, decoded. The order of the variants is the stored format.
    #[derive(Deserialize)]
    pub(super) enum Stored {
        /// Destroyed (schema 1's `None`).
        Destroyed,
        /// Sealed with layout 0, which schema 1 did not write down (schema 1's `Some`).
        LayoutZero {
            dek: WrappedDek,
            #[serde(with = "lockbox_proto::bytes::vec")]
            ciphertext: Vec<u8>,
        },
        /// Sealed, with its layout (schema 2 on).
        Sealed {
            layout: EntriesLayout,
            dek: WrappedDek,
            #[serde(with = "lockbox_proto::bytes::vec")]
            ciphertext: Vec<u8>,
        },
    }

    /// [`Stored`] as written, borrowing the payload: the variants in the same order.
    #[derive(Serialize)]
    enum StoredRef<'a> {
        Destroyed,
        #[allow(dead_code)] // never written again; holds `Sealed` in third place
        LayoutZero,
        Sealed {
            layout: EntriesLayout,
            dek: &'a WrappedDek,
            #[serde(with = "lockbox_proto::bytes::vec")]
            ciphertext: &'a [u8],
        },
    }

    pub(super) fn serialize<S: Serializer>(
        sealed: &Option<SealedPayload>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match sealed {
            None => StoredRef::Destroyed,
            Some(p) => StoredRef::Sealed {
                layout: p.layout,
                dek: &p.dek,
                ciphertext: &p.ciphertext,
            },
        }
        .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<SealedPayload>, D::Error> {
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Destroyed => None,
            Stored::LayoutZero { dek, ciphertext } => Some(SealedPayload {
                layout: EntriesLayout::V0,
                dek,
                ciphertext,
            }),
            Stored::Sealed {
                layout,
                dek,
                ciphertext,
            } => Some(SealedPayload {
                layout,
                dek,
                ciphertext,
            }),
        })
    }
}

/// What a finished operation produced, as it was then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationOutcome {
    /// A secret and its current version.
    Secret(Box<SecretRecord>, Option<VersionMeta>),
    Version(VersionMeta),
    Cloud(Cloud),
    Folder(Folder),
    Empty,
}

/// A recorded mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
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

/// A service account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountRecord {
    pub id: String,
    pub folder_id: String,
    /// Name, unique in the folder.
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// The public half of a service-account key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKeyRecord {
    /// Key id.
    pub id: String,
    /// The account.
    pub service_account_id: String,
    pub description: String,
    pub created_at: i64,
    /// SEC1-encoded P-256 public key.
    #[serde(with = "lockbox_proto::bytes::vec")]
    pub public_key: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> VersionMeta {
        VersionMeta {
            id: "e6v01k82q5kf0339olii".into(),
            secret_id: "e6q01k82q5kevjajpei9".into(),
            created_at: 1_764_000_000,
            destroy_at: None,
            description: "first".into(),
            status: VersionStatus::Active,
            entry_keys: vec!["user".into()],
        }
    }

    /// A version record as schema 1 wrote it: the payload an `Option` without a layout.
    #[derive(Serialize)]
    struct SchemaOneVersion {
        meta: VersionMeta,
        sealed: Option<SchemaOnePayload>,
    }

    #[derive(Serialize)]
    struct SchemaOnePayload {
        dek: WrappedDek,
        #[serde(with = "lockbox_proto::bytes::vec")]
        ciphertext: Vec<u8>,
    }

    #[test]
    fn schema_one_versions_read_as_layout_zero() {
        for dek in [
            WrappedDek::Keyring(vec![1; 60]),
            WrappedDek::Kms(vec![2; 90]),
        ] {
            let old = SchemaOneVersion {
                meta: meta(),
                sealed: Some(SchemaOnePayload {
                    dek: dek.clone(),
                    ciphertext: vec![3; 45],
                }),
            };
            let read: VersionRecord =
                postcard::from_bytes(&postcard::to_allocvec(&old).unwrap()).unwrap();
            assert_eq!(
                read,
                VersionRecord {
                    meta: meta(),
                    sealed: Some(SealedPayload {
                        layout: EntriesLayout::V0,
                        dek,
                        ciphertext: vec![3; 45],
                    }),
                }
            );
        }
        let destroyed = SchemaOneVersion {
            meta: meta(),
            sealed: None,
        };
        let bytes = postcard::to_allocvec(&destroyed).unwrap();
        let read: VersionRecord = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(read.sealed, None);
        // A destroyed version is written as schema 1 wrote it.
        assert_eq!(postcard::to_allocvec(&read).unwrap(), bytes);
    }

    #[test]
    fn versions_round_trip_with_their_layout() {
        let record = VersionRecord {
            meta: meta(),
            sealed: Some(SealedPayload {
                layout: EntriesLayout::CURRENT,
                dek: WrappedDek::Keyring(vec![1; 60]),
                ciphertext: vec![3; 45],
            }),
        };
        let bytes = postcard::to_allocvec(&record).unwrap();
        assert_eq!(
            postcard::from_bytes::<VersionRecord>(&bytes).unwrap(),
            record
        );
        let stored: stored_payload::Stored =
            postcard::from_bytes(&bytes[bytes.len() - (1 + 1 + 1 + 1 + 60 + 1 + 45)..]).unwrap();
        assert!(matches!(
            stored,
            stored_payload::Stored::Sealed {
                layout: EntriesLayout::V0,
                ..
            }
        ));
    }
}
