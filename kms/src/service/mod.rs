//! The KMS service layer: every operation with its authorization, on domain types.
//!
//! Nothing here knows about the wire: the Unix-socket server converts `proto` messages to
//! these calls, and a future gRPC front-end can call the same functions.
//!
//! Reads work on an immutable [`Snapshot`] (state plus indexes). A mutation clones the state,
//! applies the change, seals and saves it, and only then publishes the new snapshot, so a
//! failed save changes nothing and readers never see a half-applied change.

mod bindings;
mod crypto_ops;
mod export;
mod holds;
mod maintenance;
mod meters;
mod quotas;
mod signature;
mod symmetric;

pub use bindings::{BindingUpdate, MAX_DELTAS};
pub use crypto_ops::{DataKey, Decrypted, Decryption, Encrypted};
pub use export::{KeystoreChunk, MAX_KEYSTORE_CHUNK};
pub use meters::collect_state;
pub use quotas::{FolderQuotas, QuotaUsage, Quotas};
pub use symmetric::{KeyMetaSpec, KeySpec, KeyUpdate};

use crate::access::{BindingIndex, Permission, Principal};
use crate::crypto::{Algorithm, VersionCipher};
use crate::error::KmsError;
use crate::keystore::{Keystore, KeystoreError};
use crate::model::{KeyMeta, KeyStatus, State, SymmetricKeyRecord, VersionStatus};
use lockbox_proto::ids::IdHashing;
use lockbox_rpc::clock::{Clock, ManualClock, TimeSource};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The caller of an operation.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// Whose permissions apply.
    pub principal: Principal<'a>,
    /// The relay that forwarded the request on the principal's behalf, if any.
    pub relay: Option<&'a str>,
}

/// A symmetric key's metadata as operations return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymmetricKeyInfo {
    /// Common metadata.
    pub meta: KeyMeta,
    /// Algorithm of new versions.
    pub default_algorithm: Algorithm,
    /// The primary version.
    pub primary_version: VersionInfo,
    /// Automatic rotation period, seconds.
    pub rotation_period: Option<u64>,
    /// Last rotation.
    pub rotated_at: Option<i64>,
}

/// A key version as operations return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version id.
    pub id: String,
    /// Key id.
    pub key_id: String,
    /// Lifecycle.
    pub status: VersionStatus,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Creation time.
    pub created_at: i64,
    /// Whether it is the primary version.
    pub primary: bool,
    /// Scheduled or actual destruction time.
    pub destroy_at: Option<i64>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token for the next page; empty on the last.
    pub next_page_token: String,
}

/// State and the indexes derived from it, replaced whole on every mutation.
#[derive(Debug)]
pub struct Snapshot {
    /// The persisted state.
    state: State,
    /// Initialised ciphers by version id (only versions that still have material). Version
    /// ids are made by this process, so the map uses the unkeyed id hasher.
    ciphers: HashMap<String, VersionCipher, IdHashing>,
    /// Signing keys by key id.
    signers: HashMap<String, p256::ecdsa::SigningKey>,
    /// Bindings, indexed for checks.
    bindings: BindingIndex,
}

impl Snapshot {
    fn build(state: State) -> Result<Self, KmsError> {
        let mut ciphers = HashMap::default();
        for key in state.symmetric_keys.values() {
            for v in &key.versions {
                if let Some(material) = &v.material {
                    ciphers.insert(v.id.clone(), VersionCipher::new(v.algorithm, material)?);
                }
            }
        }
        let mut signers = HashMap::new();
        for (id, key) in &state.signature_keys {
            let signer = p256::ecdsa::SigningKey::from_slice(key.private_key.expose())
                .map_err(|_| KmsError::Internal(format!("signature key {id} is corrupt")))?;
            signers.insert(id.clone(), signer);
        }
        let bindings = BindingIndex::build(&state);
        Ok(Self {
            state,
            ciphers,
            signers,
            bindings,
        })
    }
}

