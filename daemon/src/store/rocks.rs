//! [`KvStore`] on RocksDB: one column family per [`Table`], write batches made durable by an
//! explicit WAL flush and fsync.

use super::{BatchOp, Entry, KvStore, Scan, StoreError, Table};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions,
};
use std::path::Path;

/// Bytes of memtables across all tables before RocksDB flushes the largest.
const MEMTABLE_BUDGET: usize = 64 << 20;
/// Bytes of data, index and filter blocks cached across all tables.
const BLOCK_CACHE: usize = 32 << 20;

/// A RocksDB database in a data directory. RocksDB's own LOCK file keeps a second process
/// from opening the same directory.
pub struct RocksStore {
    /// The database.
    db: DB,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
}

/// Test-only: names a file whose existence makes every sync fail (debug builds only).
pub const DANGER_FAIL_SYNC_IF: &str = "LOCKBOXD_DANGER_FAIL_SYNC_IF";

impl RocksStore {
    /// Table files RocksDB keeps open at most; beyond it, it closes and reopens them. Part of
    /// the process's file budget, which connections share (`Endpoint::reserve_files`).
    pub const MAX_OPEN_FILES: u64 = 512;

    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.set_max_open_files(Self::MAX_OPEN_FILES as i32);
        // Applied batches wait in RocksDB's WAL buffer until the group syncer writes and
        // fsyncs them in one go (`sync`), instead of a write(2) per batch.
        options.set_manual_wal_flush(true);
        // A fixed memory budget whatever the data size: memtables of all tables share
        // MEMTABLE_BUDGET, and blocks read from disk share one BLOCK_CACHE.
        options.set_db_write_buffer_size(MEMTABLE_BUDGET);
        let cache = Cache::new_lru_cache(BLOCK_CACHE);
        let mut table_options = BlockBasedOptions::default();
        table_options.set_block_cache(&cache);
        table_options.set_cache_index_and_filter_blocks(true);
        table_options.set_bloom_filter(10.0, false);
        let cfs = Table::ALL.iter().map(|t| {
            let mut cf = Options::default();
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf.set_write_buffer_size(MEMTABLE_BUDGET / 4);
            cf.set_block_based_table_factory(&table_options);
            ColumnFamilyDescriptor::new(t.name(), cf)
        });
        let db = DB::open_cf_descriptors(&options, dir, cfs).map_err(|e| {
            let text = e.into_string();
            if text.contains("lock") {
                StoreError::Open(format!(
                    "data directory {} is in use by another lockboxd ({text})",
                    dir.display()
                ))
            } else {
                StoreError::Open(format!("cannot open {}: {text}", dir.display()))
            }
        })?;
        Ok(Self { db })
    }

    fn cf(&self, table: Table) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(table.name())
            .ok_or_else(|| StoreError::Engine(format!("column family {} missing", table.name())))
    }
}

/// RocksDB properties summed over the tables for metrics: (property, series, help).
const FIGURES: [(&str, &str, &str); 3] = [
    (
        "rocksdb.estimate-live-data-size",
        "lockbox_store_live_data_bytes",
        "RocksDB's estimate of the live data stored, in bytes.",
    ),
    (
        "rocksdb.total-sst-files-size",
        "lockbox_store_sst_files_bytes",
        "Bytes in RocksDB's table files, obsolete data not yet compacted away included.",
    ),
    (
        "rocksdb.estimate-pending-compaction-bytes",
        "lockbox_store_pending_compaction_bytes",
        "RocksDB's estimate of the bytes compaction has yet to rewrite.",
    ),
];

