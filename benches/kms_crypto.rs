//! Criterion benches of the KMS's in-process hot path: encrypting and decrypting a 32-byte
//! data key through the service layer (authorization included), and the bare AES-GCM
//! ciphertext format underneath it.
#![allow(clippy::unwrap_used)] // a bench that cannot set up should abort
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use lockbox_kms::access::{Groups, Principal};
use lockbox_kms::crypto::{self, Algorithm, KeyMaterial, VersionCipher};
use lockbox_kms::keystore::Keystore;
use lockbox_kms::model::{Binding, Resource, State};
use lockbox_kms::seal::UnsealMaterial;
use lockbox_kms::service::{Caller, KeyMetaSpec, KeySpec, Kms, Quotas};
use lockbox_rpc::clock::TimeSource;
use std::collections::BTreeMap;

const SUBJECT: &str = "user:bench";

fn service(dir: &std::path::Path) -> (Kms, String) {
    let mut state = State::new(&[SUBJECT.to_owned()], &[]);
    state
        .bindings
        .entry(Resource::Root)
        .or_default()
        .insert(Binding {
            role: "kms.keys.encrypterDecrypter".into(),
            subject: SUBJECT.into(),
        });
    let material = UnsealMaterial::generate();
    let keystore = Keystore::new(dir.join("keystore"), material);
    let kms = Kms::new(state, keystore, TimeSource::System, Quotas::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let key = runtime
        .block_on(kms.create_symmetric_key(
            &caller(),
            KeySpec {
                meta: KeyMetaSpec {
                    folder_id: "bench".into(),
                    name: String::new(),
                    description: String::new(),
                    labels: BTreeMap::new(),
                    deletion_protection: false,
                },
                algorithm: Algorithm::Aes256,
                rotation_period: None,
            },
        ))
        .unwrap();
    (kms, key.meta.id)
}

fn caller() -> Caller<'static> {
    Caller {
        principal: Principal {
            subject: SUBJECT,
            groups: Groups::Owned(&[]),
        },
        relay: None,
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (kms, key_id) = service(dir.path());
    let data_key = [7u8; 32];
    let ciphertext = kms
        .encrypt(&caller(), &key_id, None, b"context", &data_key)
        .unwrap()
        .ciphertext;

    let mut group = c.benchmark_group("kms_service_32_byte_data_key");
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            kms.encrypt(&caller(), &key_id, None, b"context", black_box(&data_key))
                .unwrap()
        })
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| {
            kms.decrypt(&caller(), &key_id, b"context", black_box(&ciphertext))
                .unwrap()
        })
    });
    group.finish();

    let cipher = VersionCipher::new(Algorithm::Aes256, &KeyMaterial::random(32)).unwrap();
    let ct = crypto::encrypt(&cipher, "key", "version", b"context", &data_key).unwrap();
    let mut group = c.benchmark_group("aes_256_gcm_32_byte_data_key");
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            crypto::encrypt(&cipher, "key", "version", b"context", black_box(&data_key)).unwrap()
        })
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| crypto::decrypt(&cipher, "key", "version", b"context", black_box(&ct)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