/// The KMS: keystore, clock and limits behind every operation.
pub struct Kms {
    /// The current snapshot; replaced whole by mutations.
    current: RwLock<Arc<Snapshot>>,
    /// Serialises mutations so each starts from the previous one's result.
    writer: tokio::sync::Mutex<()>,
    /// Where the state is sealed and saved.
    keystore: Arc<Keystore>,
    /// Time source.
    clock: Arc<dyn Clock>,
    /// Set when the server runs on a manual test clock, which `advance_clock` moves.
    manual_clock: Option<Arc<ManualClock>>,
    /// Limits.
    quotas: Quotas,
    /// How long each keystore save takes (a no-op while metrics are off).
    save_latency: metrics::Histogram,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("keystore", &self.keystore.path())
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

impl Kms {
    /// A KMS over the loaded `state`, saving to `keystore`.
    pub fn new(
        state: State,
        keystore: Keystore,
        time: TimeSource,
        quotas: Quotas,
    ) -> Result<Self, KmsError> {
        let (clock, manual_clock) = (time.clock(), time.manual());
        Ok(Self {
            current: RwLock::new(Arc::new(Snapshot::build(state)?)),
            writer: tokio::sync::Mutex::new(()),
            keystore: Arc::new(keystore),
            clock,
            manual_clock,
            quotas,
            save_latency: metrics::Histogram::noop(),
        })
    }

    /// The current snapshot.
    fn snapshot(&self) -> Arc<Snapshot> {
        // Writers only swap the Arc, so a poisoned lock still holds a consistent snapshot.
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Now, by the KMS's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether `subject` is enrolled as a relay.
    pub fn is_relay(&self, subject: &str) -> bool {
        self.snapshot().state.relays.contains(subject)
    }

    /// Applies `change` to a copy of the state, saves it, and publishes it.
    async fn mutate<T>(
        &self,
        change: impl FnOnce(&Snapshot, &mut State, i64) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let _writer = self.writer.lock().await;
        let current = self.snapshot();
        let mut next = current.state.clone();
        let out = change(&current, &mut next, self.clock.now())?;
        let keystore = self.keystore.clone();
        let save_latency = self.save_latency.clone();
        let (next, saved) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let saved = keystore.save(&next);
            save_latency.record(started.elapsed().as_secs_f64());
            (next, saved)
        })
        .await
        .map_err(|e| KmsError::Internal(format!("keystore save task failed: {e}")))?;
        match saved {
            Ok(()) => {}
            // The file holds the new state: memory follows it, so the two never disagree,
            // and the caller learns the change may not survive a crash.
            Err(e @ KeystoreError::Uncertain { .. }) => {
                tracing::error!(error = %e, "keystore saved, but not durably; change applied");
                self.publish(next)?;
                return Err(KmsError::Unavailable(format!(
                    "the change was applied, but {e}; check the disk"
                )));
            }
            Err(e) => {
                tracing::error!(error = %e, "keystore save failed; change not applied");
                return Err(KmsError::Internal(format!(
                    "the keystore could not be saved: {e}"
                )));
            }
        }
        self.publish(next)?;
        Ok(out)
    }

