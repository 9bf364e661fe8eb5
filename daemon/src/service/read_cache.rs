//! The read cache: decoded secrets (with their resource chain) and versions, so a payload
//! read of a hot secret touches no storage and decodes nothing.
//!
//! Correctness rests on one rule: every committed batch invalidates the secrets and versions
//! it touched, after the batch is visible in the store and before the writer lock is released
//! ([`ReadCache::invalidate_secret`]); a mutation may instead write its new state through
//! ([`ReadCache::put_secret`]), which moves the epoch on just the same. A reader
//! that missed reads the store and inserts what it read only if no invalidation reached its
//! shard in between (the shard's epoch is unchanged), so a value read before a write can
//! never be inserted after that write's invalidation.
//!
//! The cache is bounded (entries per shard); when a shard is full an arbitrary entry makes
//! room. Versions of keyring-wrapped secrets also keep their unwrapped data key's cipher, so
//! a hot read is one AES-GCM open. Data keys wrapped by a secret's own KMS key are never
//! kept: every such read goes to `lockbox-kms`, which authorizes the caller each time.

use crate::model::Resource;
use crate::model::ids::IdHashing;
use crate::model::{SecretRecord, VersionRecord};
use aes_gcm::Aes256Gcm;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock};

/// Shards: enough that the runtime's workers rarely meet on one lock.
const SHARDS: usize = 32;

/// A cached secret.
#[derive(Debug)]
pub(super) struct CachedSecret {
    /// The record as stored.
    pub(super) record: SecretRecord,
    /// Secret, folder, cloud, organization: what authorization walks. Shared, so the copy
    /// a mutation writes through is a reference count, not four strings.
    pub(super) chain: Arc<[Resource]>,
}

/// A cached version.
pub(super) struct CachedVersion {
    /// The record as stored.
    pub(super) record: VersionRecord,
    /// The cipher of the unwrapped data key, once a read has unwrapped it (keyring-wrapped
    /// versions only).
    pub(super) dek: OnceLock<Arc<Aes256Gcm>>,
}

impl std::fmt::Debug for CachedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedVersion")
            .field("record", &self.record.meta)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shard {
    /// Bumped by every invalidation that reaches this shard.
    epoch: u64,
    secrets: HashMap<String, Arc<CachedSecret>, IdHashing>,
    /// By version id; a version lives in the shard of its secret.
    versions: HashMap<String, Arc<CachedVersion>, IdHashing>,
}

/// What a lookup found, and the epoch to insert under when it found nothing.
pub(super) enum Lookup<T> {
    /// Cached.
    Hit(Arc<T>),
    /// Not cached; read the store, then [`ReadCache::insert_secret`] or
    /// [`ReadCache::insert_version`] with this epoch.
    Miss(u64),
}

/// Bounded cache of secrets and versions.
pub(super) struct ReadCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: IdHashing,
    /// Entries of each kind per shard.
    per_shard: usize,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("per_shard", &self.per_shard)
            .finish_non_exhaustive()
    }
}

