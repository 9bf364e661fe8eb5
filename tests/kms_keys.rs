//! Symmetric keys through the client library: lifecycle, rotation, destruction, crypto and
//! validation, against a real `lockbox-kms`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta, Page};
use lockbox_client::proto::kms::{
    CreateSymmetricKey, KeyStatus, ResourceRef, SymmetricAlgorithm, UpdateSymmetricKey,
    VersionStatus,
};
use lockbox_client::{CallError, KmsClient, error_code};
use lockbox_tests::{Kms, KmsOptions};
use std::collections::BTreeMap;

const DAY: u64 = 24 * 3600;

fn code<T: std::fmt::Debug>(r: Result<T, CallError>) -> ErrorCode {
    error_code(&r.expect_err("expected an error"))
}

fn spec(folder: &str) -> CreateSymmetricKey {
    CreateSymmetricKey {
        folder_id: folder.into(),
        name: "test-key".into(),
        description: "for tests".into(),
        labels: BTreeMap::from([("env".into(), "test".into())]),
        default_algorithm: SymmetricAlgorithm::Aes256,
        rotation_period: None,
        deletion_protection: false,
    }
}

/// Starts a KMS and grants the test user crypto rights on folder `f`.
async fn kms_with_crypto(config: &str) -> (Kms, KmsClient) {
    let mut kms = Kms::init(KmsOptions {
        config: config.into(),
        ..KmsOptions::default()
    });
    kms.start();
    let client = kms.client().await;
    let me = client.subject().to_owned();
    client
        .update_access_bindings(
            ResourceRef::Folder("f".into()),
            vec![AccessBindingDelta {
                action: AccessBindingAction::Add,
                binding: AccessBinding {
                    role_id: "kms.keys.encrypterDecrypter".into(),
                    subject: me,
                },
            }],
        )
        .await
        .unwrap();
    (kms, client)
}

#[tokio::test]
async fn rotation_keeps_old_ciphertexts_decryptable() {
    let (_kms, c) = kms_with_crypto("").await;
    let key = c.create_symmetric_key(spec("f")).await.unwrap();
    let first = c
        .encrypt(&key.id, None, b"ctx", b"old secret")
        .await
        .unwrap();
    assert_eq!(first.version_id, key.primary_version.id);

    let rotated = c.rotate(&key.id).await.unwrap();
    assert_ne!(rotated.primary_version.id, key.primary_version.id);
    assert!(rotated.rotated_at.is_some());
    let second = c
        .encrypt(&key.id, None, b"ctx", b"new secret")
        .await
        .unwrap();
    assert_eq!(second.version_id, rotated.primary_version.id);

    let old = c.decrypt(&key.id, b"ctx", &first.ciphertext).await.unwrap();
    assert_eq!(old.plaintext.expose(), b"old secret");
    assert_eq!(old.version_id, key.primary_version.id);
    let new = c
        .decrypt(&key.id, b"ctx", &second.ciphertext)
        .await
        .unwrap();
    assert_eq!(new.plaintext.expose(), b"new secret");

    // Explicit versions work for encryption too.
    let pinned = c
        .encrypt(&key.id, Some(&key.primary_version.id), b"", b"pinned")
        .await
        .unwrap();
    assert_eq!(pinned.version_id, key.primary_version.id);

    let (versions, next) = c.list_versions(&key.id, Page::default()).await.unwrap();
    assert!(next.is_empty());
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].id, rotated.primary_version.id, "newest first");
    assert!(versions[0].primary && !versions[1].primary);
}