    /// Makes `state` the one requests see.
    fn publish(&self, state: State) -> Result<(), KmsError> {
        let snapshot = Arc::new(Snapshot::build(state)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
        Ok(())
    }

    /// Checks that `caller` holds `permission` on `key` (in `folder`) or on `folder`.
    fn authorize(
        snap: &Snapshot,
        caller: &Caller<'_>,
        key: Option<&str>,
        folder: &str,
        permission: Permission,
    ) -> Result<(), KmsError> {
        let allowed = snap
            .bindings
            .allows(caller.principal, key, folder, permission);
        let (resource_kind, resource_id) = match key {
            Some(k) => ("key", k),
            None => ("folder", folder),
        };
        if let Some(relay) = caller.relay {
            // A decision that leaves no trace is not made.
            crate::audit::record(crate::audit::Decision {
                relay,
                subject: caller.principal.subject,
                permission: permission.name(),
                resource_kind,
                resource_id,
                allowed,
            })
            .map_err(|e| KmsError::Unavailable(e.to_string()))?;
        }
        if allowed {
            Ok(())
        } else {
            Err(KmsError::PermissionDenied {
                permission: permission.name(),
                resource: format!("{resource_kind} {resource_id}"),
                subject: caller.principal.subject.to_owned(),
            })
        }
    }

    /// Refuses callers without `kms.admin` on the root.
    pub fn require_root_admin(&self, caller: &Caller<'_>) -> Result<(), KmsError> {
        if self
            .snapshot()
            .bindings
            .allows_on_root(caller.principal, Permission::UpdateAccessBindings)
        {
            Ok(())
        } else {
            Err(KmsError::PermissionDenied {
                permission: Permission::UpdateAccessBindings.name(),
                resource: "the KMS root".into(),
                subject: caller.principal.subject.to_owned(),
            })
        }
    }

    /// Checks that `caller` holds `permission` on the key described by `meta`.
    fn authorize_key(
        snap: &Snapshot,
        caller: &Caller<'_>,
        meta: &KeyMeta,
        permission: Permission,
    ) -> Result<(), KmsError> {
        Self::authorize(snap, caller, Some(&meta.id), &meta.folder_id, permission)
    }

    /// A mutation of one symmetric key: finds it, checks `permission` on it, then applies
    /// `change` to its record in the next state.
    async fn mutate_symmetric_key<T>(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        permission: Permission,
        change: impl FnOnce(&mut SymmetricKeyRecord, i64) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        self.mutate(|snap, state, now| {
            let key = symmetric_key(&snap.state, key_id)?;
            Self::authorize_key(snap, caller, &key.meta, permission)?;
            change(symmetric_key_mut(state, key_id)?, now)
        })
        .await
    }

    /// Test-only: moves the manual clock forward and runs due maintenance.
    pub async fn advance_clock(&self, seconds: u64) -> Result<i64, KmsError> {
        let Some(clock) = &self.manual_clock else {
            return Err(KmsError::FailedPrecondition(
                "the test clock is not enabled (start lockbox-kms with --danger-test-clock)".into(),
            ));
        };
        let now = clock.advance(seconds);
        self.run_maintenance().await?;
        Ok(now)
    }
}

fn symmetric_key<'s>(state: &'s State, key_id: &str) -> Result<&'s SymmetricKeyRecord, KmsError> {
    crate::validate::id("key_id", key_id)?;
    state
        .symmetric_keys
        .get(key_id)
        .ok_or_else(|| KmsError::NotFound(format!("symmetric key {key_id} not found")))
}

fn symmetric_key_mut<'s>(
    state: &'s mut State,
    key_id: &str,
) -> Result<&'s mut SymmetricKeyRecord, KmsError> {
    state
        .symmetric_keys
        .get_mut(key_id)
        .ok_or_else(|| KmsError::NotFound(format!("symmetric key {key_id} not found")))
}

fn require_active(meta: &KeyMeta) -> Result<(), KmsError> {
    match meta.status {
        KeyStatus::Active => Ok(()),
        _ => Err(KmsError::FailedPrecondition(format!(
            "key {} is not active",
            meta.id
        ))),
    }
}

/// Pages over items already in order, using the position as the token.
fn page_by_offset<T>(items: Vec<T>, page_size: u32, token: &str) -> Result<Page<T>, KmsError> {
    let size = crate::validate::page_size(page_size)?;
    let start = if token.is_empty() {
        0
    } else {
        token.parse::<usize>().map_err(|_| {
            KmsError::InvalidArgument("page_token: not a token from this list".into())
        })?
    };
    let total = items.len();
    let items: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let end = start + items.len();
    Ok(Page {
        items,
        next_page_token: if end < total {
            end.to_string()
        } else {
            String::new()
        },
    })
}
