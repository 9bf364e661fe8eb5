//! The Lockbox service layer: secrets, versions, payloads, operations, resources, access
//! bindings and service accounts, on domain types, with their authorization.
//!
//! Nothing here knows about the wire: the Unix-socket server (`server`) converts `proto`
//! messages to these calls, and the planned gRPC front-end is to call the same functions. A
//! payload read hands back the entries in their stored layout (`model::entries`) and leaves
//! their encoding to the front-end. Mutations are serialised by one writer lock and built as
//! one batch, applied under the lock, and answered once a group sync has made the batch
//! durable (`store::group`); reads go to the read cache or the store.

mod access;
mod accounts;
mod audit;
mod backup;
mod keyring;
mod meters;
mod operations;
mod payload;
mod quotas;
mod rate;
mod read_cache;
mod resources;
mod rewrap;
mod secrets;
mod versions;

pub use crate::iam::Caller;
pub use access::{BindingUpdate, MAX_DELTAS};
pub use accounts::{AccountSession, NewKey};
pub use audit::AuditTrail;
pub use backup::{BackupStarted, MAX_BACKUP_CHUNK};
pub use keyring::KeyringRewrap;
pub use meters::{DEFAULT_SECRET_SERIES, SecretSeries, collect_state};
pub use payload::{PayloadRead, ReadMemo};
pub use quotas::{CloudLimits, CloudQuotas, Limits, QuotaUsage};
pub use rate::{Rate, RateKind, RateLimits, RateMemo, RateSet};
pub use resources::bootstrap;
pub use rewrap::{DataKeysRewrapped, MAX_REWRAP_LIMIT};
pub use secrets::{NewSecret, SecretUpdate};
pub use versions::{EntryChange, NewVersion};

use crate::crypto::keyring::Keyring;
use crate::crypto::kms_link::KmsLink;
use crate::error::LockboxError;
use crate::iam::bindings::{BindingMap, binding_map};
use crate::model::ids::{self, new_id};
use crate::model::{OperationOutcome, OperationRecord, SecretRecord, VersionMeta, validate};
use crate::store::group::Ticket;
use crate::store::records::{Defaults, Records};
use crate::store::{Batch, StoreError, Table};
use lockbox_rpc::clock::{Clock, ManualClock, TimeSource};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Proof that the caller holds the writer lock. Every mutation changes records, read-cache
/// entries and bindings while holding it; dropping it counts the mutation in
/// [`Lockbox::generation`], after all of its changes are in place.
struct WriterGuard<'a> {
    _lock: tokio::sync::MutexGuard<'a, ()>,
    generation: &'a AtomicU64,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // Runs before the lock itself is released (fields drop after this).
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A finished mutation, as operations return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The recorded operation.
    pub operation: OperationRecord,
}

/// The Lockbox service.
pub struct Lockbox {
    /// Typed records over the store.
    records: Records,
    /// Connection to `lockbox-kms`.
    kms: KmsLink,
    /// The unwrapped service keyring, once available.
    keyring: RwLock<Option<Arc<Keyring>>>,
    /// Why the last attempt to unlock the keyring failed, told to callers while it is locked.
    keyring_locked: std::sync::Mutex<String>,
    /// Time source.
    clock: Arc<dyn Clock>,
    /// The manual test clock, when running on one.
    manual_clock: Option<Arc<ManualClock>>,
    /// Limits.
    limits: Limits,
    /// Serialises mutations so each sees the previous one's result.
    writer: tokio::sync::Mutex<()>,
    /// How many mutations have released the writer lock. Something read and checked under
    /// generation `g` is still what a new read would find while the count is still `g`
    /// (see [`ReadMemo`](payload::ReadMemo)).
    generation: AtomicU64,
    /// Ids of the default organization, cloud and folder.
    defaults: Defaults,
    /// Access bindings by resource, mirroring the store.
    bindings: RwLock<BindingMap>,
    /// Service-account token ids already accepted.
    replays: std::sync::Mutex<crate::iam::tokens::ReplayCache>,
    /// Decoded secrets and versions for the read path.
    read_cache: read_cache::ReadCache,
    /// Organization of each cloud looked up so far.
    cloud_orgs: RwLock<std::collections::HashMap<String, String>>,
    /// Where backup checkpoints are taken.
    backups: crate::store::backup::Backups,
    /// The open backup, if any.
    open_backup: std::sync::Mutex<Option<backup::OpenBackup>>,
    /// The audit trail, when one is configured.
    audit: Option<AuditTrail>,
    /// Per-subject rate limits, when any is configured.
    rate_limiter: Option<rate::Limiter>,
    /// Counters the service updates (no-ops while metrics are off).
    meters: meters::Meters,
}

