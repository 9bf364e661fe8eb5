//! Messages of the `lockboxd` service: secrets, versions, payloads, operations, and the
//! organization > cloud > folder hierarchy.
//!
//! Names, limits and semantics follow Yandex Lockbox. Times are Unix seconds; ids are opaque
//! strings chosen by the server and sort by creation time.
//!
//! Messages are documented where a field or variant has more to say than its name and
//! type; `id`, `name`, `created_at` and the like go without a comment.
#![allow(missing_docs)]

use crate::bytes::{SecretBytes, reserve_wiped};
use crate::common::{AccessBinding, AccessBindingDelta, Page, Quota};
use crate::error::Error;
use crate::variant::{self, Tag};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lifecycle of a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SecretStatus {
    /// Being created.
    Creating,
    /// Payload readable.
    Active,
    /// Metadata readable, payload refused.
    Inactive,
}

/// Lifecycle of a secret version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VersionStatus {
    /// Readable.
    Active,
    /// Readable until `destroy_at`, then destroyed.
    ScheduledForDestruction,
    /// Payload erased.
    Destroyed,
}

/// How the server generates a password entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPayloadSpecification {
    /// Entry key that receives the password.
    pub password_key: String,
    /// Length, 1 to 256 (0 means the default, 36).
    pub length: u32,
    /// Use A-Z.
    pub include_uppercase: bool,
    /// Use a-z.
    pub include_lowercase: bool,
    /// Use 0-9.
    pub include_digits: bool,
    /// Use punctuation.
    pub include_punctuation: bool,
    /// Only these punctuation characters (empty: all).
    pub included_punctuation: String,
    /// Never these punctuation characters.
    pub excluded_punctuation: String,
}

/// A secret's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub id: String,
    pub folder_id: String,
    pub created_at: i64,
    /// Name, unique in the folder when not empty.
    pub name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// KMS key wrapping the payload keys; empty for the service keyring.
    pub kms_key_id: String,
    pub status: SecretStatus,
    /// The version payload reads default to.
    pub current_version: Option<Version>,
    /// Whether `Delete` is refused.
    pub deletion_protection: bool,
    /// Password generation, if the secret has one.
    pub password_payload_specification: Option<PasswordPayloadSpecification>,
}

/// A secret version's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub id: String,
    pub secret_id: String,
    pub created_at: i64,
    /// Scheduled or actual destruction time.
    pub destroy_at: Option<i64>,
    pub description: String,
    pub status: VersionStatus,
    /// Keys of the payload entries.
    pub payload_entry_keys: Vec<String>,
}

/// A payload value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PayloadValue {
    /// UTF-8 text.
    Text(SecretBytes),
    /// Bytes.
    Binary(SecretBytes),
}

/// The tags of [`PayloadValue`]'s variants.
static TEXT: Tag = Tag::new(|| variant::tag::<PayloadValue>("Text"));
static BINARY: Tag = Tag::new(|| variant::tag::<PayloadValue>("Binary"));

impl PayloadValue {
    /// The tag the encoding writes before a text value: for a reader of payload answers in
    /// place, and for a server that writes the entries of one itself.
    pub fn text_tag() -> u32 {
        TEXT.get()
    }

    /// The tag the encoding writes before a binary value.
    pub fn binary_tag() -> u32 {
        BINARY.get()
    }
}

/// One entry of a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadEntry {
    /// Key, at most 256 of `[-_./\\@0-9a-zA-Z]`.
    pub key: String,
    pub value: PayloadValue,
}

/// A change to a payload over the base version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadEntryChange {
    /// Key to set, replace or remove.
    pub key: String,
    /// New value; `None` removes the key.
    pub value: Option<PayloadValue>,
}

/// Fields of `CreateSecret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSecret {
    /// Folder; empty means the default folder.
    pub folder_id: String,
    pub name: String,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// KMS key for payload keys; empty for the service keyring. Fixed at creation.
    pub kms_key_id: String,
    /// Description of the first version.
    pub version_description: String,
    /// Entries of the first version; with neither entries nor a password specification the
    /// secret starts without versions.
    pub version_payload_entries: Vec<PayloadEntryChange>,
    /// Whether `Delete` is refused.
    pub deletion_protection: bool,
    /// Generate a password entry in the first version.
    pub password_payload_specification: Option<PasswordPayloadSpecification>,
}