impl KvStore for RocksStore {
    fn figures(&self) -> Vec<(&'static str, &'static str, u64)> {
        FIGURES
            .iter()
            .map(|(property, name, help)| {
                let total = Table::ALL
                    .iter()
                    .filter_map(|t| self.cf(*t).ok())
                    .filter_map(|cf| self.db.property_int_value_cf(cf, *property).ok().flatten())
                    .sum();
                (*name, *help, total)
            })
            .collect()
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(table)?, key).map_err(engine)
    }

    fn scan(&self, table: Table, scan: Scan<'_>) -> Result<Vec<Entry>, StoreError> {
        let cf = self.cf(table)?;
        // Where to start: the token itself (skipped below), or the edge of the prefix.
        let mut upper = scan.prefix.to_vec();
        upper.push(0xff);
        let (start, direction) = match (scan.after, scan.reverse) {
            (Some(after), false) => (after.to_vec(), Direction::Forward),
            (Some(after), true) => (after.to_vec(), Direction::Reverse),
            (None, false) => (scan.prefix.to_vec(), Direction::Forward),
            (None, true) => (upper, Direction::Reverse),
        };
        let mut out = Vec::with_capacity(scan.limit.min(1024));
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, direction))
        {
            let (key, value) = item.map_err(engine)?;
            if !key.starts_with(scan.prefix) {
                break;
            }
            if scan.after.is_some_and(|a| *a == *key) {
                continue;
            }
            if out.len() == scan.limit {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    fn write(&self, batch: super::Batch) -> Result<(), StoreError> {
        self.write_batch(batch)?;
        self.sync()
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(engine)
    }

    fn apply(&self, batch: super::Batch) -> Result<(), StoreError> {
        self.write_batch(batch)
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Test-only fault injection, absent from release builds: fail every sync while the
        // file the variable names exists, as a failing disk would.
        #[cfg(debug_assertions)]
        if let Some(trigger) = std::env::var_os(DANGER_FAIL_SYNC_IF)
            && std::path::Path::new(&trigger).exists()
        {
            return Err(StoreError::Engine(format!(
                "{DANGER_FAIL_SYNC_IF} is set and its file exists"
            )));
        }
        // Writes the WAL buffer out and fsyncs the WAL (every WAL file not yet synced,
        // should a memtable switch have started a new one).
        self.db.flush_wal(true).map_err(engine)
    }
}

impl RocksStore {
    /// Applies a batch to the memtables and the WAL buffer; durable at the next `sync`.
    fn write_batch(&self, batch: super::Batch) -> Result<(), StoreError> {
        // Sized up front: grown piecemeal, RocksDB's buffer was reallocated several times per
        // batch. Each record is a tag, a column family id and two length prefixes (varints,
        // at most 5 bytes each) around the key and value; the batch has a 12-byte header.
        let bytes = 12
            + batch
                .ops
                .iter()
                .map(|op| match op {
                    BatchOp::Put(_, k, v) => 16 + k.len() + v.len(),
                    BatchOp::Delete(_, k) => 11 + k.len(),
                })
                .sum::<usize>();
        let mut wb = WriteBatch::with_capacity_bytes(bytes);
        for op in batch.ops {
            match op {
                BatchOp::Put(t, k, v) => wb.put_cf(self.cf(t)?, k, v),
                BatchOp::Delete(t, k) => wb.delete_cf(self.cf(t)?, k),
            }
        }
        self.db
            .write_opt(wb, &WriteOptions::default())
            .map_err(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Batch;

    fn filled() -> (tempfile::TempDir, RocksStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        for k in ["a\0x1", "a\0x2", "a\0x3", "b\0x1", "a"] {
            batch.put(
                Table::Versions,
                k.as_bytes().to_vec(),
                k.as_bytes().to_vec(),
            );
        }
        store.write(batch).unwrap();
        (dir, store)
    }

    fn keys(entries: Vec<Entry>) -> Vec<String> {
        entries
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn prefix_scans_in_both_directions_with_tokens() {
        let (_dir, s) = filled();
        let scan = |after: Option<&[u8]>, reverse, limit| {
            keys(
                s.scan(
                    Table::Versions,
                    Scan {
                        prefix: b"a\0",
                        after,
                        reverse,
                        limit,
                    },
                )
                .unwrap(),
            )
        };
        assert_eq!(scan(None, false, 10), ["a\0x1", "a\0x2", "a\0x3"]);
        assert_eq!(scan(None, true, 10), ["a\0x3", "a\0x2", "a\0x1"]);
        assert_eq!(scan(None, false, 2), ["a\0x1", "a\0x2"]);
        assert_eq!(scan(Some(b"a\0x2"), false, 10), ["a\0x3"]);
        assert_eq!(scan(Some(b"a\0x2"), true, 10), ["a\0x1"]);
        assert!(scan(Some(b"a\0x3"), false, 10).is_empty());
    }

    #[test]
    fn batches_apply_puts_and_deletes_and_a_second_open_is_refused() {
        let (dir, s) = filled();
        let mut batch = Batch::default();
        batch.delete(Table::Versions, b"a\0x1".to_vec());
        batch.put(Table::Meta, b"k".to_vec(), b"v".to_vec());
        s.write(batch).unwrap();
        assert_eq!(s.get(Table::Versions, b"a\0x1").unwrap(), None);
        assert_eq!(s.get(Table::Meta, b"k").unwrap(), Some(b"v".to_vec()));
        let err = RocksStore::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("in use by another lockboxd"),
            "{err}"
        );
    }
}
