//! Storage: a small key-value trait ([`KvStore`]) that RocksDB implements today and another
//! engine can implement later, and the typed records layer ([`records`]) on top of it.
//!
//! The store knows nothing about sockets, requests or authorization. Every mutation is one
//! atomic [`Batch`]; implementations must make an acknowledged batch durable. Mutations
//! apply their batch and then wait for a shared sync ([`group`]), so concurrent writers
//! share one fsync.

pub mod backup;
pub mod group;
pub mod keys;
pub mod records;
pub mod rocks;

/// A kind of record; RocksDB keeps each in its own column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Schema version, service keyring, bootstrap ids, quota counters.
    Meta,
    /// Organizations, clouds and folders, and their child indexes.
    Resources,
    /// Secrets by id.
    Secrets,
    /// `folder \0 name` → secret id.
    SecretNames,
    /// `folder \0 secret` → (), for listing a folder's secrets by key range.
    FolderSecrets,
    /// `secret \0 version` → version record (metadata and sealed payload).
    Versions,
    /// `resource \0 operation` → operation record.
    Operations,
    /// `destroy_at \0 secret \0 version` → (), versions waiting for destruction.
    DestroyQueue,
    /// Resource → its access bindings.
    Bindings,
    /// Service accounts (`a \0 id`), their folder index (`f \0 folder \0 id`) and their
    /// keys (`k \0 account \0 key`).
    ServiceAccounts,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 10] = [
        Table::Meta,
        Table::Resources,
        Table::Secrets,
        Table::SecretNames,
        Table::FolderSecrets,
        Table::Versions,
        Table::Operations,
        Table::DestroyQueue,
        Table::Bindings,
        Table::ServiceAccounts,
    ];

    /// Stable name (the RocksDB column family).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Resources => "resources",
            Table::Secrets => "secrets",
            Table::SecretNames => "secret_names",
            Table::FolderSecrets => "folder_secrets",
            Table::Versions => "versions",
            Table::Operations => "operations",
            Table::DestroyQueue => "destroy_queue",
            Table::Bindings => "bindings",
            Table::ServiceAccounts => "service_accounts",
        }
    }
}

/// Changes applied together or not at all.
#[derive(Debug, Default)]
pub struct Batch {
    /// Puts and deletes, in order.
    pub(crate) ops: Vec<BatchOp>,
}

/// One change in a [`Batch`].
#[derive(Debug)]
pub(crate) enum BatchOp {
    /// Insert or overwrite.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove (no-op when absent).
    Delete(Table, Vec<u8>),
}

impl Batch {
    /// Adds a put.
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put(table, key, value));
    }

    /// Adds a delete.
    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete(table, key));
    }

    /// The table and key of every change, in order.
    pub fn keys(&self) -> impl Iterator<Item = (Table, &[u8])> {
        self.ops.iter().map(|op| match op {
            BatchOp::Put(table, key, _) | BatchOp::Delete(table, key) => (*table, key.as_slice()),
        })
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A range scan: keys starting with `prefix`, strictly after `after` in scan order.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a> {
    /// Only keys with this prefix.
    pub prefix: &'a [u8],
    /// Resume after this full key (a page token), if any.
    pub after: Option<&'a [u8]>,
    /// Newest (largest key) first.
    pub reverse: bool,
    /// At most this many entries.
    pub limit: usize,
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed (I/O, corruption, …).
    #[error("storage failure: {0}")]
    Engine(String),
    /// A write could not be made durable, so no later one can be trusted to be: the change
    /// at hand may or may not have been saved, and the process must restart.
    #[error(
        "storage failed ({0}); this change may or may not have been saved, and lockboxd \
         accepts no writes until it restarts"
    )]
    Poisoned(String),
    /// A stored value could not be decoded.
    #[error("stored record {table}/{key} is unreadable: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Printable key.
        key: String,
        /// Decoder error.
        reason: String,
    },
    /// The data directory cannot be used.
    #[error("{0}")]
    Open(String),
}

/// An ordered key-value store with atomic, durable batches.
pub trait KvStore: Send + Sync + 'static {
    /// The value under `key`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries in key order (or reverse), as `scan` describes.
    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<Entry>, StoreError>;
    /// Applies `batch` atomically; returns once it is durable.
    fn write(&self, batch: Batch) -> Result<(), StoreError>;
    /// Applies `batch` atomically and makes it visible to reads; it becomes durable at the
    /// next [`KvStore::sync`]. Batches are durable in the order they were applied: a sync
    /// never keeps a later batch and loses an earlier one.
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;
    /// Makes every batch applied so far durable.
    fn sync(&self) -> Result<(), StoreError>;
    /// The engine's own figures for metrics, as (series name, help, value); none unless the
    /// engine has some.
    fn figures(&self) -> Vec<(&'static str, &'static str, u64)> {
        Vec::new()
    }
    /// Writes a consistent copy of every table, as of now, into `dir`, which must not
    /// exist: a checkpoint to back up (files are hard-linked where the engine can).
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), StoreError> {
        let _ = dir;
        Err(StoreError::Engine(
            "this store cannot make checkpoints".into(),
        ))
    }
}
