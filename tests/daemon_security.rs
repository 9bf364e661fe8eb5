//! lockboxd's security properties through real processes: crypto-shredding through a KMS
//! key, no plaintext in the data directory or logs, behaviour while lockbox-kms is down,
//! refusing a locked or newer data directory, and reads through both authorities on either
//! kind of runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta, Page};
use lockbox_client::proto::kms::{CreateSymmetricKey, ResourceRef, SymmetricAlgorithm};
use lockbox_client::proto::lockbox::AddVersion;
use lockbox_client::{KmsClient, error_code};
use lockbox_tests::payload::{map, secret, set, set_binary};
use lockbox_tests::{Daemon, Kms, KmsOptions, my_subject};
use std::collections::BTreeMap;
use std::path::Path;

const DAY: u64 = 24 * 3600;

/// Creates a KMS key in folder `apps` and grants `roles` on it to the test's user.
async fn kms_key(kms: &KmsClient, roles: &[&str]) -> String {
    let key = kms
        .create_symmetric_key(CreateSymmetricKey {
            folder_id: "apps".into(),
            name: "secrets".into(),
            description: String::new(),
            labels: BTreeMap::new(),
            default_algorithm: SymmetricAlgorithm::Aes256,
            rotation_period: None,
            deletion_protection: false,
        })
        .await
        .unwrap();
    let deltas = roles
        .iter()
        .map(|r| AccessBindingDelta {
            action: AccessBindingAction::Add,
            binding: AccessBinding {
                role_id: (*r).into(),
                subject: my_subject(),
            },
        })
        .collect();
    kms.update_access_bindings(ResourceRef::Key(key.id.clone()), deltas)
        .await
        .unwrap();
    key.id
}

#[tokio::test]
async fn destroying_the_kms_key_version_shreds_the_secret() {
    let (kms, daemon) = Daemon::with_kms("");
    let k = kms.client().await;
    let c = daemon.client().await;
    let key_id = kms_key(&k, &["kms.keys.encrypterDecrypter"]).await;
    let mut spec = secret("shreddable", vec![set("k", "v")]);
    spec.kms_key_id = key_id.clone();
    let id = c.create_secret(spec).await.unwrap().resource_id;
    let keyring = c
        .create_secret(secret("keyring", vec![set("k", "kept")]))
        .await
        .unwrap()
        .resource_id;
    assert_eq!(map(&c.get_payload(&id, None).await.unwrap())["k"], "v");
    assert_eq!(c.get_secret(&id).await.unwrap().kms_key_id, key_id);

    let old = k
        .get_symmetric_key(&key_id)
        .await
        .unwrap()
        .primary_version
        .id;
    k.rotate(&key_id).await.unwrap();
    assert_eq!(
        map(&c.get_payload(&id, None).await.unwrap())["k"],
        "v",
        "rotation keeps it readable"
    );
    // lockbox-kms holds the version for lockboxd until it is released by hand.
    let held = k
        .schedule_version_destruction(&key_id, &old, Some(DAY))
        .await
        .unwrap_err();
    assert_eq!(error_code(&held), ErrorCode::FailedPrecondition, "{held}");
    let out = kms.run([
        "kms",
        "symmetric-key",
        "schedule-version-destruction",
        &key_id,
        "--version-id",
        &old,
        "--pending-period",
        "1d",
        "--release-held-data",
    ]);
    lockbox_tests::success(&out);
    k.danger_advance_clock(DAY).await.unwrap();

    let err = c.get_payload(&id, None).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("destroyed"), "{err}");
    // Secrets on the service keyring are untouched.
    assert_eq!(
        map(&c.get_payload(&keyring, None).await.unwrap())["k"],
        "kept"
    );
    // New secrets on the key use its new primary version.
    let mut fresh = secret("fresh", vec![set("k", "fresh")]);
    fresh.kms_key_id = key_id.clone();
    let fresh = c.create_secret(fresh).await.unwrap().resource_id;
    assert_eq!(
        map(&c.get_payload(&fresh, None).await.unwrap())["k"],
        "fresh"
    );
}