/// Fields of `UpdateSecret`. Only fields named in `update_mask` change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateSecret {
    pub secret_id: String,
    /// `name`, `description`, `labels`, `deletion_protection`,
    /// `password_payload_specification`.
    pub update_mask: Vec<String>,
    /// New name.
    pub name: String,
    /// New description.
    pub description: String,
    /// New labels.
    pub labels: BTreeMap<String, String>,
    /// New deletion protection.
    pub deletion_protection: bool,
    /// New password specification.
    pub password_payload_specification: Option<PasswordPayloadSpecification>,
}

/// Fields of `AddVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddVersion {
    pub secret_id: String,
    /// Description of the new version.
    pub description: String,
    /// Changes over the base version.
    pub payload_entries: Vec<PayloadEntryChange>,
    /// Base version; `None` means the current version (or none if there is none).
    pub base_version_id: Option<String>,
}

/// How `GetPayloadEx` names the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SecretRef {
    /// By id.
    Id(String),
    /// By folder and name.
    FolderAndName {
        /// Folder; empty means the default folder.
        folder_id: String,
        /// Secret name.
        name: String,
    },
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cloud {
    pub id: String,
    pub organization_id: String,
    /// Name, unique in the organization.
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// A folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    pub id: String,
    pub cloud_id: String,
    /// Name, unique in the cloud.
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum OperationResult {
    Secret(Box<Secret>),
    Version(Version),
    Cloud(Cloud),
    Folder(Folder),
    /// Nothing (deletions).
    Empty,
}

/// A record of a mutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    /// What was done, e.g. "Add secret version".
    pub description: String,
    /// When it started.
    pub created_at: i64,
    /// Who did it.
    pub created_by: String,
    /// When it last changed.
    pub modified_at: i64,
    /// Whether it finished (always, for now: mutations complete before they answer).
    pub done: bool,
    /// The resource it acted on.
    pub resource_id: String,
    /// Its outcome.
    pub result: Option<Result<OperationResult, Error>>,
}

/// A resource that access bindings attach to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LockboxResource {
    /// An organization, by id.
    Organization(String),
    /// A cloud, by id.
    Cloud(String),
    /// A folder, by id.
    Folder(String),
    /// A secret, by id.
    Secret(String),
}

/// A service account: an identity for programs, authenticated by keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// Id; the subject is `serviceAccount:<id>`.
    pub id: String,
    /// Folder it belongs to.
    pub folder_id: String,
    /// Name, unique in the folder.
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// An authorized key of a service account (its public half).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKey {
    /// Key id, the `kid` of tokens signed with it.
    pub id: String,
    pub service_account_id: String,
    pub description: String,
    pub created_at: i64,
    /// PEM SubjectPublicKeyInfo of the P-256 public key.
    pub public_key_pem: String,
}

