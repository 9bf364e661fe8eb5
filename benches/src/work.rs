//! The work limit: what a payload read of a service-keyring secret costs lockboxd with no
//! socket, runtime or authorization — a RocksDB get of the version record, the keyring's
//! unwrap of its data key, and the AES-GCM open of its entries into an answer buffer, rewritten
//! as lockboxd sends them — on a real RocksDB store.

use lockbox_daemon::crypto::envelope::{self, Dek, KEYRING_KEY_ID, PayloadIds};
use lockbox_daemon::crypto::keyring::Keyring;
use lockbox_daemon::model::entries::{self, EntriesLayout, Entry};
use lockbox_daemon::model::{SealedPayload, VersionMeta, VersionRecord, VersionStatus, WrappedDek};
use lockbox_daemon::server::payload::entries_to_wire;
use lockbox_daemon::store::Batch;
use lockbox_daemon::store::records::Records;
use lockbox_daemon::store::rocks::RocksStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The secret the fixture stores.
pub const SECRET: &str = "e6q01k82q5kevjajpei9";
/// Its version.
pub const VERSION: &str = "e6v01k82q5kf0339olii";
/// What the fixture's payload is bound to.
pub const IDS: PayloadIds<'static> = PayloadIds {
    secret_id: SECRET,
    version_id: VERSION,
    wrapping_key_id: KEYRING_KEY_ID,
};

/// A store holding one sealed version, and the keys to read it.
pub struct Fixture {
    /// Keeps the store's directory alive.
    _dir: tempfile::TempDir,
    /// The store.
    pub records: Records,
    /// The service keyring.
    pub keyring: Keyring,
    /// The version's data key, unwrapped.
    pub dek: Dek,
    /// The keyring-wrapped data key.
    pub wrapped: Vec<u8>,
    /// The sealed entries.
    pub ciphertext: Vec<u8>,
}

impl Fixture {
    /// A fresh store with one version of one entry of `value_size` bytes.
    pub fn new(value_size: usize) -> Self {
        let keyring = Keyring::generate();
        let dek = Dek::generate();
        let entries = vec![Entry {
            key: "value".into(),
            text: true,
            value: vec![b'x'; value_size],
        }];
        let ciphertext =
            envelope::seal_payload(&dek.cipher(), IDS, &entries::encode(&entries)).unwrap();
        let wrapped = keyring.wrap(&dek, SECRET, VERSION).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let records = Records::new(Arc::new(RocksStore::open(dir.path()).unwrap())).unwrap();
        let mut batch = Batch::default();
        records.put_version(
            &mut batch,
            &VersionRecord {
                meta: VersionMeta {
                    id: VERSION.into(),
                    secret_id: SECRET.into(),
                    created_at: 0,
                    destroy_at: None,
                    description: String::new(),
                    status: VersionStatus::Active,
                    entry_keys: vec!["value".into()],
                },
                sealed: Some(SealedPayload {
                    layout: EntriesLayout::CURRENT,
                    dek: WrappedDek::Keyring(wrapped.clone()),
                    ciphertext: ciphertext.clone(),
                }),
            },
        );
        records.commit(batch).unwrap();
        Self {
            _dir: dir,
            records,
            keyring,
            dek,
            wrapped,
            ciphertext,
        }
    }

    /// One read: get, unwrap, open into `out` (cleared first) and rewrite for the wire, as the
    /// read path does. Returns the bytes written.
    pub fn read(&self, out: &mut Vec<u8>) -> usize {
        let v = self.records.version(SECRET, VERSION).unwrap().unwrap();
        let sealed = v.sealed.unwrap();
        let WrappedDek::Keyring(w) = &sealed.dek else {
            unreachable!("stored keyring-wrapped")
        };
        let dek = self.keyring.unwrap(w, SECRET, VERSION).unwrap();
        out.clear();
        envelope::open_payload_into(&dek.cipher(), IDS, &sealed.ciphertext, out).unwrap();
        entries_to_wire(sealed.layout, out).unwrap();
        out.len()
    }
}

/// Reads as fast as `threads` threads can for `duration`; returns reads per second.
pub fn limit(value_size: usize, threads: usize, duration: Duration) -> f64 {
    let fixture = Arc::new(Fixture::new(value_size));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (fixture, stop, reads) = (fixture.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let (mut n, mut out) = (0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(fixture.read(&mut out));
                    n += 1;
                }
                reads.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    reads.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