impl ReadCache {
    /// A cache of about `capacity` secrets (and as many versions); 0 disables it.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: IdHashing::default(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard_index(&self, secret_id: &str) -> usize {
        // Bits the shard's own table does not index by (it uses the low ones). The modulo
        // keeps the index below SHARDS, so it always fits.
        ((self.hasher.hash_one(secret_id) >> 32) % SHARDS as u64) as usize
    }

    fn shard(&self, secret_id: &str) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[self.shard_index(secret_id)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The cached secret `id`.
    pub(super) fn secret(&self, id: &str) -> Lookup<CachedSecret> {
        let shard = self.shard(id);
        match shard.secrets.get(id) {
            Some(s) => Lookup::Hit(s.clone()),
            None => Lookup::Miss(shard.epoch),
        }
    }

    /// The cached version `version_id` of `secret_id`.
    pub(super) fn version(&self, secret_id: &str, version_id: &str) -> Lookup<CachedVersion> {
        let shard = self.shard(secret_id);
        match shard.versions.get(version_id) {
            // Version ids are unique, but the request may name another secret's version.
            Some(v) if v.record.meta.secret_id == secret_id => Lookup::Hit(v.clone()),
            _ => Lookup::Miss(shard.epoch),
        }
    }

    /// Caches a secret read from the store while the shard was at `epoch`.
    pub(super) fn insert_secret(&self, epoch: u64, secret: CachedSecret) -> Arc<CachedSecret> {
        let secret = Arc::new(secret);
        if self.per_shard > 0 {
            let mut shard = self.shard(&secret.record.id);
            if shard.epoch == epoch {
                keep(
                    &mut shard.secrets,
                    self.per_shard,
                    &secret.record.id,
                    &secret,
                );
            }
        }
        secret
    }

    /// Caches a version read from the store while its secret's shard was at `epoch`.
    pub(super) fn insert_version(&self, epoch: u64, record: VersionRecord) -> Arc<CachedVersion> {
        let version = Arc::new(CachedVersion {
            record,
            dek: OnceLock::new(),
        });
        if self.per_shard > 0 {
            let mut shard = self.shard(&version.record.meta.secret_id);
            if shard.epoch == epoch {
                let id = &version.record.meta.id;
                keep(&mut shard.versions, self.per_shard, id, &version);
            }
        }
        version
    }

    /// Caches a secret as a mutation has just written it, replacing any cached copy. Only
    /// under the writer lock and after the batch is applied, so it is the newest state; the
    /// epoch moves on as for an invalidation, so a reader that read the store before the
    /// write cannot insert what it read.
    pub(super) fn put_secret(&self, secret: CachedSecret) {
        if self.per_shard > 0 {
            let secret = Arc::new(secret);
            let mut shard = self.shard(&secret.record.id);
            shard.epoch += 1;
            keep(
                &mut shard.secrets,
                self.per_shard,
                &secret.record.id,
                &secret,
            );
        }
    }

    /// Caches a version as a mutation has just written it, with its data key's cipher when
    /// that may be kept (see [`ReadCache::put_secret`]). The version it replaces as the
    /// secret's current one, `superseded`, makes room: reads go to the current version, so
    /// a stream of additions keeps one entry per secret instead of filling the cache.
    pub(super) fn put_version(
        &self,
        record: VersionRecord,
        dek: Option<Aes256Gcm>,
        superseded: Option<&str>,
    ) {
        if self.per_shard > 0 {
            let mut shard = self.shard(&record.meta.secret_id);
            shard.epoch += 1;
            if let Some(old) = superseded {
                shard.versions.remove(old);
            }
            let version = Arc::new(CachedVersion {
                record,
                dek: dek.map(|d| OnceLock::from(Arc::new(d))).unwrap_or_default(),
            });
            let id = &version.record.meta.id;
            keep(&mut shard.versions, self.per_shard, id, &version);
        }
    }

    /// Forgets a secret after a committed write to it.
    pub(super) fn invalidate_secret(&self, secret_id: &str) {
        let mut shard = self.shard(secret_id);
        shard.epoch += 1;
        shard.secrets.remove(secret_id);
    }

    /// Forgets a version after a committed write to it.
    pub(super) fn invalidate_version(&self, secret_id: &str, version_id: &str) {
        let mut shard = self.shard(secret_id);
        shard.epoch += 1;
        shard.versions.remove(version_id);
    }
}