#[tokio::test]
async fn the_kms_decides_for_the_calling_subject() {
    let (kms, daemon) = Daemon::with_kms("");
    let k = kms.client().await;
    let c = daemon.client().await;
    // Encrypt only: secrets can be created on the key but not read.
    let key_id = kms_key(&k, &["kms.keys.encrypter"]).await;
    let mut spec = secret("write-only", vec![set("k", "v")]);
    spec.kms_key_id = key_id.clone();
    let id = c.create_secret(spec).await.unwrap().resource_id;
    let err = c.get_payload(&id, None).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::PermissionDenied, "{err}");
    assert!(err.to_string().contains("kms.keys.decrypt"), "{err}");

    // No role at all: creating a secret on the key is refused.
    let bare = kms_key(&k, &[]).await;
    let mut spec = secret("no-role", vec![]);
    spec.kms_key_id = bare;
    let err = c.create_secret(spec).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::PermissionDenied, "{err}");
    let (secrets, _) = c.list_secrets("", Page::default()).await.unwrap();
    assert_eq!(secrets.len(), 1, "the refused secret was not created");

    // A key that does not exist.
    let mut spec = secret("ghost", vec![set("k", "v")]);
    spec.kms_key_id = "abj00000000000000000".into();
    assert_eq!(
        error_code(&c.create_secret(spec).await.unwrap_err()),
        ErrorCode::NotFound
    );
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test]
async fn plaintext_never_reaches_the_data_directory_or_the_logs() {
    let (mut kms, mut daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let canary = "CANARY-7f3a9c1e-plaintext-must-not-leak";
    let binary_canary = b"\x00BINARY-CANARY-d41d8cd9\xff";
    let id = c
        .create_secret(secret(
            "visible-metadata-name",
            vec![set("text", canary), set_binary("bin", binary_canary)],
        ))
        .await
        .unwrap()
        .resource_id;
    c.add_version(AddVersion {
        secret_id: id.clone(),
        description: String::new(),
        payload_entries: vec![set("again", canary)],
        base_version_id: None,
    })
    .await
    .unwrap();
    assert_eq!(
        map(&c.get_payload(&id, None).await.unwrap())["again"],
        canary
    );
    drop(c);
    daemon.stop();
    kms.stop();

    let data = daemon.data_dir();
    // Control: metadata is stored in the clear, so the scan does see the store's contents.
    assert!(
        !files_containing(&data, b"visible-metadata-name").is_empty(),
        "the scan found no metadata either; it is not looking at the store"
    );
    assert_eq!(
        files_containing(&data, canary.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(files_containing(&data, binary_canary), Vec::<String>::new());
    assert_eq!(
        files_containing(kms.dir(), canary.as_bytes()),
        Vec::<String>::new(),
        "logs and KMS state"
    );
}

#[tokio::test]
async fn while_the_kms_is_down_metadata_and_keyring_secrets_still_work() {
    let (mut kms, daemon) = Daemon::with_kms("");
    let k = kms.client().await;
    let c = daemon.client().await;
    let key_id = kms_key(&k, &["kms.keys.encrypterDecrypter"]).await;
    let keyring = c
        .create_secret(secret("local", vec![set("k", "local")]))
        .await
        .unwrap()
        .resource_id;
    let mut spec = secret("remote", vec![set("k", "remote")]);
    spec.kms_key_id = key_id.clone();
    let remote = c.create_secret(spec.clone()).await.unwrap().resource_id;
    drop(k);
    kms.stop();

    assert_eq!(c.get_secret(&remote).await.unwrap().name, "remote");
    assert_eq!(
        map(&c.get_payload(&keyring, None).await.unwrap())["k"],
        "local"
    );
    c.create_secret(secret("made-while-down", vec![set("k", "x")]))
        .await
        .unwrap();
    let err = c.get_payload(&remote, None).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::Unavailable, "{err}");
    assert!(err.to_string().contains("lockbox-kms"), "{err}");
    spec.name = "remote-2".into();
    assert_eq!(
        error_code(&c.create_secret(spec).await.unwrap_err()),
        ErrorCode::Unavailable
    );

    kms.start();
    // The daemon reconnects by itself on the next call.
    assert_eq!(
        map(&c.get_payload(&remote, None).await.unwrap())["k"],
        "remote"
    );
}

#[tokio::test]
async fn a_locked_or_newer_data_directory_is_refused() {
    let (_kms, mut daemon) = Daemon::with_kms("");
    let stderr = daemon.start_expecting_failure();
    assert!(stderr.contains("in use by another lockboxd"), "{stderr}");
    daemon.stop();

    {
        use lockbox_daemon::store::records::Records;
        use lockbox_daemon::store::rocks::RocksStore;
        let records = Records::new(std::sync::Arc::new(
            RocksStore::open(&daemon.data_dir()).unwrap(),
        ))
        .unwrap();
        let mut batch = lockbox_daemon::store::Batch::default();
        records.put_schema(&mut batch, lockbox_daemon::model::SCHEMA + 1);
        records.commit(batch).unwrap();
    }
    let stderr = daemon.start_expecting_failure();
    assert!(
        stderr.contains("newer than this lockboxd understands"),
        "{stderr}"
    );
}

/// Concurrent additions over the current version all land: a version sealed while another
/// became current is built again on that one, so none loses another's entry. The KMS-keyed
/// secret makes the race real: sealing waits for lockbox-kms, so other additions commit
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_additions_keep_every_change() {
    let (kms, daemon) = Daemon::with_kms("");
    let k = kms.client().await;
    let c = daemon.client().await;
    let key_id = kms_key(&k, &["kms.keys.encrypterDecrypter"]).await;
    let mut spec = secret("shared", vec![set("start", "yes")]);
    spec.kms_key_id = key_id;
    let kms_keyed = c.create_secret(spec).await.unwrap().resource_id;
    let keyring = c
        .create_secret(secret("keyring", vec![set("start", "yes")]))
        .await
        .unwrap()
        .resource_id;
    for id in [kms_keyed, keyring] {
        // One connection each: a connection's requests are answered in order.
        let mut clients = Vec::new();
        for _ in 0..16 {
            clients.push(daemon.client().await);
        }
        let writers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let id = id.clone();
                tokio::spawn(async move {
                    c.add_version(AddVersion {
                        secret_id: id,
                        description: String::new(),
                        payload_entries: vec![set(&format!("k{i}"), "v")],
                        base_version_id: None,
                    })
                    .await
                    .unwrap();
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let payload = map(&c.get_payload(&id, None).await.unwrap());
        assert_eq!(payload.len(), 17, "{payload:?}");
        for i in 0..16 {
            assert_eq!(payload[&format!("k{i}")], "v");
        }
    }
}

/// One worker (the default on two cores) runs every task on one thread; more run tokio's
/// multi-threaded scheduler. Concurrent keyring and KMS-keyed reads and an AddVersion work on
/// both, with both daemons configured alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_work_on_either_kind_of_runtime() {
    for workers in [1, 2] {
        let config = format!("worker_threads = {workers}\n");
        let mut kms = Kms::init(KmsOptions {
            enrol_daemon: true,
            config: config.clone(),
            ..KmsOptions::default()
        });
        kms.start();
        let mut daemon = Daemon::new(&kms, &config);
        daemon.start();
        let expected_workers = if workers == 1 { 0 } else { workers };
        assert_eq!(daemon.runtime_workers(), expected_workers, "{config}");

        let k = kms.client().await;
        let c = daemon.client().await;
        let mut spec = secret("kms-keyed", vec![set("k", "kms")]);
        spec.kms_key_id = kms_key(&k, &["kms.keys.encrypterDecrypter"]).await;
        let keyed = c.create_secret(spec).await.unwrap().resource_id;
        let keyring = c
            .create_secret(secret("keyring", vec![set("k", "keyring")]))
            .await
            .unwrap()
            .resource_id;
        let reads: Vec<_> = (0..32)
            .map(|i| {
                let c = c.clone();
                let (id, want) = if i % 2 == 0 {
                    (keyed.clone(), "kms")
                } else {
                    (keyring.clone(), "keyring")
                };
                tokio::spawn(async move { (map(&c.get_payload(&id, None).await.unwrap()), want) })
            })
            .collect();
        for read in reads {
            let (payload, want) = read.await.unwrap();
            assert_eq!(payload["k"], want, "{config}");
        }
        c.add_version(AddVersion {
            secret_id: keyed.clone(),
            description: String::new(),
            payload_entries: vec![set("k", "second")],
            base_version_id: None,
        })
        .await
        .unwrap();
        assert_eq!(
            map(&c.get_payload(&keyed, None).await.unwrap())["k"],
            "second",
            "{config}"
        );
    }
}
