//! Criterion benches of lockboxd below the socket: the payload read path (the store's get of
//! a version record, the keyring's unwrap of the data key, opening the sealed entries), the
//! envelope's sealing, and the authorization check with 1 and 1,000 bindings on a folder.
#![allow(clippy::unwrap_used)] // a bench that cannot set up should abort
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use lockbox_benches::work::{Fixture, IDS, SECRET, VERSION};
use lockbox_daemon::crypto::envelope;
use lockbox_daemon::iam::bindings::{allows, binding_map};
use lockbox_daemon::iam::roles::Permission;
use lockbox_daemon::model::entries::{self, EntriesLayout, Entry};
use lockbox_daemon::model::{Binding, Resource};
use lockbox_daemon::server::payload::entries_to_wire;
use lockbox_proto::Principal;

fn read_path(c: &mut Criterion) {
    let f = Fixture::new(64);
    let mut group = c.benchmark_group("payload_read_path_64_byte_value");
    group.bench_function("store_get_version", |b| {
        b.iter(|| {
            f.records
                .version(black_box(SECRET), black_box(VERSION))
                .unwrap()
                .unwrap()
        })
    });
    group.bench_function("keyring_unwrap_dek", |b| {
        b.iter(|| {
            f.keyring
                .unwrap(black_box(&f.wrapped), SECRET, VERSION)
                .unwrap()
        })
    });
    // Opening as the read path does: decrypted into a reused answer buffer, as sent, with
    // the data key's cipher built afresh or cached.
    let cipher = f.dek.cipher();
    let mut out = Vec::new();
    let mut open_as_sent = |cached: bool| {
        let fresh;
        let dek = if cached {
            &cipher
        } else {
            fresh = f.dek.cipher();
            &fresh
        };
        out.clear();
        envelope::open_payload_into(dek, IDS, black_box(&f.ciphertext), &mut out).unwrap();
        entries_to_wire(EntriesLayout::V0, &mut out).unwrap();
        out.len()
    };
    group.bench_function("open_entries", |b| b.iter(|| open_as_sent(false)));
    group.bench_function("open_entries_cached_dek", |b| b.iter(|| open_as_sent(true)));
    let mut out = Vec::new();
    group.bench_function("all_three", |b| b.iter(|| f.read(&mut out)));
    group.finish();

    let entries = vec![Entry {
        key: "value".into(),
        text: true,
        value: vec![b'x'; 64],
    }];
    c.bench_function("envelope/seal_entries_64_byte_value", |b| {
        b.iter(|| {
            let plaintext = entries::encode(black_box(&entries));
            envelope::seal_payload(&f.dek.cipher(), IDS, &plaintext).unwrap()
        })
    });
}

fn authorization(c: &mut Criterion) {
    let chain = [
        Resource::Secret(SECRET.into()),
        Resource::Folder("b1f01k82q5kevjajpei9".into()),
        Resource::Cloud("b1g01k82q5kevjajpei9".into()),
        Resource::Organization("bpf01k82q5kevjajpei9".into()),
    ];
    let caller = Principal {
        subject: "user:app".into(),
        groups: vec!["group:app".into(), "group:deploy".into()],
    };
    let mut group = c.benchmark_group("authorize_payload_get");
    for n in [1usize, 1000] {
        // The caller's binding is on the folder among n-1 others'.
        let mut bindings: Vec<Binding> = (1..n)
            .map(|i| Binding {
                role: "lockbox.auditor".into(),
                subject: format!("user:other-{i}"),
            })
            .collect();
        bindings.push(Binding {
            role: "lockbox.payloadViewer".into(),
            subject: "group:app".into(),
        });
        let map = binding_map(vec![(chain[1].clone(), bindings)]);
        group.bench_function(format!("allowed_{n}_folder_bindings"), |b| {
            b.iter(|| {
                assert!(allows(
                    &map,
                    black_box(&caller),
                    black_box(&chain),
                    Permission::GetPayload
                ))
            })
        });
        group.bench_function(format!("denied_{n}_folder_bindings"), |b| {
            b.iter(|| {
                assert!(!allows(
                    &map,
                    black_box(&caller),
                    black_box(&chain),
                    Permission::Delete
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, read_path, authorization);
criterion_main!(benches);
