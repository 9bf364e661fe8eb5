//! The sealed keystore through the real binary: wrong unseal material, a crash in the middle
//! of a save, a damaged file, and init refusing to overwrite.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta, Page};
use lockbox_client::proto::kms::{CreateSymmetricKey, ResourceRef, SymmetricAlgorithm};
use lockbox_client::{CallError, KmsClient};
use lockbox_tests::{Kms, KmsOptions, binary};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

fn spec() -> CreateSymmetricKey {
    CreateSymmetricKey {
        folder_id: "f".into(),
        name: String::new(),
        description: String::new(),
        labels: BTreeMap::new(),
        default_algorithm: SymmetricAlgorithm::Aes256,
        rotation_period: None,
        deletion_protection: false,
    }
}

async fn allow_crypto(c: &KmsClient) {
    let me = c.subject().to_owned();
    c.update_access_bindings(
        ResourceRef::Root,
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
}

#[test]
fn init_writes_private_files_and_refuses_to_overwrite() {
    let kms = Kms::init(KmsOptions::default());
    let state = kms.state_dir();
    for (file, mode) in [("unseal.key", 0o600), ("keystore.sealed", 0o600)] {
        let meta = std::fs::metadata(state.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    assert_eq!(
        std::fs::metadata(state.join("unseal.key")).unwrap().len(),
        32
    );
    let out = std::process::Command::new(binary("lockbox-kms"))
        .args(["init", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn wrong_unseal_material_is_refused_with_a_clear_message() {
    let kms = Kms::init(KmsOptions::default());
    let unseal = kms.state_dir().join("unseal.key");
    std::fs::write(&unseal, [0x5a; 32]).unwrap();
    let stderr = kms.start_expecting_failure();
    assert!(
        stderr.contains("unseal material does not match"),
        "{stderr}"
    );

    std::fs::write(&unseal, [0x5a; 31]).unwrap();
    let stderr = kms.start_expecting_failure();
    assert!(stderr.contains("exactly 32 bytes"), "{stderr}");

    std::fs::set_permissions(&unseal, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = kms.start_expecting_failure();
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[test]
fn a_damaged_keystore_is_refused_not_replaced() {
    let kms = Kms::init(KmsOptions::default());
    let path = kms.state_dir().join("keystore.sealed");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let stderr = kms.start_expecting_failure();
    assert!(stderr.contains("damaged or truncated"), "{stderr}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is left for inspection"
    );
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_save_leaves_the_previous_keystore_usable() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let c = kms.client().await;
    allow_crypto(&c).await;
    let kept = c.create_symmetric_key(spec()).await.unwrap();
    let ct = c
        .encrypt(&kept.id, None, b"", b"survives")
        .await
        .unwrap()
        .ciphertext;
    drop(c);
    kms.stop();

    // Every save now writes half a keystore and aborts, like a power cut mid-write.
    kms.start_with(&[("LOCKBOX_KMS_DANGER_CRASH_DURING_SAVE", "1")]);
    let c = kms.client().await;
    let err = c.create_symmetric_key(spec()).await.unwrap_err();
    assert!(
        matches!(err, CallError::Disconnected(_)),
        "the server died mid-save: {err}"
    );
    let status = kms.wait_exit();
    assert!(!status.success());
    let temp = kms.state_dir().join("keystore.sealed.tmp");
    assert!(temp.exists(), "the crash left a partial temp file");

    kms.start();
    assert!(!temp.exists(), "the partial write was discarded at start");
    let c = kms.client().await;
    let (keys, _) = c.list_symmetric_keys("f", Page::default()).await.unwrap();
    assert_eq!(keys.len(), 1, "the interrupted create did not happen");
    assert_eq!(keys[0].id, kept.id);
    let plain = c.decrypt(&kept.id, b"", &ct).await.unwrap();
    assert_eq!(plain.plaintext.expose(), b"survives");
    // And the keystore is writable again.
    c.create_symmetric_key(spec()).await.unwrap();
}

#[test]
fn the_keystore_file_never_holds_key_material_in_the_clear() {
    let kms = Kms::init(KmsOptions::default());
    let sealed = std::fs::read(kms.state_dir().join("keystore.sealed")).unwrap();
    // The admin subject is inside the sealed state; it must not be readable on disk.
    assert!(
        !sealed
            .windows(b"kms.admin".len())
            .any(|w| w == b"kms.admin")
    );
    assert!(sealed.starts_with(b"LBKMSKS\0"));
}

#[tokio::test]
async fn the_test_clock_is_refused_on_a_normal_server() {
    let mut kms = Kms::init(KmsOptions {
        system_clock: true,
        ..KmsOptions::default()
    });
    kms.start();
    let err = kms
        .client()
        .await
        .danger_advance_clock(1)
        .await
        .unwrap_err();
    assert_eq!(
        lockbox_client::error_code(&err),
        lockbox_client::proto::ErrorCode::FailedPrecondition
    );
    assert!(err.to_string().contains("--danger-test-clock"), "{err}");
}

#[tokio::test]
async fn a_second_server_does_not_steal_a_live_socket() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let mode = std::fs::metadata(kms.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode");
    let stderr = kms.start_expecting_failure();
    assert!(stderr.contains("in use by a running server"), "{stderr}");
    // The first server still answers.
    kms.client()
        .await
        .list_symmetric_keys("f", Page::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_save_that_fails_after_the_rename_leaves_memory_as_the_disk_holds_it() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start_with(&[("LOCKBOX_KMS_DANGER_FAIL_AFTER_RENAME", "1")]);
    let c = kms.client().await;
    // The key is in the file: the caller is told the save is uncertain, and the KMS serves
    // the key as the file holds it.
    let err = c.create_symmetric_key(spec()).await.unwrap_err();
    let CallError::Server(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        e.code,
        lockbox_client::proto::ErrorCode::Unavailable,
        "{e:?}"
    );
    assert!(e.message.contains("may not survive a crash"), "{e:?}");
    let listed = c.list_symmetric_keys("f", Page::default()).await.unwrap();
    assert_eq!(listed.0.len(), 1);
    let id = listed.0[0].id.clone();
    drop(c);
    kms.stop();

    // After a restart, the disk says the same.
    kms.start();
    let c = kms.client().await;
    let listed = c.list_symmetric_keys("f", Page::default()).await.unwrap();
    assert_eq!(listed.0.len(), 1);
    assert_eq!(listed.0[0].id, id);
}
