//! Messages of the `lockbox-kms` service: symmetric keys and their versions, symmetric crypto,
//! asymmetric signature keys, and access bindings.
//!
//! Times are Unix seconds. Ids are opaque strings chosen by the server. Names, limits and
//! semantics follow Yandex KMS.
//!
//! Messages are documented where a field or variant has more to say than its name and
//! type; `id`, `name`, `created_at` and the like go without a comment.
#![allow(missing_docs)]

use crate::bytes::{self, SecretBytes};
use crate::common::{AccessBinding, AccessBindingDelta, Page, Quota};
use crate::variant::{self, Tag};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;

/// Largest `aad_context` accepted by the crypto operations.
pub const MAX_AAD_CONTEXT: usize = 8192;
/// Largest plaintext accepted by `Encrypt`.
pub const MAX_PLAINTEXT: usize = 32768;

/// The id of the key version a symmetric ciphertext was made with: every format lockbox-kms
/// writes or reads starts `format | len(version_id) | version_id` (format `0x01` or `0x02`).
/// `None` if the bytes are not shaped like one.
pub fn ciphertext_version(ciphertext: &[u8]) -> Option<&str> {
    let (&format, rest) = ciphertext.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if !matches!(format, 0x01 | 0x02) {
        return None;
    }
    let id = rest.get(..usize::from(len))?;
    std::str::from_utf8(id).ok()
}
/// Lifecycle state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KeyStatus {
    /// Being created; not usable yet.
    Creating,
    /// Usable for every operation.
    Active,
    /// Refuses crypto operations until reactivated.
    Inactive,
}

/// Lifecycle state of a symmetric key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum VersionStatus {
    /// Usable.
    Active,
    /// Still decrypts until `destroy_at`, then its material is erased.
    ScheduledForDestruction,
    /// Material erased; ciphertexts under it are unrecoverable.
    Destroyed,
}

/// Symmetric encryption algorithm of a key version (AES in GCM mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SymmetricAlgorithm {
    /// AES-128-GCM.
    Aes128,
    /// AES-192-GCM.
    Aes192,
    /// AES-256-GCM.
    Aes256,
}

/// Signature algorithm of an asymmetric signature key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256; signatures are DER-encoded.
    EcdsaNistP256Sha256,
}

/// A symmetric key's metadata; never its material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymmetricKey {
    /// Server-chosen id.
    pub id: String,
    /// Folder the key belongs to; bindings on the folder apply to the key.
    pub folder_id: String,
    pub created_at: i64,
    /// Optional name, unique only by convention.
    pub name: String,
    /// Free-form description.
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub status: KeyStatus,
    /// Algorithm of versions created by rotation.
    pub default_algorithm: SymmetricAlgorithm,
    /// The version used when a request names none.
    pub primary_version: SymmetricKeyVersion,
    /// Automatic rotation period in seconds; `None` means no automatic rotation.
    pub rotation_period: Option<u64>,
    /// Last rotation time, if ever rotated.
    pub rotated_at: Option<i64>,
    /// Whether `Delete` is refused.
    pub deletion_protection: bool,
}

/// One version of a symmetric key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymmetricKeyVersion {
    /// Server-chosen id, embedded in every ciphertext made with this version.
    pub id: String,
    /// The key this version belongs to.
    pub key_id: String,
    pub status: VersionStatus,
    /// Algorithm of the material.
    pub algorithm: SymmetricAlgorithm,
    pub created_at: i64,
    /// Whether it is the key's primary version.
    pub primary: bool,
    /// When a scheduled destruction happens (or happened).
    pub destroy_at: Option<i64>,
}

/// An asymmetric signature key's metadata; the public key is fetched separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsymmetricSignatureKey {
    /// Server-chosen id.
    pub id: String,
    /// Folder the key belongs to.
    pub folder_id: String,
    pub created_at: i64,
    /// Optional name.
    pub name: String,
    /// Free-form description.
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub status: KeyStatus,
    pub signature_algorithm: SignatureAlgorithm,
    /// Whether `Delete` is refused.
    pub deletion_protection: bool,
}

