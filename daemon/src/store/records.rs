//! Typed access to the tables: what keys look like and how records are encoded.
//!
//! Reads return decoded records; writes add to a [`Batch`] the caller commits once, so one
//! mutation is one atomic write.

use super::group::{GroupCommit, Ticket};
use super::keys::{self, key, prefix};
use super::{Batch, KvStore, Scan, StoreError, Table};
use crate::model::{
    Binding, Cloud, Folder, OperationRecord, Organization, Resource, SecretRecord,
    ServiceAccountKeyRecord, ServiceAccountRecord, VersionRecord,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Meta key of the schema version.
const SCHEMA_KEY: &[u8] = b"schema";
/// Meta key of the wrapped service keyring.
const KEYRING_KEY: &[u8] = b"keyring";
/// Meta key of the id of the KMS key signing the audit trail.
const AUDIT_SIGNER_KEY: &[u8] = b"audit_signer";
/// Meta key of the default organization, cloud and folder ids.
const DEFAULTS_KEY: &[u8] = b"defaults";

/// The ids a fresh daemon created for new users.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Defaults {
    /// Default organization.
    pub organization_id: String,
    /// Default cloud.
    pub cloud_id: String,
    /// Default folder.
    pub folder_id: String,
}

/// The service keyring as stored: wrapped by a KMS key the daemon owns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredKeyring {
    /// The KMS key that wraps it.
    pub kms_key_id: String,
    /// The KMS ciphertext of the 32-byte keyring key.
    #[serde(with = "lockbox_proto::bytes::vec")]
    pub wrapped: Vec<u8>,
}

/// Typed records over a [`KvStore`].
#[derive(Clone)]
pub struct Records {
    /// The engine.
    kv: Arc<dyn KvStore>,
    /// Mutations' batches, synced in groups.
    group: Arc<GroupCommit>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Records")
    }
}

/// Bytes set aside for an encoded record: most fit, so encoding allocates once instead of
/// growing the vector several times.
const RECORD_CAPACITY: usize = 512;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain data; postcard cannot fail on them.
    postcard::to_extend(value, Vec::with_capacity(RECORD_CAPACITY)).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: Table, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        table: table.name(),
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        reason: e.to_string(),
    })
}