/// A request to `lockboxd`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LockboxRequest {
    /// Get a secret.
    GetSecret { secret_id: String },
    /// List a folder's secrets, oldest first.
    ListSecrets {
        /// Folder; empty means the default folder.
        folder_id: String,
        page: Page,
    },
    /// Create a secret.
    CreateSecret(CreateSecret),
    /// Change a secret's metadata.
    UpdateSecret(UpdateSecret),
    /// Delete a secret and all its versions.
    DeleteSecret { secret_id: String },
    /// Make the payload readable again.
    ActivateSecret { secret_id: String },
    /// Refuse payload reads; metadata stays readable.
    DeactivateSecret { secret_id: String },
    /// List a secret's versions, newest first.
    ListVersions { secret_id: String, page: Page },
    /// Add a version: the base version's entries with the changes applied.
    AddVersion(AddVersion),
    /// Make a version current.
    SetCurrentVersion {
        secret_id: String,
        version_id: String,
    },
    /// Schedule a version's destruction.
    ScheduleVersionDestruction {
        secret_id: String,
        version_id: String,
        /// Seconds until destruction; `None` means 7 days.
        pending_period: Option<u64>,
    },
    /// Cancel a scheduled destruction.
    CancelVersionDestruction {
        secret_id: String,
        version_id: String,
    },
    /// List a secret's operations, newest first.
    ListOperations { secret_id: String, page: Page },
    /// Read a payload.
    GetPayload {
        secret_id: String,
        /// Version; `None` means the current version.
        version_id: Option<String>,
    },
    /// Read a payload, naming the secret by id or by folder and name.
    GetPayloadEx {
        /// The secret.
        secret: SecretRef,
        /// Version; `None` means the current version.
        version_id: Option<String>,
    },
    /// Create a cloud.
    CreateCloud {
        /// Organization; empty means the default organization.
        organization_id: String,
        name: String,
        description: String,
    },
    /// Get a cloud.
    GetCloud { cloud_id: String },
    /// List clouds.
    ListClouds { page: Page },
    /// Delete an empty cloud.
    DeleteCloud { cloud_id: String },
    /// Create a folder.
    CreateFolder {
        /// Cloud; empty means the default cloud.
        cloud_id: String,
        name: String,
        description: String,
    },
    /// Get a folder.
    GetFolder { folder_id: String },
    /// List a cloud's folders.
    ListFolders {
        /// Cloud; empty means the default cloud.
        cloud_id: String,
        page: Page,
    },
    /// Delete an empty folder.
    DeleteFolder { folder_id: String },
    /// Test-only: move the daemon's clock forward and destroy due versions before answering.
    DangerAdvanceClock {
        /// Seconds to move forward.
        seconds: u64,
    },
    /// List the bindings attached directly to a resource.
    ListAccessBindings {
        resource: LockboxResource,
        page: Page,
    },
    /// Replace all bindings attached to a resource.
    SetAccessBindings {
        resource: LockboxResource,
        /// The new bindings.
        bindings: Vec<AccessBinding>,
    },
    /// Add and remove bindings on a resource (at most 1000 deltas).
    UpdateAccessBindings {
        resource: LockboxResource,
        deltas: Vec<AccessBindingDelta>,
    },
    /// Act as a service account for the rest of the connection: a compact ES256 JWS signed
    /// with one of its keys (`kid`), `iss` the account, `aud` "lockboxd", at most an hour
    /// long, used once.
    Authenticate { token: crate::token::Bearer },
    /// Create a service account.
    CreateServiceAccount {
        /// Folder; empty means the default folder.
        folder_id: String,
        name: String,
        description: String,
    },
    /// Get a service account.
    GetServiceAccount {
        /// Id.
        service_account_id: String,
    },
    /// List a folder's service accounts.
    ListServiceAccounts {
        /// Folder; empty means the default folder.
        folder_id: String,
        page: Page,
    },
    /// Delete a service account and its keys.
    DeleteServiceAccount {
        /// Id.
        service_account_id: String,
    },
    /// Create a key pair; the private key is returned once and never stored.
    CreateServiceAccountKey {
        service_account_id: String,
        description: String,
    },
    /// List a service account's keys.
    ListServiceAccountKeys { service_account_id: String },
    /// Delete a key; tokens signed with it are refused from then on.
    DeleteServiceAccountKey {
        service_account_id: String,
        key_id: String,
    },
    /// Wrap the service keyring under its KMS key's primary version now, rather than at the
    /// next start. Needs `lockbox.service.manage` on the organization.
    RewrapKeyring,
    /// Re-encrypt, through lockbox-kms's `ReEncrypt`, the data keys of up to `limit` secret
    /// versions wrapped by an older version of `kms_key_id`, under its primary version (and
    /// the service keyring first, when it is lockboxd's own key). The data keys never leave
    /// lockbox-kms in plaintext. Needs `lockbox.service.manage` on the organization, and
    /// lockbox-kms's consent for the caller to decrypt and encrypt with the key. Call again
    /// until nothing remains; work done is kept, so a failed or interrupted call is simply
    /// repeated. Each call ends by reporting to lockbox-kms what the key's versions still
    /// wrap, which releases the others for destruction.
    RewrapDataKeys { kms_key_id: String, limit: u32 },
    /// Take a consistent checkpoint of lockboxd's data to be read with `ReadBackup` and
    /// released with `EndBackup`. One backup is open at a time: beginning another abandons
    /// the first. Needs `lockbox.service.manage` on the organization.
    BeginBackup,
    /// Up to `length` bytes (at most [`MAX_BACKUP_CHUNK`]) of one file of the open backup.
    ReadBackup {
        backup_id: String,
        file: String,
        offset: u64,
        length: u32,
    },
    /// Release the open backup's checkpoint.
    EndBackup { backup_id: String },
    /// The operations recorded on a resource of any level (creation, access-binding
    /// changes, deletion of what it held), newest first. Needs `lockbox.secrets.get` there.
    ListResourceOperations {
        resource: LockboxResource,
        page: Page,
    },
    /// A cloud's quotas and their usage (empty id: the default cloud). Needs
    /// `lockbox.quotas.get` on the cloud (`lockbox.auditor` and up).
    ListQuotas { cloud_id: String },
}