/// Where an access binding is attached. Bindings on the root apply to everything; on a folder,
/// to the keys in it; on a key, to that key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ResourceRef {
    /// The whole KMS instance.
    Root,
    /// A folder, by id.
    Folder(String),
    /// A symmetric or asymmetric signature key, by id.
    Key(String),
}

/// Fields of `CreateSymmetricKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSymmetricKey {
    /// Folder to create the key in.
    pub folder_id: String,
    /// Optional name.
    pub name: String,
    /// Optional description.
    pub description: String,
    pub labels: BTreeMap<String, String>,
    /// Algorithm of the first and later versions.
    pub default_algorithm: SymmetricAlgorithm,
    /// Automatic rotation period in seconds, if any.
    pub rotation_period: Option<u64>,
    /// Whether `Delete` is refused.
    pub deletion_protection: bool,
}

/// Fields of `UpdateSymmetricKey`. Only fields named in `update_mask` change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateSymmetricKey {
    /// Key to update.
    pub key_id: String,
    /// Names of the fields to change: `name`, `description`, `labels`, `status`,
    /// `default_algorithm`, `rotation_period`, `deletion_protection`.
    pub update_mask: Vec<String>,
    /// New name.
    pub name: String,
    /// New description.
    pub description: String,
    /// New labels (replacing all).
    pub labels: BTreeMap<String, String>,
    /// New status: `Active` or `Inactive`.
    pub status: KeyStatus,
    /// New default algorithm.
    pub default_algorithm: SymmetricAlgorithm,
    /// New rotation period; `None` turns automatic rotation off.
    pub rotation_period: Option<u64>,
    /// New deletion protection.
    pub deletion_protection: bool,
}

/// Fields of `CreateAsymmetricSignatureKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAsymmetricSignatureKey {
    /// Folder to create the key in.
    pub folder_id: String,
    /// Optional name.
    pub name: String,
    /// Optional description.
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub signature_algorithm: SignatureAlgorithm,
    /// Whether `Delete` is refused.
    pub deletion_protection: bool,
}

/// [`KmsRequest::Decrypt`] over borrowed fields, for the relay's per-read decrypts: it
/// encodes to the same bytes without copying the key id, context and ciphertext first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecryptRef<'a> {
    /// Key id the ciphertext was made with.
    pub key_id: &'a str,
    /// The `aad_context` given at encryption.
    pub aad_context: &'a [u8],
    /// The ciphertext.
    pub ciphertext: &'a [u8],
}

/// The tag of `Decrypt` in [`KmsRequest`].
static DECRYPT: Tag = Tag::new(|| variant::tag::<KmsRequest>("Decrypt"));

impl Serialize for DecryptRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use crate::bytes::Borrowed;
        use serde::ser::SerializeStructVariant;
        let mut v =
            serializer.serialize_struct_variant("KmsRequest", DECRYPT.get(), "Decrypt", 3)?;
        v.serialize_field("key_id", self.key_id)?;
        v.serialize_field("aad_context", &Borrowed(self.aad_context))?;
        v.serialize_field("ciphertext", &Borrowed(self.ciphertext))?;
        v.end()
    }
}

/// A principal a relay acts for, as [`DecryptCall`] reads it: borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRef<'a> {
    /// `user:<name>`, `serviceAccount:<id>`, …
    pub subject: &'a str,
    /// `group:<name>` entries the subject belongs to.
    pub groups: Vec<&'a str>,
}

/// A whole `Request<KmsRequest>` frame body asking for `Decrypt`, read in place: the request
/// `lockboxd` relays on every read of a secret with its own key, decoded by `lockbox-kms`
/// without copying its strings and bytes into owned ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecryptCall<'a> {
    /// The request id.
    pub id: u64,
    /// The principal a relay acts for.
    pub on_behalf_of: Option<PrincipalRef<'a>>,
    /// The decryption.
    pub decrypt: DecryptRef<'a>,
}