/// Calls `each` on every item of every page `fetch` returns, following the page tokens.
pub(crate) fn for_each_page<T>(
    fetch: impl Fn(&str) -> Result<Listed<T>, StoreError>,
    mut each: impl FnMut(&T),
) -> Result<(), StoreError> {
    let mut token = String::new();
    loop {
        let page = fetch(&token)?;
        page.items.iter().for_each(&mut each);
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

/// Keys of the resources table.
mod resource_key {
    use super::key;

    pub(super) fn organization(id: &str) -> Vec<u8> {
        key(&[b"o", id.as_bytes()])
    }
    pub(super) fn cloud(id: &str) -> Vec<u8> {
        key(&[b"c", id.as_bytes()])
    }
    pub(super) fn folder(id: &str) -> Vec<u8> {
        key(&[b"f", id.as_bytes()])
    }
    pub(super) fn cloud_child(cloud: &str, folder: &str) -> Vec<u8> {
        key(&[b"cf", cloud.as_bytes(), folder.as_bytes()])
    }
}

/// A page of records and the key to resume after.
#[derive(Debug)]
pub struct Listed<T> {
    /// The records.
    pub items: Vec<T>,
    /// The last id returned when more may follow, else empty.
    pub next_page_token: String,
}

impl Records {
    /// Typed records over `kv` (starts the group-commit syncer).
    pub fn new(kv: Arc<dyn KvStore>) -> Result<Self, StoreError> {
        let group = Arc::new(GroupCommit::new(kv.clone())?);
        Ok(Self { kv, group })
    }

    /// Keeps the group commit's series in `metrics`.
    pub fn instrument(&self, metrics: &lockbox_rpc::metrics::Metrics) {
        self.group.instrument(metrics);
    }

    /// The engine's own figures, as (series name, help, value).
    pub fn engine_figures(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.kv.figures()
    }

    /// Writes a checkpoint of every table into the new directory `dir`.
    pub fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StoreError> {
        self.kv.checkpoint(dir)
    }

    /// Commits a batch atomically and durably, on its own (for start-up work).
    pub fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.kv.write(batch)
    }

    /// Applies a batch atomically: visible now, durable once [`Records::durable`] says so.
    pub fn apply(&self, batch: Batch) -> Result<Ticket, StoreError> {
        self.group.apply(batch)
    }

    /// Waits until the batch of `ticket` is durable (one sync serves every batch applied
    /// before it).
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        self.group.durable(ticket).await
    }

    /// Completes, with the reason, once a write could not be made durable (see
    /// [`GroupCommit::poisoned`]).
    pub async fn poisoned(&self) -> std::sync::Arc<str> {
        self.group.poisoned().await
    }

    fn get<T: DeserializeOwned>(&self, table: Table, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.kv.get(table, key)? {
            Some(bytes) => decode(table, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Up to `limit` records under `prefix`, resuming after the id `token`.
    fn page(
        &self,
        table: Table,
        prefix: &[u8],
        token: &str,
        reverse: bool,
        limit: usize,
    ) -> Result<Listed<(String, Vec<u8>)>, StoreError> {
        let after = (!token.is_empty()).then(|| {
            let mut k = prefix.to_vec();
            k.extend_from_slice(token.as_bytes());
            k
        });
        // One extra entry tells whether another page exists.
        let mut entries = self.kv.scan(
            table,
            Scan {
                prefix,
                after: after.as_deref(),
                reverse,
                limit: limit + 1,
            },
        )?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let items: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, v)| (keys::last_part(&k), v))
            .collect();
        let next_page_token = match (more, items.last()) {
            (true, Some((id, _))) => id.clone(),
            _ => String::new(),
        };
        Ok(Listed {
            items,
            next_page_token,
        })
    }

    // ---- meta ----

    /// The stored schema version, if the store was ever initialised.
    pub fn schema(&self) -> Result<Option<u32>, StoreError> {
        self.get(Table::Meta, SCHEMA_KEY)
    }

    /// Records the schema version.
    pub fn put_schema(&self, batch: &mut Batch, schema: u32) {
        batch.put(Table::Meta, SCHEMA_KEY.to_vec(), encode(&schema));
    }

    /// The default resource ids.
    pub fn defaults(&self) -> Result<Option<Defaults>, StoreError> {
        self.get(Table::Meta, DEFAULTS_KEY)
    }

    /// Records the default resource ids.
    pub fn put_defaults(&self, batch: &mut Batch, defaults: &Defaults) {
        batch.put(Table::Meta, DEFAULTS_KEY.to_vec(), encode(defaults));
    }

    /// The wrapped service keyring.
    pub fn keyring(&self) -> Result<Option<StoredKeyring>, StoreError> {
        self.get(Table::Meta, KEYRING_KEY)
    }

    /// Stores the wrapped service keyring.
    pub fn put_keyring(&self, batch: &mut Batch, keyring: &StoredKeyring) {
        batch.put(Table::Meta, KEYRING_KEY.to_vec(), encode(keyring));
    }

    /// The KMS key that signs the audit trail's chain head, once created.
    pub fn audit_signer(&self) -> Result<Option<String>, StoreError> {
        self.get(Table::Meta, AUDIT_SIGNER_KEY)
    }

    /// Records the KMS key that signs the audit trail's chain head.
    pub fn put_audit_signer(&self, batch: &mut Batch, kms_key_id: &str) {
        batch.put(Table::Meta, AUDIT_SIGNER_KEY.to_vec(), encode(&kms_key_id));
    }

    /// Secrets counted against `cloud_id`'s quota.
    pub fn secret_count(&self, cloud_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .get(Table::Meta, &key(&[b"count", cloud_id.as_bytes()]))?
            .unwrap_or(0))
    }

    /// Sets the secret count of `cloud_id`.
    pub fn put_secret_count(&self, batch: &mut Batch, cloud_id: &str, count: u64) {
        batch.put(
            Table::Meta,
            key(&[b"count", cloud_id.as_bytes()]),
            encode(&count),
        );
    }

    // ---- resources ----

    /// An organization.
    pub fn organization(&self, id: &str) -> Result<Option<Organization>, StoreError> {
        self.get(Table::Resources, &resource_key::organization(id))
    }

    /// Stores an organization.
    pub fn put_organization(&self, batch: &mut Batch, org: &Organization) {
        batch.put(
            Table::Resources,
            resource_key::organization(&org.id),
            encode(org),
        );
    }

    /// A cloud.
    pub fn cloud(&self, id: &str) -> Result<Option<Cloud>, StoreError> {
        self.get(Table::Resources, &resource_key::cloud(id))
    }

    /// Stores a cloud.
    pub fn put_cloud(&self, batch: &mut Batch, cloud: &Cloud) {
        batch.put(
            Table::Resources,
            resource_key::cloud(&cloud.id),
            encode(cloud),
        );
    }

    /// Removes a cloud.
    pub fn delete_cloud(&self, batch: &mut Batch, id: &str) {
        batch.delete(Table::Resources, resource_key::cloud(id));
    }

    /// Clouds, oldest first.
    pub fn clouds(&self, token: &str, limit: usize) -> Result<Listed<Cloud>, StoreError> {
        self.typed_page(Table::Resources, &prefix(&[b"c"]), token, false, limit)
    }

    /// A folder.
    pub fn folder(&self, id: &str) -> Result<Option<Folder>, StoreError> {
        self.get(Table::Resources, &resource_key::folder(id))
    }

    /// Stores a folder and its place under its cloud.
    pub fn put_folder(&self, batch: &mut Batch, folder: &Folder) {
        batch.put(
            Table::Resources,
            resource_key::folder(&folder.id),
            encode(folder),
        );
        batch.put(
            Table::Resources,
            resource_key::cloud_child(&folder.cloud_id, &folder.id),
            Vec::new(),
        );
    }

    /// Removes a folder.
    pub fn delete_folder(&self, batch: &mut Batch, folder: &Folder) {
        batch.delete(Table::Resources, resource_key::folder(&folder.id));
        batch.delete(
            Table::Resources,
            resource_key::cloud_child(&folder.cloud_id, &folder.id),
        );
    }

    /// A cloud's folders, oldest first.
    pub fn folders(
        &self,
        cloud_id: &str,
        token: &str,
        limit: usize,
    ) -> Result<Listed<Folder>, StoreError> {
        self.indexed_page(
            Table::Resources,
            &prefix(&[b"cf", cloud_id.as_bytes()]),
            token,
            limit,
            |id| self.folder(id),
        )
    }

    /// A page of an index whose keys end in ids, each looked up with `lookup` (ids whose
    /// record has gone are skipped).
    fn indexed_page<T>(
        &self,
        table: Table,
        prefix: &[u8],
        token: &str,
        limit: usize,
        lookup: impl Fn(&str) -> Result<Option<T>, StoreError>,
    ) -> Result<Listed<T>, StoreError> {
        let page = self.page(table, prefix, token, false, limit)?;
        let mut items = Vec::with_capacity(page.items.len());
        for (id, _) in page.items {
            if let Some(item) = lookup(&id)? {
                items.push(item);
            }
        }
        Ok(Listed {
            items,
            next_page_token: page.next_page_token,
        })
    }

    fn typed_page<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &[u8],
        token: &str,
        reverse: bool,
        limit: usize,
    ) -> Result<Listed<T>, StoreError> {
        let page = self.page(table, prefix, token, reverse, limit)?;
        let items = page
            .items
            .into_iter()
            .map(|(id, v)| decode(table, id.as_bytes(), &v))
            .collect::<Result<_, _>>()?;
        Ok(Listed {
            items,
            next_page_token: page.next_page_token,
        })
    }

    // ---- secrets ----

    /// A secret.
    pub fn secret(&self, id: &str) -> Result<Option<SecretRecord>, StoreError> {
        self.get(Table::Secrets, id.as_bytes())
    }

    /// Every secret, by id.
    pub fn secrets(&self, token: &str, limit: usize) -> Result<Listed<SecretRecord>, StoreError> {
        self.typed_page(Table::Secrets, &[], token, false, limit)
    }

    /// The id of the secret named `name` in `folder_id`.
    pub fn secret_id_by_name(
        &self,
        folder_id: &str,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        self.get(
            Table::SecretNames,
            &key(&[folder_id.as_bytes(), name.as_bytes()]),
        )
    }

    /// Stores a secret and keeps its name and folder indexes. `previous_name` is the name
    /// the stored record had (`None` for a new secret); indexes are written only when new or
    /// renamed.
    pub fn put_secret(
        &self,
        batch: &mut Batch,
        secret: &SecretRecord,
        previous_name: Option<&str>,
    ) {
        let folder = secret.folder_id.as_bytes();
        let renamed = previous_name != Some(secret.name.as_str());
        if let Some(old) = previous_name.filter(|n| !n.is_empty() && renamed) {
            batch.delete(Table::SecretNames, key(&[folder, old.as_bytes()]));
        }
        if !secret.name.is_empty() && renamed {
            batch.put(
                Table::SecretNames,
                key(&[folder, secret.name.as_bytes()]),
                encode(&secret.id),
            );
        }
        if previous_name.is_none() {
            batch.put(
                Table::FolderSecrets,
                key(&[folder, secret.id.as_bytes()]),
                Vec::new(),
            );
        }
        batch.put(
            Table::Secrets,
            secret.id.as_bytes().to_vec(),
            encode(secret),
        );
    }

    /// Removes a secret and its indexes (not its versions or operations).
    pub fn delete_secret(&self, batch: &mut Batch, secret: &SecretRecord) {
        let folder = secret.folder_id.as_bytes();
        if !secret.name.is_empty() {
            batch.delete(Table::SecretNames, key(&[folder, secret.name.as_bytes()]));
        }
        batch.delete(Table::FolderSecrets, key(&[folder, secret.id.as_bytes()]));
        batch.delete(Table::Secrets, secret.id.as_bytes().to_vec());
    }

    /// A folder's secrets, oldest first, by key range.
    pub fn secrets_in_folder(
        &self,
        folder_id: &str,
        token: &str,
        limit: usize,
    ) -> Result<Listed<SecretRecord>, StoreError> {
        self.indexed_page(
            Table::FolderSecrets,
            &prefix(&[folder_id.as_bytes()]),
            token,
            limit,
            |id| self.secret(id),
        )
    }

    /// Whether `folder_id` holds any secret.
    pub fn folder_has_secrets(&self, folder_id: &str) -> Result<bool, StoreError> {
        Ok(!self
            .page(
                Table::FolderSecrets,
                &prefix(&[folder_id.as_bytes()]),
                "",
                false,
                1,
            )?
            .items
            .is_empty())
    }

    // ---- versions ----

    /// A version.
    pub fn version(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Option<VersionRecord>, StoreError> {
        self.get(
            Table::Versions,
            &key(&[secret_id.as_bytes(), version_id.as_bytes()]),
        )
    }

    /// Stores a version.
    pub fn put_version(&self, batch: &mut Batch, version: &VersionRecord) {
        batch.put(
            Table::Versions,
            key(&[
                version.meta.secret_id.as_bytes(),
                version.meta.id.as_bytes(),
            ]),
            encode(version),
        );
    }

    /// A secret's versions, newest first.
    pub fn versions(
        &self,
        secret_id: &str,
        token: &str,
        limit: usize,
    ) -> Result<Listed<VersionRecord>, StoreError> {
        self.typed_page(
            Table::Versions,
            &prefix(&[secret_id.as_bytes()]),
            token,
            true,
            limit,
        )
    }

    /// Removes every version of a secret and every queued destruction of them.
    pub fn delete_versions(&self, batch: &mut Batch, secret_id: &str) -> Result<(), StoreError> {
        for_each_page(
            |token| self.versions(secret_id, token, 1000),
            |v| {
                batch.delete(
                    Table::Versions,
                    key(&[secret_id.as_bytes(), v.meta.id.as_bytes()]),
                );
                if let Some(at) = v.meta.destroy_at {
                    self.unqueue_destruction(batch, at, secret_id, &v.meta.id);
                }
            },
        )
    }

    // ---- destruction queue ----

    fn queue_key(at: i64, secret_id: &str, version_id: &str) -> Vec<u8> {
        key(&[&keys::time(at), secret_id.as_bytes(), version_id.as_bytes()])
    }

    /// Queues a version's destruction at `at`.
    pub fn queue_destruction(&self, batch: &mut Batch, at: i64, secret_id: &str, version_id: &str) {
        batch.put(
            Table::DestroyQueue,
            Self::queue_key(at, secret_id, version_id),
            Vec::new(),
        );
    }

    /// Removes a queued destruction.
    pub fn unqueue_destruction(
        &self,
        batch: &mut Batch,
        at: i64,
        secret_id: &str,
        version_id: &str,
    ) {
        batch.delete(
            Table::DestroyQueue,
            Self::queue_key(at, secret_id, version_id),
        );
    }

    /// Up to `limit` queued destructions, earliest first: `(destroy_at, secret, version)`.
    pub fn queued_destructions(
        &self,
        limit: usize,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let entries = self.kv.scan(
            Table::DestroyQueue,
            Scan {
                prefix: b"",
                after: None,
                reverse: false,
                limit,
            },
        )?;
        let mut out = Vec::with_capacity(entries.len());
        for (k, _) in entries {
            // The time is a fixed 8 bytes (which may contain the separator byte), then a
            // separator, then `secret \0 version`.
            let at = keys::parse_time(&k);
            let mut ids = k
                .get(9..)
                .unwrap_or_default()
                .splitn(2, |&b| b == keys::SEP)
                .map(|p| String::from_utf8_lossy(p).into_owned());
            match (at, ids.next(), ids.next()) {
                (Some(at), Some(s), Some(v)) => out.push((at, s, v)),
                _ => {
                    return Err(StoreError::Corrupt {
                        table: Table::DestroyQueue.name(),
                        key: String::from_utf8_lossy(&k).into_owned(),
                        reason: "malformed queue key".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    // ---- access bindings ----

    /// Every resource's bindings (loaded once at start into the in-memory cache).
    pub fn all_bindings(&self) -> Result<Vec<(Resource, Vec<Binding>)>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let entries = self.kv.scan(
                Table::Bindings,
                Scan {
                    prefix: b"",
                    after: after.as_deref(),
                    reverse: false,
                    limit: 1000,
                },
            )?;
            let Some((last, _)) = entries.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            for (k, v) in &entries {
                out.push(decode(Table::Bindings, k, v)?);
            }
        }
    }

    /// Replaces a resource's bindings (removing the record when there are none).
    pub fn put_bindings(&self, batch: &mut Batch, resource: &Resource, bindings: &[Binding]) {
        let k = encode(resource);
        if bindings.is_empty() {
            batch.delete(Table::Bindings, k);
        } else {
            batch.put(Table::Bindings, k, encode(&(resource, bindings)));
        }
    }

    // ---- service accounts ----

    /// A service account.
    pub fn service_account(&self, id: &str) -> Result<Option<ServiceAccountRecord>, StoreError> {
        self.get(Table::ServiceAccounts, &key(&[b"a", id.as_bytes()]))
    }

    /// Stores a service account and its folder index.
    pub fn put_service_account(&self, batch: &mut Batch, sa: &ServiceAccountRecord) {
        batch.put(
            Table::ServiceAccounts,
            key(&[b"a", sa.id.as_bytes()]),
            encode(sa),
        );
        batch.put(
            Table::ServiceAccounts,
            key(&[b"f", sa.folder_id.as_bytes(), sa.id.as_bytes()]),
            Vec::new(),
        );
    }

    /// Removes a service account, its index entry and its keys.
    pub fn delete_service_account(
        &self,
        batch: &mut Batch,
        sa: &ServiceAccountRecord,
    ) -> Result<(), StoreError> {
        for k in self.service_account_keys(&sa.id)? {
            self.delete_service_account_key(batch, &sa.id, &k.id);
        }
        batch.delete(Table::ServiceAccounts, key(&[b"a", sa.id.as_bytes()]));
        batch.delete(
            Table::ServiceAccounts,
            key(&[b"f", sa.folder_id.as_bytes(), sa.id.as_bytes()]),
        );
        Ok(())
    }

    /// A folder's service accounts, oldest first.
    pub fn service_accounts_in_folder(
        &self,
        folder_id: &str,
        token: &str,
        limit: usize,
    ) -> Result<Listed<ServiceAccountRecord>, StoreError> {
        self.indexed_page(
            Table::ServiceAccounts,
            &prefix(&[b"f", folder_id.as_bytes()]),
            token,
            limit,
            |id| self.service_account(id),
        )
    }

    /// A key of a service account.
    pub fn service_account_key(
        &self,
        sa_id: &str,
        key_id: &str,
    ) -> Result<Option<ServiceAccountKeyRecord>, StoreError> {
        self.get(
            Table::ServiceAccounts,
            &key(&[b"k", sa_id.as_bytes(), key_id.as_bytes()]),
        )
    }

    /// Stores a key.
    pub fn put_service_account_key(&self, batch: &mut Batch, k: &ServiceAccountKeyRecord) {
        batch.put(
            Table::ServiceAccounts,
            key(&[b"k", k.service_account_id.as_bytes(), k.id.as_bytes()]),
            encode(k),
        );
    }

    /// Removes a key.
    pub fn delete_service_account_key(&self, batch: &mut Batch, sa_id: &str, key_id: &str) {
        batch.delete(
            Table::ServiceAccounts,
            key(&[b"k", sa_id.as_bytes(), key_id.as_bytes()]),
        );
    }

    /// A service account's keys (there are few), oldest first.
    pub fn service_account_keys(
        &self,
        sa_id: &str,
    ) -> Result<Vec<ServiceAccountKeyRecord>, StoreError> {
        let mut keys = Vec::new();
        for_each_page(
            |token| {
                self.typed_page(
                    Table::ServiceAccounts,
                    &prefix(&[b"k", sa_id.as_bytes()]),
                    token,
                    false,
                    1000,
                )
            },
            |k: &ServiceAccountKeyRecord| keys.push(k.clone()),
        )?;
        Ok(keys)
    }

    // ---- operations ----

    /// Records an operation under its resource.
    pub fn put_operation(&self, batch: &mut Batch, op: &OperationRecord) {
        batch.put(
            Table::Operations,
            key(&[op.resource_id.as_bytes(), op.id.as_bytes()]),
            encode(op),
        );
    }

    /// A resource's operations, newest first.
    pub fn operations(
        &self,
        resource_id: &str,
        token: &str,
        limit: usize,
    ) -> Result<Listed<OperationRecord>, StoreError> {
        self.typed_page(
            Table::Operations,
            &prefix(&[resource_id.as_bytes()]),
            token,
            true,
            limit,
        )
    }

    /// Removes every operation recorded under a resource.
    pub fn delete_operations(
        &self,
        batch: &mut Batch,
        resource_id: &str,
    ) -> Result<(), StoreError> {
        for_each_page(
            |token| self.operations(resource_id, token, 1000),
            |op| {
                batch.delete(
                    Table::Operations,
                    key(&[resource_id.as_bytes(), op.id.as_bytes()]),
                );
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rocks::RocksStore;

    #[test]
    fn queued_destructions_round_trip_times_whose_bytes_contain_the_separator() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(Arc::new(RocksStore::open(dir.path()).unwrap())).unwrap();
        let mut batch = Batch::default();
        // 256 has a zero low byte; negative and large times exercise the offset encoding.
        for (at, v) in [(256, "v1"), (1_700_000_000, "v2"), (-1, "v0")] {
            records.queue_destruction(&mut batch, at, "secret", v);
        }
        records.commit(batch).unwrap();
        let queued = records.queued_destructions(10).unwrap();
        let expected: Vec<(i64, String, String)> = [(-1, "v0"), (256, "v1"), (1_700_000_000, "v2")]
            .into_iter()
            .map(|(at, v)| (at, "secret".to_string(), v.to_string()))
            .collect();
        assert_eq!(queued, expected);
    }
}