/// Most bytes one `ReadBackup` returns.
pub const MAX_BACKUP_CHUNK: u32 = 256 * 1024;

/// A backup's checkpoint, taken by `BeginBackup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStarted {
    pub backup_id: String,
    /// Schema of the data in the checkpoint.
    pub schema: u32,
    pub created_at: i64,
    /// The KMS key wrapping the service keyring.
    pub keyring_kms_key_id: String,
    pub files: Vec<BackupFile>,
}

/// One file of a backup's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    pub name: String,
    pub size: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

/// [`LockboxRequest::GetPayload`] over borrowed ids: the most frequent request, sent by the
/// client and read in place by the daemon without copying its ids into owned strings. It
/// encodes to the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetPayloadRef<'a> {
    pub secret_id: &'a str,
    /// Version; `None` means the current version.
    pub version_id: Option<&'a str>,
}

/// The tag of `GetPayload` in [`LockboxRequest`].
static GET_PAYLOAD: Tag = Tag::new(|| variant::tag::<LockboxRequest>("GetPayload"));

impl Serialize for GetPayloadRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        let mut v = serializer.serialize_struct_variant(
            "LockboxRequest",
            GET_PAYLOAD.get(),
            "GetPayload",
            2,
        )?;
        v.serialize_field("secret_id", self.secret_id)?;
        v.serialize_field("version_id", &self.version_id)?;
        v.end()
    }
}

impl<'a> GetPayloadRef<'a> {
    /// The request id and the read, when `body` is a whole `Request<LockboxRequest>` frame
    /// body asking for `GetPayload` with no `on_behalf_of`. Anything else, a frame that does
    /// not decode included, gives `None`: decode that in full to answer it.
    pub fn parse(body: &'a [u8]) -> Option<(u64, Self)> {
        let (id, bytes) = GetPayloadBytes::parse(body)?;
        Some((id, bytes.as_text()?))
    }
}

/// A `GetPayload` frame read in place with its ids as the frame's bytes, not yet checked to
/// be text: a server that remembers its last read compares them as they are, and checks
/// them as text (the larger part of reading this frame) only when they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetPayloadBytes<'a> {
    /// Secret.
    pub secret_id: &'a [u8],
    /// Version; `None` means the current version.
    pub version_id: Option<&'a [u8]>,
}

impl<'a> GetPayloadBytes<'a> {
    /// As [`GetPayloadRef::parse`], but the ids stay bytes.
    pub fn parse(body: &'a [u8]) -> Option<(u64, Self)> {
        let (id, rest) = postcard::take_from_bytes::<u64>(body).ok()?;
        // `on_behalf_of: None` is a single zero byte.
        let rest = rest.strip_prefix(&[0])?;
        let (variant, rest) = postcard::take_from_bytes::<u32>(rest).ok()?;
        if variant != GET_PAYLOAD.get() {
            return None;
        }
        // Text and bytes are encoded alike: a length, then the bytes.
        match postcard::take_from_bytes::<(&[u8], Option<&[u8]>)>(rest) {
            Ok(((secret_id, version_id), [])) => Some((
                id,
                Self {
                    secret_id,
                    version_id,
                },
            )),
            _ => None,
        }
    }

    /// The request with its ids as text, if they are UTF-8 (a frame whose ids are not is
    /// no `GetPayload`: decode it in full to answer it).
    pub fn as_text(&self) -> Option<GetPayloadRef<'a>> {
        let secret_id = std::str::from_utf8(self.secret_id).ok()?;
        let version_id = match self.version_id {
            Some(v) => Some(std::str::from_utf8(v).ok()?),
            None => None,
        };
        Some(GetPayloadRef {
            secret_id,
            version_id,
        })
    }
}

/// The start of a [`LockboxResponse::Payload`] answer: the ids, up to the entries. The
/// answer's encoding is this one's followed by the entries' (as a `Vec<PayloadEntry>`
/// encodes), so the daemon writes them straight from the decrypted payload, with no copy of
/// each entry in between (see [`crate::frame::FrameWriter`]).
#[derive(Debug, Clone, Copy)]
pub struct PayloadHead<'a> {
    pub secret_id: &'a str,
    pub version_id: &'a str,
}