impl<'a> DecryptCall<'a> {
    /// The call, when `body` is a whole frame body asking for `Decrypt`, with or without
    /// `on_behalf_of`. Anything else, a frame that does not decode included, gives `None`:
    /// decode that in full to answer it.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let (id, rest) = postcard::take_from_bytes::<u64>(body).ok()?;
        let (on_behalf_of, rest) =
            postcard::take_from_bytes::<Option<(&str, Vec<&str>)>>(rest).ok()?;
        let (variant, rest) = postcard::take_from_bytes::<u32>(rest).ok()?;
        if variant != DECRYPT.get() {
            return None;
        }
        match postcard::take_from_bytes::<(&str, &[u8], &[u8])>(rest) {
            Ok(((key_id, aad_context, ciphertext), [])) => Some(Self {
                id,
                on_behalf_of: on_behalf_of
                    .map(|(subject, groups)| PrincipalRef { subject, groups }),
                decrypt: DecryptRef {
                    key_id,
                    aad_context,
                    ciphertext,
                },
            }),
            _ => None,
        }
    }
}

/// [`KmsResponse::Decrypted`] over borrowed fields: `lockbox-kms` answers a [`DecryptCall`]
/// with it, so the ids and the plaintext go into the frame without an owned copy first.
#[derive(Debug, Clone, Copy)]
pub struct DecryptedRef<'a> {
    pub key_id: &'a str,
    pub version_id: &'a str,
    /// The plaintext.
    pub plaintext: &'a [u8],
}

/// The tag of `Decrypted` in [`KmsResponse`].
static DECRYPTED: Tag = Tag::new(|| variant::tag::<KmsResponse>("Decrypted"));

impl Serialize for DecryptedRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use crate::bytes::Borrowed;
        use serde::ser::SerializeStructVariant;
        let mut v =
            serializer.serialize_struct_variant("KmsResponse", DECRYPTED.get(), "Decrypted", 3)?;
        v.serialize_field("key_id", self.key_id)?;
        v.serialize_field("version_id", self.version_id)?;
        v.serialize_field("plaintext", &Borrowed(self.plaintext))?;
        v.end()
    }
}

/// Where the plaintext of a [`KmsResponse::Decrypted`] answer lies in its whole
/// `Response<KmsResponse>` frame body, and the request id: a relay reads the plaintext in
/// place. The ids before it are checked to be text, not read. Anything else (an error, another
/// answer, a malformed frame) gives `None`: decode that in full.
pub fn decrypted_plaintext(body: &[u8]) -> Option<(u64, Range<usize>)> {
    let (id, rest) = postcard::take_from_bytes::<u64>(body).ok()?;
    // `Ok` is variant 0 of the result: a single zero byte.
    let rest = rest.strip_prefix(&[0])?;
    let (variant, rest) = postcard::take_from_bytes::<u32>(rest).ok()?;
    if variant != DECRYPTED.get() {
        return None;
    }
    let (_key_id, rest) = bytes::take_text(rest)?;
    let (_version_id, rest) = bytes::take_text(rest)?;
    match postcard::take_from_bytes::<&[u8]>(rest) {
        Ok((plaintext, [])) => Some((id, body.len() - plaintext.len()..body.len())),
        _ => None,
    }
}