/// Puts `value` under `key`, first removing an arbitrary other entry when a new key would
/// take `map` beyond `limit`.
fn keep<V>(map: &mut HashMap<String, Arc<V>, IdHashing>, limit: usize, key: &str, value: &Arc<V>) {
    if map.len() >= limit
        && !map.contains_key(key)
        && let Some(victim) = map.keys().next().cloned()
    {
        map.remove(&victim);
    }
    map.insert(key.to_owned(), value.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SecretStatus, VersionMeta, VersionStatus};

    fn secret(id: &str) -> CachedSecret {
        CachedSecret {
            record: SecretRecord {
                id: id.into(),
                folder_id: "f".into(),
                cloud_id: "c".into(),
                created_at: 0,
                name: String::new(),
                description: String::new(),
                labels: Default::default(),
                kms_key_id: None,
                status: SecretStatus::Active,
                current_version_id: None,
                deletion_protection: false,
                password_spec: None,
                version_count: 0,
            },
            chain: Arc::new([]),
        }
    }

    fn version(secret_id: &str, id: &str) -> VersionRecord {
        VersionRecord {
            meta: VersionMeta {
                id: id.into(),
                secret_id: secret_id.into(),
                created_at: 0,
                destroy_at: None,
                description: String::new(),
                status: VersionStatus::Active,
                entry_keys: Vec::new(),
            },
            sealed: None,
        }
    }

    fn epoch_of<T>(lookup: Lookup<T>) -> u64 {
        match lookup {
            Lookup::Miss(epoch) => epoch,
            Lookup::Hit(_) => panic!("expected a miss"),
        }
    }

    #[test]
    fn a_read_from_before_an_invalidation_is_not_cached() {
        let cache = ReadCache::new(1024);
        let epoch = epoch_of(cache.secret("s"));
        // A write lands between the store read and the insert.
        cache.invalidate_secret("s");
        cache.insert_secret(epoch, secret("s"));
        assert!(matches!(cache.secret("s"), Lookup::Miss(_)));

        let epoch = epoch_of(cache.secret("s"));
        cache.insert_secret(epoch, secret("s"));
        assert!(matches!(cache.secret("s"), Lookup::Hit(_)));
        cache.invalidate_secret("s");
        assert!(matches!(cache.secret("s"), Lookup::Miss(_)));
    }

    #[test]
    fn a_written_through_secret_replaces_the_cached_one_and_wins_over_older_reads() {
        let cache = ReadCache::new(1024);
        let epoch = epoch_of(cache.secret("s"));
        cache.insert_secret(epoch, secret("s"));
        // A reader misses on another secret of the same shard and reads the store...
        let other = (0..)
            .map(|i| format!("o{i}"))
            .find(|id| cache.shard_index(id) == cache.shard_index("s"))
            .expect("an endless search finds an id in every shard");
        let stale = epoch_of(cache.secret(&other));
        // ...a mutation writes "s" through...
        let mut written = secret("s");
        written.record.version_count = 7;
        cache.put_secret(written);
        // ...and the reader's insert, from before the write, is refused.
        cache.insert_secret(stale, secret(&other));
        assert!(matches!(cache.secret(&other), Lookup::Miss(_)));
        match cache.secret("s") {
            Lookup::Hit(s) => assert_eq!(s.record.version_count, 7),
            Lookup::Miss(_) => panic!("the written-through secret is not cached"),
        }
    }

    #[test]
    fn a_written_through_version_keeps_its_data_key() {
        let cache = ReadCache::new(1024);
        let dek = crate::crypto::envelope::Dek::generate().cipher();
        cache.put_version(version("s", "v1"), Some(dek), None);
        cache.put_version(version("s", "v2"), None, None);
        match (cache.version("s", "v1"), cache.version("s", "v2")) {
            (Lookup::Hit(v1), Lookup::Hit(v2)) => {
                assert!(v1.dek.get().is_some());
                assert!(v2.dek.get().is_none());
            }
            _ => panic!("written-through versions are not cached"),
        }
        // A new current version takes the place of the one it supersedes.
        cache.put_version(version("s", "v3"), None, Some("v2"));
        assert!(matches!(cache.version("s", "v2"), Lookup::Miss(_)));
        assert!(matches!(cache.version("s", "v3"), Lookup::Hit(_)));
        assert!(matches!(cache.version("s", "v1"), Lookup::Hit(_)));
    }

    #[test]
    fn versions_are_invalidated_one_by_one() {
        let cache = ReadCache::new(1024);
        for v in ["v1", "v2"] {
            let epoch = epoch_of(cache.version("s", v));
            cache.insert_version(epoch, version("s", v));
        }
        assert!(matches!(cache.version("other", "v1"), Lookup::Miss(_)));
        cache.invalidate_version("s", "v1");
        assert!(matches!(cache.version("s", "v1"), Lookup::Miss(_)));
        assert!(matches!(cache.version("s", "v2"), Lookup::Hit(_)));
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let cache = ReadCache::new(SHARDS * 4);
        for i in 0..10_000 {
            let id = format!("s{i}");
            let epoch = epoch_of(cache.secret(&id));
            cache.insert_secret(epoch, secret(&id));
        }
        let held: usize = cache
            .shards
            .iter()
            .map(|s| s.lock().map(|s| s.secrets.len()).unwrap_or(0))
            .sum();
        assert!(held <= SHARDS * 4, "{held} entries held");
    }

    #[test]
    fn a_zero_capacity_cache_holds_nothing() {
        let cache = ReadCache::new(0);
        let epoch = epoch_of(cache.secret("s"));
        cache.insert_secret(epoch, secret("s"));
        assert!(matches!(cache.secret("s"), Lookup::Miss(_)));
    }
}