/// The tag of `Payload` in [`LockboxResponse`].
pub(crate) static PAYLOAD: Tag = Tag::new(|| variant::tag::<LockboxResponse>("Payload"));

impl PayloadHead<'_> {
    /// Appends the bytes postcard writes for `Response { id, result: Ok(Payload { .. }) }` up
    /// to the entries (a test holds the two together), growing `out` as frame buffers grow
    /// ([`reserve_wiped`]). Written by hand, in one piece: the read path writes one per read,
    /// and serde's call per field cost several times as much.
    pub fn append_response(&self, id: u64, out: &mut Vec<u8>) {
        let (secret, version) = (self.secret_id.as_bytes(), self.version_id.as_bytes());
        // Three varints of at most 10 bytes, the `Ok` byte and the variant's one byte.
        reserve_wiped(out, 32 + secret.len() + version.len());
        put_varint(out, id);
        out.push(0);
        put_varint(out, u64::from(PAYLOAD.get()));
        for text in [secret, version] {
            put_varint(out, text.len() as u64);
            out.extend_from_slice(text);
        }
    }
}

/// Appends `n` as postcard's varint: seven bits a byte, low bits first, the high bit set on
/// every byte but the last.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A successful answer from `lockboxd`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LockboxResponse {
    Secret(Box<Secret>),
    /// A page of secrets.
    Secrets {
        secrets: Vec<Secret>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// A page of versions.
    Versions {
        versions: Vec<Version>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// A finished mutation.
    Operation(Box<Operation>),
    /// A page of operations.
    Operations {
        operations: Vec<Operation>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// A payload.
    Payload {
        secret_id: String,
        version_id: String,
        entries: Vec<PayloadEntry>,
    },
    Cloud(Box<Cloud>),
    /// A page of clouds.
    Clouds {
        clouds: Vec<Cloud>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    Folder(Box<Folder>),
    /// A page of folders.
    Folders {
        folders: Vec<Folder>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// The test clock's new time.
    ClockAdvanced {
        /// Unix seconds.
        now: i64,
    },
    /// The connection now acts as this subject.
    Authenticated {
        /// `serviceAccount:<id>`.
        subject: String,
    },
    /// A service account.
    ServiceAccount(Box<ServiceAccount>),
    /// A page of service accounts.
    ServiceAccounts {
        /// The accounts.
        service_accounts: Vec<ServiceAccount>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// A new key and, this once, its private half.
    ServiceAccountKeyCreated {
        /// The key.
        key: Box<ServiceAccountKey>,
        /// PEM PKCS#8 private key. Not stored by the server.
        private_key_pem: SecretBytes,
    },
    /// A service account's keys.
    ServiceAccountKeys {
        keys: Vec<ServiceAccountKey>,
    },
    /// Done, nothing to return.
    Done,
    /// A page of access bindings.
    AccessBindings {
        bindings: Vec<AccessBinding>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// Result of `RewrapKeyring`.
    KeyringRewrapped {
        kms_key_id: String,
        /// The version that wrapped the keyring before.
        from_version_id: String,
        /// The version that wraps it now: the key's primary (the same when nothing changed).
        version_id: String,
    },
    /// Result of `BeginBackup`.
    BackupStarted(Box<BackupStarted>),
    /// Result of `ReadBackup`: empty at or past the end of the file.
    BackupChunk {
        #[serde(with = "crate::bytes::vec")]
        bytes: Vec<u8>,
    },
    /// Result of `RewrapDataKeys`.
    DataKeysRewrapped {
        kms_key_id: String,
        /// Data keys re-encrypted by this call.
        rewrapped: u64,
        /// Data keys still wrapped by an older version after this call.
        remaining: u64,
    },
    /// Result of `ListQuotas`.
    Quotas {
        cloud_id: String,
        quotas: Vec<Quota>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Request, Response};

    fn get_payload(id: u64, version_id: Option<&str>) -> Vec<u8> {
        postcard::to_allocvec(&Request {
            id,
            on_behalf_of: None,
            body: LockboxRequest::GetPayload {
                secret_id: "e6q00000000000000000".into(),
                version_id: version_id.map(Into::into),
            },
        })
        .unwrap()
    }

    #[test]
    fn get_payload_ref_reads_what_get_payload_encodes() {
        assert_eq!(
            GetPayloadRef::parse(&get_payload(300, Some("e6q0000000000000000v"))),
            Some((
                300,
                GetPayloadRef {
                    secret_id: "e6q00000000000000000",
                    version_id: Some("e6q0000000000000000v"),
                }
            ))
        );
        assert_eq!(
            GetPayloadRef::parse(&get_payload(1, None)).map(|(_, r)| r.version_id),
            Some(None)
        );
    }

    #[test]
    fn get_payload_ref_encodes_like_get_payload() {
        for version_id in [None, Some("e6q0000000000000000v")] {
            let by_ref = postcard::to_allocvec(&Request {
                id: 300,
                on_behalf_of: None,
                body: GetPayloadRef {
                    secret_id: "e6q00000000000000000",
                    version_id,
                },
            })
            .unwrap();
            assert_eq!(by_ref, get_payload(300, version_id));
        }
    }

    #[test]
    fn get_payload_ref_leaves_everything_else_to_the_full_decoder() {
        let other = postcard::to_allocvec(&Request {
            id: 7,
            on_behalf_of: None,
            body: LockboxRequest::GetSecret {
                secret_id: "e6q00000000000000000".into(),
            },
        })
        .unwrap();
        assert_eq!(GetPayloadRef::parse(&other), None);

        let relayed = postcard::to_allocvec(&Request {
            id: 7,
            on_behalf_of: Some(crate::Principal {
                subject: "user:a".into(),
                groups: vec![],
            }),
            body: LockboxRequest::GetPayload {
                secret_id: "e6q00000000000000000".into(),
                version_id: None,
            },
        })
        .unwrap();
        assert_eq!(GetPayloadRef::parse(&relayed), None);

        let mut trailing = get_payload(7, None);
        trailing.push(0);
        assert_eq!(GetPayloadRef::parse(&trailing), None);
        assert_eq!(GetPayloadBytes::parse(&trailing), None);
        // Ids that are not text: bytes to compare, but no request to answer in place.
        let mut not_text = get_payload(7, Some("e6q0000000000000000v"));
        let at = not_text.len() - 1;
        not_text[at] = 0xff;
        let (_, bytes) = GetPayloadBytes::parse(&not_text).expect("the bytes parse");
        assert_eq!(bytes.version_id.map(|v| v[v.len() - 1]), Some(0xff));
        assert_eq!(bytes.as_text(), None);
        assert_eq!(GetPayloadRef::parse(&not_text), None);
        let whole = get_payload(7, None);
        for cut in 0..whole.len() {
            assert_eq!(GetPayloadRef::parse(&whole[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_response_is_small_to_move() {
        // Every answer is moved from the client's reader to its caller: large variants are
        // boxed, so the common ones (a payload, a page) are not padded to the largest.
        assert!(std::mem::size_of::<LockboxResponse>() <= 80);
    }

    #[test]
    fn payload_head_then_entries_encodes_like_payload() {
        let entries = vec![
            PayloadEntry {
                key: "user".into(),
                value: PayloadValue::Text(b"alice".to_vec().into()),
            },
            PayloadEntry {
                key: "blob".into(),
                value: PayloadValue::Binary(vec![0, 1, 255].into()),
            },
        ];
        let long = "x".repeat(300);
        let ids = [
            "",
            "e6q00000000000000000",
            &long[..127],
            &long[..128],
            &long,
        ];
        for id in [0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX] {
            for (secret_id, version_id) in ids.iter().zip(ids.iter().rev()) {
                let owned = Response {
                    id,
                    result: Ok(LockboxResponse::Payload {
                        secret_id: (*secret_id).into(),
                        version_id: (*version_id).into(),
                        entries: entries.clone(),
                    }),
                };
                // After other bytes, as in a buffer holding earlier answers.
                let mut in_parts = vec![7; 3];
                PayloadHead {
                    secret_id,
                    version_id,
                }
                .append_response(id, &mut in_parts);
                in_parts.extend(postcard::to_allocvec(&entries).unwrap());
                assert_eq!(in_parts[..3], [7; 3]);
                assert_eq!(in_parts[3..], postcard::to_allocvec(&owned).unwrap());
            }
        }
    }
}
