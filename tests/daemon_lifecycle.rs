//! Key lifecycle across restarts: lockboxd's keyring follows its KMS key's rotations, so an
//! old version can be destroyed without stranding anything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::KmsClient;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::kms::VersionStatus;
use lockbox_tests::payload::{expect, map, secret, set};
use lockbox_tests::{Daemon, Kms};

/// lockboxd's own KMS key, in its default folder.
async fn keyring_key(kms: &KmsClient) -> lockbox_client::proto::kms::SymmetricKey {
    let (keys, _) = kms
        .list_symmetric_keys("lockboxd", Page::default())
        .await
        .unwrap();
    keys.into_iter()
        .find(|k| k.name == "lockboxd-keyring")
        .expect("lockboxd created its keyring key")
}

/// Both processes, one keyring secret, and lockboxd's key rotated once since.
struct Rotated {
    kms: Kms,
    daemon: Daemon,
    admin: KmsClient,
    secret_id: String,
    key_id: String,
    /// The key's primary version before the rotation, which wrapped the keyring.
    old: String,
    /// The primary version after it.
    new: String,
}

async fn rotated() -> Rotated {
    let (kms, daemon) = Daemon::with_kms("");
    let secret_id = daemon
        .client()
        .await
        .create_secret(secret("db", vec![set("password", "s3cret")]))
        .await
        .unwrap()
        .resource_id;
    let admin = kms.client().await;
    let key = keyring_key(&admin).await;
    let old = key.primary_version.id.clone();
    let new = admin.rotate(&key.id).await.unwrap().primary_version.id;
    assert_ne!(old, new);
    Rotated {
        kms,
        daemon,
        admin,
        secret_id,
        key_id: key.id,
        old,
        new,
    }
}

/// Destroys `version` of `key_id`: scheduled with the default pending period (7 days), then
/// the KMS's test clock moved past it.
async fn destroy(admin: &KmsClient, key_id: &str, version: &str) {
    admin
        .schedule_version_destruction(key_id, version, None)
        .await
        .unwrap();
    admin.danger_advance_clock(7 * 24 * 3600 + 1).await.unwrap();
}

#[tokio::test]
async fn the_keyring_follows_its_key_s_rotation_so_the_old_version_can_be_destroyed() {
    let Rotated {
        mut kms,
        mut daemon,
        admin,
        secret_id: id,
        key_id,
        old,
        new,
    } = rotated().await;

    // At its next start lockboxd wraps the keyring under the new primary version.
    daemon.stop();
    daemon.start();
    let log = daemon.log();
    assert!(
        log.contains("rewrapped the service keyring") && log.contains(&new),
        "{log}"
    );
    // At the start after, the wrapping is the primary's: nothing to do.
    daemon.stop();
    daemon.start();
    let log = daemon.log();
    assert!(log.contains("service keyring unlocked"), "{log}");
    assert!(!log.contains("rewrapped"), "{log}");

    destroy(&admin, &key_id, &old).await;
    let (versions, _) = admin.list_versions(&key_id, Page::default()).await.unwrap();
    let status = |v: &str| versions.iter().find(|x| x.id == v).unwrap().status;
    assert_eq!(status(&old), VersionStatus::Destroyed);

    // Both processes restart; the keyring unlocks and the secret reads.
    daemon.stop();
    kms.stop();
    kms.start();
    daemon.start();
    let client = daemon.client().await;
    assert_eq!(
        map(&client.get_payload(&id, None).await.unwrap()),
        expect(&[("password", "s3cret")])
    );
}

/// A keyring whose wrapping version was destroyed before lockboxd restarted cannot be
/// unlocked; reads say why instead of blaming an unreachable KMS.
#[tokio::test]
async fn a_locked_keyring_says_why() {
    let Rotated {
        kms: _kms,
        mut daemon,
        admin,
        secret_id: id,
        key_id,
        old,
        ..
    } = rotated().await;
    destroy(&admin, &key_id, &old).await;
    daemon.stop();
    daemon.start();
    let err = daemon
        .client()
        .await
        .get_payload(&id, None)
        .await
        .unwrap_err();
    assert_eq!(
        lockbox_client::error_code(&err),
        lockbox_client::proto::ErrorCode::Unavailable
    );
    let message = err.to_string();
    assert!(
        message.contains("keyring is not unlocked yet") && message.contains(&old),
        "{message}"
    );
}