/// A request to `lockbox-kms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KmsRequest {
    /// Create a symmetric key with a first, primary version.
    CreateSymmetricKey(CreateSymmetricKey),
    /// Get a symmetric key.
    GetSymmetricKey { key_id: String },
    /// List symmetric keys of a folder, ordered by id.
    ListSymmetricKeys { folder_id: String, page: Page },
    /// Change fields of a symmetric key.
    UpdateSymmetricKey(UpdateSymmetricKey),
    /// Delete a symmetric key and erase all its versions' material.
    DeleteSymmetricKey { key_id: String },
    /// List a key's versions, newest first.
    ListSymmetricKeyVersions { key_id: String, page: Page },
    /// Create a new version and make it primary.
    RotateSymmetricKey { key_id: String },
    /// Make an active version primary.
    SetPrimaryVersion { key_id: String, version_id: String },
    /// Schedule a non-primary version's destruction.
    ScheduleVersionDestruction {
        key_id: String,
        version_id: String,
        /// Seconds until destruction; `None` means the default of 7 days. At least 1 day.
        pending_period: Option<u64>,
    },
    /// Cancel a scheduled destruction.
    CancelVersionDestruction { key_id: String, version_id: String },
    /// Encrypt a plaintext.
    Encrypt {
        key_id: String,
        /// Version to use; `None` means the primary version.
        version_id: Option<String>,
        /// Additional authenticated data; the same bytes must be given to decrypt.
        #[serde(with = "bytes::vec")]
        aad_context: Vec<u8>,
        /// At most [`MAX_PLAINTEXT`] bytes.
        plaintext: SecretBytes,
    },
    /// Decrypt a ciphertext made by `Encrypt` or `GenerateDataKey`.
    Decrypt {
        /// Key id the ciphertext was made with.
        key_id: String,
        /// The `aad_context` given at encryption.
        #[serde(with = "bytes::vec")]
        aad_context: Vec<u8>,
        /// The ciphertext.
        #[serde(with = "bytes::vec")]
        ciphertext: Vec<u8>,
    },
    /// Decrypt with one key and encrypt with another without returning the plaintext.
    ReEncrypt {
        /// Destination key id.
        key_id: String,
        /// Destination version; `None` means its primary version.
        version_id: Option<String>,
        /// Destination `aad_context`.
        #[serde(with = "bytes::vec")]
        aad_context: Vec<u8>,
        source_key_id: String,
        /// Source `aad_context`.
        #[serde(with = "bytes::vec")]
        source_aad_context: Vec<u8>,
        /// The ciphertext under the source key.
        #[serde(with = "bytes::vec")]
        ciphertext: Vec<u8>,
    },
    /// Generate a random data key and return it encrypted (and, unless skipped, in plaintext).
    GenerateDataKey {
        key_id: String,
        /// Version to use; `None` means the primary version.
        version_id: Option<String>,
        /// Additional authenticated data.
        #[serde(with = "bytes::vec")]
        aad_context: Vec<u8>,
        /// Size of the data key: 16, 24 or 32 bytes for AES-128/192/256.
        data_key_spec: SymmetricAlgorithm,
        /// Return only the ciphertext.
        skip_plaintext: bool,
    },
    /// Create an asymmetric signature key.
    CreateAsymmetricSignatureKey(CreateAsymmetricSignatureKey),
    /// Get an asymmetric signature key.
    GetAsymmetricSignatureKey { key_id: String },
    /// List asymmetric signature keys of a folder, ordered by id.
    ListAsymmetricSignatureKeys { folder_id: String, page: Page },
    /// Get the public key as PEM (SubjectPublicKeyInfo).
    GetPublicKey { key_id: String },
    /// Sign a message (hashed by the server).
    Sign {
        key_id: String,
        /// The message.
        #[serde(with = "bytes::vec")]
        message: Vec<u8>,
    },
    /// Sign a precomputed digest.
    SignHash {
        key_id: String,
        /// SHA-256 digest, 32 bytes.
        #[serde(with = "bytes::vec")]
        hash: Vec<u8>,
    },
    /// List bindings attached directly to a resource.
    ListAccessBindings { resource: ResourceRef, page: Page },
    /// Replace all bindings attached to a resource.
    SetAccessBindings {
        resource: ResourceRef,
        /// The new bindings.
        bindings: Vec<AccessBinding>,
    },
    /// Add and remove bindings on a resource (at most 1000 deltas).
    UpdateAccessBindings {
        resource: ResourceRef,
        /// The changes, applied in order.
        deltas: Vec<AccessBindingDelta>,
    },
    /// Test-only: move the server's clock forward and run due maintenance (rotation and
    /// destruction) before answering. Refused unless the server was started with its manual
    /// test clock.
    DangerAdvanceClock {
        /// Seconds to move forward.
        seconds: u64,
    },
    /// Whether the caller could grant every role `subject` holds in the KMS (it holds
    /// `kms.admin` wherever the subject has a binding): answered `Done`, or
    /// `PermissionDenied` naming a resource it could not. lockboxd asks on behalf of a
    /// caller about to mint (or delete) a key of a service account, since whoever holds
    /// the key acts with the account's KMS roles too.
    CheckMayActAs {
        /// The subject whose roles count, e.g. `serviceAccount:<id>`.
        subject: String,
    },
    /// An enrolled relay's count of the data keys it keeps under each version of `key_id`
    /// (sent by lockboxd after a rewrap). Every version of the key it does not name, but
    /// the primary, is released: lockbox-kms holds a version a relay has encrypted under
    /// and refuses to schedule its destruction until then.
    ReportHolds {
        key_id: String,
        held: Vec<HeldVersion>,
    },
    /// Drop every relay's hold on a version, so it can be destroyed although lockboxd keeps
    /// data under it: that data is then lost with the version (crypto-shredding). Needs the
    /// permission to schedule the version's destruction.
    ReleaseHolds { key_id: String, version_id: String },
    /// Up to `length` bytes (at most [`MAX_KEYSTORE_CHUNK`]) of the sealed keystore file,
    /// for a backup. Needs `kms.admin` on the root.
    ExportKeystore { offset: u64, length: u32 },
    /// A folder's quotas and their usage. Needs `kms.keys.get` on the folder (`kms.auditor`
    /// and up).
    ListQuotas { folder_id: String },
}

