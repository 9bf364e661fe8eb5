//! Criterion benches of lockboxd's payload read path below the service: the store's get of
//! a version record (RocksDB + decode), the keyring's unwrap of the data key, and opening the
//! sealed entries — the work a payload Get does besides the socket and authorization.
#![allow(clippy::unwrap_used)] // a bench that cannot set up should abort
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use lockbox_daemon::envelope::{self, Dek, KEYRING_KEY_ID, Keyring};
use lockbox_daemon::model::{
    Entry, SealedPayload, VersionMeta, VersionRecord, VersionStatus, WrappedDek,
};
use lockbox_daemon::store::Batch;
use lockbox_daemon::store::records::Records;
use lockbox_daemon::store::rocks::RocksStore;
use std::sync::Arc;

const SECRET: &str = "e6q01k82q5kevjajpei9";
const VERSION: &str = "e6v01k82q5kf0339olii";

fn bench(c: &mut Criterion) {
    let keyring = Keyring::generate();
    let dek = Dek::generate();
    let entries = vec![Entry {
        key: "value".into(),
        text: true,
        value: vec![b'x'; 64],
    }];
    let ciphertext =
        envelope::seal_entries(&dek, SECRET, VERSION, KEYRING_KEY_ID, &entries).unwrap();
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
                dek: WrappedDek::Keyring(wrapped.clone()),
                ciphertext: ciphertext.clone(),
            }),
        },
    );
    records.commit(batch).unwrap();

    let mut group = c.benchmark_group("payload_read_path_64_byte_value");
    group.bench_function("store_get_version", |b| {
        b.iter(|| {
            records
                .version(black_box(SECRET), black_box(VERSION))
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("keyring_unwrap_dek", |b| {
        b.iter(|| {
            keyring
                .unwrap(black_box(&wrapped), SECRET, VERSION)
                .unwrap()
        })
    });
    group.bench_function("open_entries", |b| {
        b.iter(|| {
            envelope::open_entries(
                &dek,
                SECRET,
                VERSION,
                KEYRING_KEY_ID,
                black_box(&ciphertext),
            )
            .unwrap()
        })
    });
    group.bench_function("all_three", |b| {
        b.iter(|| {
            let v = records.version(SECRET, VERSION).unwrap().unwrap();
            let sealed = v.sealed.unwrap();
            let WrappedDek::Keyring(w) = &sealed.dek else {
                unreachable!("stored above")
            };
            let dek = keyring.unwrap(w, SECRET, VERSION).unwrap();
            envelope::open_entries(&dek, SECRET, VERSION, KEYRING_KEY_ID, &sealed.ciphertext)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