#[tokio::test]
async fn destroyed_versions_cannot_decrypt_and_scheduled_ones_still_can() {
    let (_kms, c) = kms_with_crypto("").await;
    let key = c.create_symmetric_key(spec("f")).await.unwrap();
    let v1 = key.primary_version.id.clone();
    let ct = c
        .encrypt(&key.id, None, b"", b"doomed")
        .await
        .unwrap()
        .ciphertext;

    assert_eq!(
        code(c.schedule_version_destruction(&key.id, &v1, None).await),
        ErrorCode::FailedPrecondition,
        "the primary version cannot be scheduled"
    );
    c.rotate(&key.id).await.unwrap();
    assert_eq!(
        code(
            c.schedule_version_destruction(&key.id, &v1, Some(3600))
                .await
        ),
        ErrorCode::InvalidArgument,
        "pending period under a day"
    );
    let scheduled = c
        .schedule_version_destruction(&key.id, &v1, Some(2 * DAY))
        .await
        .unwrap();
    assert_eq!(scheduled.status, VersionStatus::ScheduledForDestruction);
    assert!(scheduled.destroy_at.is_some());

    // Cancel and reschedule: cancellation restores the version.
    let cancelled = c.cancel_version_destruction(&key.id, &v1).await.unwrap();
    assert_eq!(cancelled.status, VersionStatus::Active);
    c.schedule_version_destruction(&key.id, &v1, Some(2 * DAY))
        .await
        .unwrap();

    c.danger_advance_clock(DAY).await.unwrap();
    let still = c.decrypt(&key.id, b"", &ct).await.unwrap();
    assert_eq!(
        still.plaintext.expose(),
        b"doomed",
        "readable until destroy_at"
    );

    c.danger_advance_clock(DAY + 1).await.unwrap();
    let err = c.decrypt(&key.id, b"", &ct).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("destroyed"), "{err}");
    let (versions, _) = c.list_versions(&key.id, Page::default()).await.unwrap();
    let destroyed = versions.iter().find(|v| v.id == v1).unwrap();
    assert_eq!(destroyed.status, VersionStatus::Destroyed);
    assert_eq!(
        code(c.cancel_version_destruction(&key.id, &v1).await),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(c.set_primary_version(&key.id, &v1).await),
        ErrorCode::FailedPrecondition
    );
}

#[tokio::test]
async fn automatic_rotation_follows_the_clock() {
    let (_kms, c) = kms_with_crypto("").await;
    let mut s = spec("f");
    s.rotation_period = Some(DAY);
    let key = c.create_symmetric_key(s).await.unwrap();
    c.danger_advance_clock(DAY - 10).await.unwrap();
    assert_eq!(
        c.get_symmetric_key(&key.id)
            .await
            .unwrap()
            .primary_version
            .id,
        key.primary_version.id
    );
    c.danger_advance_clock(10).await.unwrap();
    let after = c.get_symmetric_key(&key.id).await.unwrap();
    assert_ne!(after.primary_version.id, key.primary_version.id);
    assert!(after.rotated_at.is_some());
}