/// Most bytes one `ExportKeystore` returns.
pub const MAX_KEYSTORE_CHUNK: u32 = 16 * 1024;

/// Data keys a relay keeps under one key version ([`KmsRequest::ReportHolds`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldVersion {
    pub version_id: String,
    pub data_keys: u64,
}

/// A successful answer from `lockbox-kms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KmsResponse {
    /// One symmetric key.
    SymmetricKey(Box<SymmetricKey>),
    /// A page of symmetric keys.
    SymmetricKeys {
        keys: Vec<SymmetricKey>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// One key version.
    SymmetricKeyVersion(Box<SymmetricKeyVersion>),
    /// A page of key versions.
    SymmetricKeyVersions {
        versions: Vec<SymmetricKeyVersion>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// Result of `Encrypt`.
    Encrypted {
        key_id: String,
        version_id: String,
        /// The ciphertext, embedding the version id.
        #[serde(with = "bytes::vec")]
        ciphertext: Vec<u8>,
    },
    /// Result of `Decrypt`.
    Decrypted {
        key_id: String,
        version_id: String,
        /// The plaintext.
        plaintext: SecretBytes,
    },
    /// Result of `ReEncrypt`.
    ReEncrypted {
        /// Destination key.
        key_id: String,
        /// Destination version.
        version_id: String,
        /// Source key.
        source_key_id: String,
        /// Source version.
        source_version_id: String,
        /// The new ciphertext.
        #[serde(with = "bytes::vec")]
        ciphertext: Vec<u8>,
    },
    /// Result of `GenerateDataKey`.
    DataKey {
        key_id: String,
        version_id: String,
        /// The data key in plaintext, unless skipped.
        data_key_plaintext: Option<SecretBytes>,
        /// The data key encrypted under the key version.
        #[serde(with = "bytes::vec")]
        data_key_ciphertext: Vec<u8>,
    },
    /// One asymmetric signature key.
    AsymmetricSignatureKey(Box<AsymmetricSignatureKey>),
    /// A page of asymmetric signature keys.
    AsymmetricSignatureKeys {
        keys: Vec<AsymmetricSignatureKey>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// A public key.
    PublicKey {
        key_id: String,
        /// PEM-encoded SubjectPublicKeyInfo.
        public_key_pem: String,
    },
    /// A signature.
    Signature {
        key_id: String,
        /// DER-encoded ECDSA signature.
        #[serde(with = "bytes::vec")]
        signature: Vec<u8>,
    },
    /// A page of access bindings.
    AccessBindings {
        bindings: Vec<AccessBinding>,
        /// Token for the next page; empty on the last.
        next_page_token: String,
    },
    /// The operation succeeded and has nothing to return.
    /// A part of the sealed keystore (`ExportKeystore`).
    KeystoreChunk {
        /// Keystore schema of this lockbox-kms.
        schema: u32,
        /// The whole file's length and SHA-256 (lowercase hex) when this part was read: a
        /// reader whose parts do not add up to it read across a change and starts over.
        total_size: u64,
        sha256: String,
        #[serde(with = "bytes::vec")]
        bytes: Vec<u8>,
    },
    Done,
    /// The test clock's new time.
    ClockAdvanced {
        /// Unix seconds.
        now: i64,
    },
    /// Result of `ListQuotas`.
    Quotas {
        folder_id: String,
        quotas: Vec<Quota>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Principal, Request, Response};

    #[test]
    fn a_response_is_small_to_move() {
        // Every answer is moved from the client's reader to its caller (in lockboxd, for
        // every read of a KMS-keyed secret): large single-value variants are boxed.
        assert!(std::mem::size_of::<KmsResponse>() <= 128);
    }

    #[test]
    fn borrowed_decrypt_encodes_like_the_request() {
        let owned = KmsRequest::Decrypt {
            key_id: "abj00000000000000000".into(),
            aad_context: b"context".to_vec(),
            ciphertext: vec![7; 60],
        };
        let borrowed = DecryptRef {
            key_id: "abj00000000000000000",
            aad_context: b"context",
            ciphertext: &[7; 60],
        };
        let bytes = postcard::to_allocvec(&borrowed).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&owned).unwrap());
        let decoded: KmsRequest = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(decoded, KmsRequest::Decrypt { key_id, .. } if key_id == borrowed.key_id));
    }

    fn decrypt_frame(id: u64, on_behalf_of: Option<Principal>, aad: &[u8], ct: &[u8]) -> Vec<u8> {
        postcard::to_allocvec(&Request {
            id,
            on_behalf_of,
            body: KmsRequest::Decrypt {
                key_id: "abj00000000000000000".into(),
                aad_context: aad.to_vec(),
                ciphertext: ct.to_vec(),
            },
        })
        .unwrap()
    }

    #[test]
    fn a_decrypt_call_is_read_in_place_as_the_derived_form_reads_it() {
        let principals = [
            None,
            Some(Principal {
                subject: "user:alice".into(),
                groups: Vec::new(),
            }),
            Some(Principal {
                subject: "serviceAccount:aje00000000000000000".into(),
                groups: vec!["group:finance".into(), "group:ops".into(), String::new()],
            }),
        ];
        let long_ct = vec![0xa5; 300];
        for (principal, (id, aad, ct)) in principals.iter().flat_map(|p| {
            [
                (1, &b""[..], &b""[..]),
                (u64::MAX, &b"lockbox dek\0ids"[..], &[7u8; 60][..]),
                (300, &[0u8; 200][..], &long_ct[..]),
            ]
            .map(|c| (p, c))
        }) {
            let body = decrypt_frame(id, principal.clone(), aad, ct);
            let call = DecryptCall::parse(&body).expect("a decrypt request");
            assert_eq!(call.id, id);
            assert_eq!(
                call.on_behalf_of,
                principal.as_ref().map(|p| PrincipalRef {
                    subject: &p.subject,
                    groups: p.groups.iter().map(String::as_str).collect(),
                })
            );
            assert_eq!(
                call.decrypt,
                DecryptRef {
                    key_id: "abj00000000000000000",
                    aad_context: aad,
                    ciphertext: ct,
                }
            );
        }
    }

    #[test]
    fn anything_but_a_whole_decrypt_call_is_left_to_the_full_decoder() {
        let principal = Principal {
            subject: "user:alice".into(),
            groups: vec!["group:finance".into()],
        };
        let body = decrypt_frame(9, Some(principal), b"ctx", &[1; 40]);
        // Every truncation, and trailing bytes.
        for end in 0..body.len() {
            assert_eq!(DecryptCall::parse(&body[..end]), None, "cut at {end}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(DecryptCall::parse(&longer), None);
        // A subject that is not UTF-8 (its first byte follows the id and the `Some` tag).
        let mut bad = body.clone();
        bad[3] = 0xff;
        assert_eq!(DecryptCall::parse(&bad), None);
        assert!(postcard::from_bytes::<Request<KmsRequest>>(&bad).is_err());
        // Other requests, including Encrypt, whose fields start the same way.
        let encrypt = postcard::to_allocvec(&Request {
            id: 9,
            on_behalf_of: None,
            body: KmsRequest::Encrypt {
                key_id: "abj00000000000000000".into(),
                version_id: None,
                aad_context: Vec::new(),
                plaintext: SecretBytes::new(vec![1; 32]),
            },
        })
        .unwrap();
        assert_eq!(DecryptCall::parse(&encrypt), None);
        let get = postcard::to_allocvec(&Request {
            id: 9,
            on_behalf_of: None,
            body: KmsRequest::GetSymmetricKey {
                key_id: "abj00000000000000000".into(),
            },
        })
        .unwrap();
        assert_eq!(DecryptCall::parse(&get), None);
    }

    #[test]
    fn a_borrowed_decrypted_answer_encodes_like_the_derived_one() {
        for plaintext in [&b""[..], &[9u8; 32][..], &[1u8; 200][..]] {
            let owned: Response<KmsResponse> = Response {
                id: 77,
                result: Ok(KmsResponse::Decrypted {
                    key_id: "abj00000000000000000".into(),
                    version_id: "abj11111111111111111".into(),
                    plaintext: SecretBytes::new(plaintext.to_vec()),
                }),
            };
            let borrowed: Response<DecryptedRef<'_>> = Response {
                id: 77,
                result: Ok(DecryptedRef {
                    key_id: "abj00000000000000000",
                    version_id: "abj11111111111111111",
                    plaintext,
                }),
            };
            assert_eq!(
                postcard::to_allocvec(&borrowed).unwrap(),
                postcard::to_allocvec(&owned).unwrap()
            );
        }
    }

    fn decrypted(id: u64, key_id: &str, plaintext: &[u8]) -> Vec<u8> {
        postcard::to_allocvec(&Response::<KmsResponse> {
            id,
            result: Ok(KmsResponse::Decrypted {
                key_id: key_id.into(),
                version_id: "abj11111111111111111".into(),
                plaintext: SecretBytes::new(plaintext.to_vec()),
            }),
        })
        .unwrap()
    }

    #[test]
    fn a_decrypted_answer_gives_its_plaintext_in_place() {
        let long = [7u8; 300];
        for plaintext in [&b""[..], &[9u8; 32][..], &long[..]] {
            for (id, key_id) in [(1, "abj00000000000000000"), (u64::MAX, "ключ")] {
                let body = decrypted(id, key_id, plaintext);
                let (read_id, at) = decrypted_plaintext(&body).expect("a decrypted answer");
                assert_eq!((read_id, &body[at]), (id, plaintext));
            }
        }
    }

    #[test]
    fn only_a_whole_decrypted_answer_gives_a_plaintext() {
        let body = decrypted(7, "abj00000000000000000", &[9; 32]);
        for end in 0..body.len() {
            assert_eq!(decrypted_plaintext(&body[..end]), None, "cut at {end}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(decrypted_plaintext(&longer), None);
        // A key id that is not UTF-8 (its first byte follows the id and two tags).
        let mut bad = body.clone();
        bad[4] = 0xff;
        assert!(postcard::from_bytes::<Response<KmsResponse>>(&bad).is_err());
        assert_eq!(decrypted_plaintext(&bad), None);
        let failed = postcard::to_allocvec(&Response::<KmsResponse> {
            id: 7,
            result: Err(crate::Error::new(crate::ErrorCode::PermissionDenied, "no")),
        })
        .unwrap();
        assert_eq!(decrypted_plaintext(&failed), None);
        let encrypted = postcard::to_allocvec(&Response::<KmsResponse> {
            id: 7,
            result: Ok(KmsResponse::Encrypted {
                key_id: "abj00000000000000000".into(),
                version_id: "abj11111111111111111".into(),
                ciphertext: vec![9; 32],
            }),
        })
        .unwrap();
        assert_eq!(decrypted_plaintext(&encrypted), None);
    }
}