impl std::fmt::Debug for Lockbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockbox")
            .field("limits", &self.limits)
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Lockbox {
    /// The service over `records`, whose defaults `bootstrap` has created.
    pub fn new(
        records: Records,
        kms: KmsLink,
        time: TimeSource,
        limits: Limits,
        defaults: Defaults,
        read_cache_entries: usize,
        backups: crate::store::backup::Backups,
    ) -> Result<Self, LockboxError> {
        let bindings = binding_map(records.all_bindings()?);
        let live_tokens = limits.live_tokens;
        Ok(Self {
            records,
            kms,
            keyring: RwLock::new(None),
            keyring_locked: std::sync::Mutex::new("lockbox-kms has not answered yet".into()),
            clock: time.clock(),
            manual_clock: time.manual(),
            limits,
            writer: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            defaults,
            bindings: RwLock::new(bindings),
            replays: std::sync::Mutex::new(crate::iam::tokens::ReplayCache::new(live_tokens)),
            read_cache: read_cache::ReadCache::new(read_cache_entries),
            cloud_orgs: RwLock::default(),
            backups,
            open_backup: std::sync::Mutex::new(None),
            audit: None,
            rate_limiter: None,
            meters: meters::Meters::default(),
        })
    }

    /// The service with rate limits (none when `limits` limit nothing).
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limiter = rate::Limiter::new(limits);
        self
    }

    /// The service with its audit trail.
    pub fn with_audit(mut self, trail: AuditTrail) -> Self {
        self.audit = Some(trail);
        self
    }

    /// Takes the writer lock; see [`WriterGuard`].
    async fn write_lock(&self) -> WriterGuard<'_> {
        WriterGuard {
            _lock: self.writer.lock().await,
            generation: &self.generation,
        }
    }

    /// Now, by the daemon's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The default organization, cloud and folder.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// The service keyring, or `Unavailable` until it has been unwrapped.
    fn keyring(&self) -> Result<Arc<Keyring>, LockboxError> {
        self.keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                let why = self
                    .keyring_locked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                LockboxError::Unavailable(format!(
                    "the service keyring is not unlocked yet ({why}); lockboxd keeps trying"
                ))
            })
    }

    /// Applies `batch` while the caller holds the writer lock: visible to reads (and the
    /// next mutation) at once, durable once [`Lockbox::durable`] returns. Forgets the cached
    /// secrets and versions it changed.
    fn apply(&self, batch: Batch) -> Result<Ticket, LockboxError> {
        let touched = Touched::of(&batch);
        let applied = self.records.apply(batch);
        // Invalidate even after a failure: part of the batch may have reached the engine.
        touched.invalidate(&self.read_cache);
        Ok(applied?)
    }

    /// Completes, with the reason, once the store can no longer make writes durable: the
    /// process must then exit and be restarted on what the disk holds.
    pub async fn store_failed(&self) -> std::sync::Arc<str> {
        self.records.poisoned().await
    }

    /// Waits until an applied batch is durable; many mutations share one sync.
    async fn durable(&self, ticket: Ticket) -> Result<(), LockboxError> {
        Ok(self.records.durable(ticket).await?)
    }

    /// Applies `batch`, releases the writer lock so the next mutation can start, and waits
    /// until the batch is durable. A mutation answers only after this returns.
    async fn commit(&self, writer: WriterGuard<'_>, batch: Batch) -> Result<(), LockboxError> {
        self.commit_then(writer, batch, || ()).await
    }

    /// [`commit`](Self::commit), running `applied` once the batch is applied and before the
    /// writer lock is released: for a mutation that writes its new records through to the
    /// read cache, so no reader or writer finds them missing in between.
    async fn commit_then(
        &self,
        writer: WriterGuard<'_>,
        batch: Batch,
        applied: impl FnOnce(),
    ) -> Result<(), LockboxError> {
        let ticket = self.apply(batch)?;
        applied();
        drop(writer);
        self.durable(ticket).await
    }

    /// Adds the operation record of a mutation to `batch`, records it in the audit trail,
    /// and returns it.
    fn record(
        &self,
        batch: &mut Batch,
        caller: &Caller,
        description: &str,
        resource_id: &str,
        outcome: OperationOutcome,
    ) -> Result<Done, LockboxError> {
        let operation = OperationRecord {
            id: new_id(ids::OPERATION),
            description: description.to_owned(),
            created_at: self.now(),
            created_by: caller.subject().to_owned(),
            resource_id: resource_id.to_owned(),
            outcome,
        };
        // Recorded before the batch is applied: a mutation the trail cannot record does
        // not happen (when it fails closed).
        self.audit_operation(caller, &operation)?;
        self.records.put_operation(batch, &operation);
        Ok(Done { operation })
    }

    /// A secret, or `NotFound`.
    fn secret(&self, secret_id: &str) -> Result<SecretRecord, LockboxError> {
        validate::id("secret_id", secret_id)?;
        self.records
            .secret(secret_id)?
            .ok_or_else(|| LockboxError::NotFound(format!("secret {secret_id} not found")))
    }

    /// A secret and its resource chain, from the read cache or the store; `NotFound` when
    /// absent.
    ///
    /// Under the writer lock a cached secret is the stored one: every mutation writes
    /// through or forgets what it changed before it releases the lock, and a reader inserts
    /// only what it read after the last such change to the shard (`read_cache`).
    fn cached_secret(
        &self,
        secret_id: &str,
    ) -> Result<Arc<read_cache::CachedSecret>, LockboxError> {
        validate::id("secret_id", secret_id)?;
        let epoch = match self.read_cache.secret(secret_id) {
            read_cache::Lookup::Hit(secret) => return Ok(secret),
            read_cache::Lookup::Miss(epoch) => epoch,
        };
        let record = self.secret(secret_id)?;
        let chain = self.secret_chain(&record)?;
        Ok(self.read_cache.insert_secret(
            epoch,
            read_cache::CachedSecret {
                record,
                chain: chain.into(),
            },
        ))
    }

    /// A version of a secret, from the read cache or the store; `NotFound` when absent.
    fn cached_version(
        &self,
        secret: &SecretRecord,
        version_id: &str,
    ) -> Result<Arc<read_cache::CachedVersion>, LockboxError> {
        let epoch = match self.read_cache.version(&secret.id, version_id) {
            read_cache::Lookup::Hit(version) => return Ok(version),
            read_cache::Lookup::Miss(epoch) => epoch,
        };
        let record = self.version(secret, version_id)?;
        Ok(self.read_cache.insert_version(epoch, record))
    }

    /// A secret with its current version's metadata.
    fn secret_with_current(
        &self,
        secret: SecretRecord,
    ) -> Result<(SecretRecord, Option<VersionMeta>), LockboxError> {
        let current = match &secret.current_version_id {
            Some(v) => self.records.version(&secret.id, v)?.map(|r| r.meta),
            None => None,
        };
        Ok((secret, current))
    }

    /// Test-only: moves the manual clock and runs due destructions. Only those who may
    /// change the default organization's bindings may move time.
    pub async fn advance_clock(&self, caller: &Caller, seconds: u64) -> Result<i64, LockboxError> {
        let org = crate::model::Resource::Organization(self.defaults.organization_id.clone());
        self.authorize(
            caller,
            &[org],
            crate::iam::roles::Permission::SetAccessBindings,
        )?;
        let Some(clock) = &self.manual_clock else {
            return Err(LockboxError::FailedPrecondition(
                "the test clock is not enabled (start lockboxd with --danger-test-clock)".into(),
            ));
        };
        let now = clock.advance(seconds);
        self.destroy_due_versions().await?;
        Ok(now)
    }
}

impl From<StoreError> for LockboxError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        match e {
            StoreError::Poisoned(_) => LockboxError::Unavailable(e.to_string()),
            _ => LockboxError::Internal(e.to_string()),
        }
    }
}

/// The secrets and versions a batch writes, to invalidate in the read cache once it is
/// applied.
#[derive(Debug, Default)]
struct Touched {
    secrets: Vec<String>,
    /// (secret, version).
    versions: Vec<(String, String)>,
}

impl Touched {
    fn of(batch: &Batch) -> Self {
        let mut touched = Self::default();
        for (table, key) in batch.keys() {
            match table {
                Table::Secrets => touched
                    .secrets
                    .push(String::from_utf8_lossy(key).into_owned()),
                Table::Versions => {
                    if let Some((secret, version)) = crate::store::keys::split_pair(key) {
                        touched.versions.push((secret, version));
                    }
                }
                _ => {}
            }
        }
        touched
    }

    fn invalidate(&self, cache: &read_cache::ReadCache) {
        for id in &self.secrets {
            cache.invalidate_secret(id);
        }
        for (secret, version) in &self.versions {
            cache.invalidate_version(secret, version);
        }
    }
}