#[tokio::test]
async fn crypto_rejects_wrong_context_wrong_key_and_tampering() {
    let (_kms, c) = kms_with_crypto("").await;
    let a = c.create_symmetric_key(spec("f")).await.unwrap();
    let b = c.create_symmetric_key(spec("f")).await.unwrap();
    let ct = c
        .encrypt(&a.id, None, b"ctx", b"secret")
        .await
        .unwrap()
        .ciphertext;

    assert_eq!(
        code(c.decrypt(&a.id, b"other", &ct).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(c.decrypt(&b.id, b"ctx", &ct).await),
        ErrorCode::InvalidArgument
    );
    let mut tampered = ct.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    assert_eq!(
        code(c.decrypt(&a.id, b"ctx", &tampered).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(c.decrypt(&a.id, b"ctx", b"garbage").await),
        ErrorCode::InvalidArgument
    );

    // Re-encryption moves the ciphertext to key b without exposing it.
    let moved = c
        .re_encrypt(&b.id, None, b"new", &a.id, b"ctx", &ct)
        .await
        .unwrap();
    assert_eq!(moved.source_version_id, a.primary_version.id);
    let plain = c
        .decrypt(&b.id, b"new", &moved.ciphertext.ciphertext)
        .await
        .unwrap();
    assert_eq!(plain.plaintext.expose(), b"secret");

    // Data keys: plaintext matches the ciphertext; skip_plaintext omits it.
    let dk = c
        .generate_data_key(&a.id, None, b"dk", SymmetricAlgorithm::Aes128, false)
        .await
        .unwrap();
    let dk_plain = dk.plaintext.unwrap();
    assert_eq!(dk_plain.len(), 16);
    let back = c.decrypt(&a.id, b"dk", &dk.ciphertext).await.unwrap();
    assert_eq!(back.plaintext.expose(), dk_plain.expose());
    let skipped = c
        .generate_data_key(&a.id, None, b"", SymmetricAlgorithm::Aes256, true)
        .await
        .unwrap();
    assert!(skipped.plaintext.is_none());

    // Limits.
    assert_eq!(
        code(c.encrypt(&a.id, None, b"", &vec![0u8; 32769]).await),
        ErrorCode::InvalidArgument
    );
    c.encrypt(&a.id, None, b"", &vec![0u8; 32768])
        .await
        .unwrap();
    assert_eq!(
        code(c.encrypt(&a.id, None, &vec![0u8; 8193], b"x").await),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn inactive_keys_refuse_crypto_and_protected_keys_refuse_deletion() {
    let (_kms, c) = kms_with_crypto("").await;
    let mut s = spec("f");
    s.deletion_protection = true;
    let key = c.create_symmetric_key(s).await.unwrap();
    let ct = c
        .encrypt(&key.id, None, b"", b"x")
        .await
        .unwrap()
        .ciphertext;
    let update = |mask: &[&str], status: KeyStatus, protection: bool| UpdateSymmetricKey {
        key_id: key.id.clone(),
        update_mask: mask.iter().map(|s| s.to_string()).collect(),
        name: "renamed".into(),
        description: String::new(),
        labels: BTreeMap::new(),
        status,
        default_algorithm: SymmetricAlgorithm::Aes128,
        rotation_period: None,
        deletion_protection: protection,
    };
    let inactive = c
        .update_symmetric_key(update(&["status", "name"], KeyStatus::Inactive, true))
        .await
        .unwrap();
    assert_eq!(inactive.status, KeyStatus::Inactive);
    assert_eq!(inactive.name, "renamed");
    assert_eq!(
        inactive.default_algorithm,
        SymmetricAlgorithm::Aes256,
        "not in the mask"
    );
    assert_eq!(
        code(c.decrypt(&key.id, b"", &ct).await),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(c.encrypt(&key.id, None, b"", b"x").await),
        ErrorCode::FailedPrecondition
    );

    assert_eq!(
        code(c.delete_symmetric_key(&key.id).await),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(
            c.update_symmetric_key(update(&["colour"], KeyStatus::Active, true))
                .await
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            c.update_symmetric_key(update(&[], KeyStatus::Active, true))
                .await
        ),
        ErrorCode::InvalidArgument
    );
    c.update_symmetric_key(update(&["deletion_protection"], KeyStatus::Active, false))
        .await
        .unwrap();
    c.delete_symmetric_key(&key.id).await.unwrap();
    assert_eq!(
        code(c.get_symmetric_key(&key.id).await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn validation_errors_name_the_field_and_change_nothing() {
    let (_kms, c) = kms_with_crypto("").await;
    let cases: Vec<(CreateSymmetricKey, &str)> = vec![
        (
            CreateSymmetricKey {
                folder_id: String::new(),
                ..spec("f")
            },
            "folder_id",
        ),
        (
            CreateSymmetricKey {
                folder_id: "Bad Folder".into(),
                ..spec("f")
            },
            "folder_id",
        ),
        (
            CreateSymmetricKey {
                name: "Bad_Name".into(),
                ..spec("f")
            },
            "name",
        ),
        (
            CreateSymmetricKey {
                name: "a".repeat(101),
                ..spec("f")
            },
            "name",
        ),
        (
            CreateSymmetricKey {
                description: "d".repeat(1025),
                ..spec("f")
            },
            "description",
        ),
        (
            CreateSymmetricKey {
                labels: BTreeMap::from([("Upper".into(), "x".into())]),
                ..spec("f")
            },
            "labels",
        ),
        (
            CreateSymmetricKey {
                labels: (0..65).map(|i| (format!("k{i}"), String::new())).collect(),
                ..spec("f")
            },
            "labels",
        ),
        (
            CreateSymmetricKey {
                rotation_period: Some(60),
                ..spec("f")
            },
            "rotation_period",
        ),
    ];
    for (bad, field) in cases {
        let err = c.create_symmetric_key(bad).await.unwrap_err();
        assert_eq!(error_code(&err), ErrorCode::InvalidArgument, "{err}");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let (keys, _) = c.list_symmetric_keys("f", Page::default()).await.unwrap();
    assert!(keys.is_empty(), "no failed create left a key behind");

    assert_eq!(
        code(c.get_symmetric_key("not-an-id").await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(c.get_symmetric_key("abj00000000000000000").await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(
            c.list_symmetric_keys(
                "f",
                Page {
                    page_size: 1001,
                    page_token: String::new()
                }
            )
            .await
        ),
        ErrorCode::InvalidArgument
    );
}

/// Quotas are named in their refusals with usage and limit, overridable per folder, listed
/// with their usage, and a destroyed version frees its place.
#[tokio::test]
async fn quotas_are_enforced_with_resource_exhausted() {
    let (kms, c) = kms_with_crypto(
        "[quotas]\nkeys_per_folder = 3\nversions_per_key = 2\n\
         [quotas.folders.other]\nkeys_per_folder = 1\n",
    )
    .await;
    let key = c.create_symmetric_key(spec("f")).await.unwrap();
    c.create_symmetric_key(spec("f")).await.unwrap();
    c.create_symmetric_key(spec("f")).await.unwrap();
    let err = c.create_symmetric_key(spec("f")).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::ResourceExhausted);
    assert!(
        err.to_string()
            .contains("quota kms.keys.count exceeded: folder f uses 3 of 3"),
        "{err}"
    );
    c.create_symmetric_key(spec("other")).await.unwrap();
    let err = c.create_symmetric_key(spec("other")).await.unwrap_err();
    assert!(
        err.to_string().contains("folder other uses 1 of 1"),
        "{err}"
    );

    // The first version, no longer primary once rotated.
    let first = key.primary_version.id.clone();
    c.rotate(&key.id).await.unwrap();
    let err = c.rotate(&key.id).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::ResourceExhausted);
    let limit = format!(
        "quota kms.symmetricKeyVersions.count exceeded: key {} uses 2 of 2",
        key.id
    );
    assert!(err.to_string().contains(&limit), "{err}");

    let out = kms.run([
        "--format",
        "json",
        "kms",
        "quota",
        "list",
        "--folder-id",
        "f",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let quota = |name: &str| {
        list["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(quota("kms.keys.count")["usage"], 3);
    assert_eq!(quota("kms.keys.count")["limit"], 3);
    assert_eq!(quota("kms.symmetricKeyVersions.count")["usage"], 2);
    assert_eq!(
        quota("kms.symmetricKeyVersions.count")["resource"],
        format!("key {}", key.id)
    );

    // A destroyed version no longer counts.
    c.schedule_version_destruction(&key.id, &first, Some(86_400))
        .await
        .unwrap();
    c.danger_advance_clock(86_400).await.unwrap();
    c.rotate(&key.id).await.unwrap();

    // Quotas are metadata of the folder: kms.keys.get there.
    kms.open_socket_to_nobody();
    let denied = lockbox_tests::failure(
        &kms.run_as_nobody(&["kms", "quota", "list", "--folder-id", "f"]),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("kms.keys.get"), "{denied}");
}

#[tokio::test]
async fn listing_pages_through_a_folder_in_id_order() {
    let (_kms, c) = kms_with_crypto("").await;
    let mut created = Vec::new();
    for _ in 0..7 {
        created.push(c.create_symmetric_key(spec("f")).await.unwrap().id);
    }
    c.create_symmetric_key(spec("elsewhere")).await.unwrap();
    created.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (keys, next) = c
            .list_symmetric_keys(
                "f",
                Page {
                    page_size: 3,
                    page_token: token,
                },
            )
            .await
            .unwrap();
        assert!(keys.len() <= 3);
        seen.extend(keys.into_iter().map(|k| k.id));
        pages += 1;
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let (mut kms, c) = kms_with_crypto("").await;
    let key = c.create_symmetric_key(spec("f")).await.unwrap();
    let ct = c
        .encrypt(&key.id, None, b"", b"durable")
        .await
        .unwrap()
        .ciphertext;
    drop(c);
    kms.stop();
    kms.start();
    let c = kms.client().await;
    let plain = c.decrypt(&key.id, b"", &ct).await.unwrap();
    assert_eq!(plain.plaintext.expose(), b"durable");
}

#[tokio::test]
async fn many_requests_pipeline_on_one_connection() {
    let (_kms, c) = kms_with_crypto("").await;
    let key = c.create_symmetric_key(spec("f")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let c = c.clone();
        let id = key.id.clone();
        tasks.push(tokio::spawn(async move {
            let msg = i.to_be_bytes();
            let ct = c.encrypt(&id, None, b"", &msg).await.unwrap();
            let pt = c.decrypt(&id, b"", &ct.ciphertext).await.unwrap();
            assert_eq!(pt.plaintext.expose(), msg);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
