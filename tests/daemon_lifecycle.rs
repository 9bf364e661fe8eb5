//! Key lifecycle across restarts: lockboxd's keyring follows its KMS key's rotations, so an
//! old version can be destroyed without stranding anything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::common::Page;
use lockbox_client::proto::kms::VersionStatus;
use lockbox_tests::Daemon;
use lockbox_tests::payload::{expect, map, secret, set};

/// lockboxd's own KMS key, in its default folder.
async fn keyring_key(kms: &lockbox_client::KmsClient) -> lockbox_client::proto::kms::SymmetricKey {
    let (keys, _) = kms
        .list_symmetric_keys("lockboxd", Page::default())
        .await
        .unwrap();
    keys.into_iter()
        .find(|k| k.name == "lockboxd-keyring")
        .expect("lockboxd created its keyring key")
}

#[tokio::test]
async fn the_keyring_follows_its_key_s_rotation_so_the_old_version_can_be_destroyed() {
    let (mut kms, mut daemon) = Daemon::with_kms("");
    let client = daemon.client().await;
    let id = client
        .create_secret(secret("db", vec![set("password", "s3cret")]))
        .await
        .unwrap()
        .resource_id;

    let admin = kms.client().await;
    let key = keyring_key(&admin).await;
    let old = key.primary_version.id.clone();
    let new = admin.rotate(&key.id).await.unwrap().primary_version.id;
    assert_ne!(old, new);

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

    // The old version is destroyed (default pending period: 7 days on the KMS's test clock).
    admin
        .schedule_version_destruction(&key.id, &old, None)
        .await
        .unwrap();
    admin.danger_advance_clock(7 * 24 * 3600 + 1).await.unwrap();
    let (versions, _) = admin.list_versions(&key.id, Page::default()).await.unwrap();
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
    let (kms, mut daemon) = Daemon::with_kms("");
    let client = daemon.client().await;
    let id = client
        .create_secret(secret("db", vec![set("password", "s3cret")]))
        .await
        .unwrap()
        .resource_id;
    let admin = kms.client().await;
    let key = keyring_key(&admin).await;
    let old = key.primary_version.id.clone();
    admin.rotate(&key.id).await.unwrap();
    admin
        .schedule_version_destruction(&key.id, &old, None)
        .await
        .unwrap();
    admin.danger_advance_clock(7 * 24 * 3600 + 1).await.unwrap();
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
