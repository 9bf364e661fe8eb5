//! Key lifecycle across restarts: lockboxd's keyring and the data keys of secrets on their
//! own KMS key follow their key's rotations (at start, on a command, by `lockbox kms
//! symmetric-key rewrap`), so an old version can be destroyed without stranding anything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::kms::VersionStatus;
use lockbox_client::proto::lockbox::AddVersion;
use lockbox_client::{KmsClient, LockboxClient, error_code};
use lockbox_tests::payload::{expect, map, secret, set};
use lockbox_tests::{Daemon, Kms, failure, json, kms_key_with, my_subject, new_version_id};
use std::collections::BTreeMap;

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

/// Stops lockboxd and lockbox-kms and starts them again, the KMS first.
fn restart_both(kms: &mut Kms, daemon: &mut Daemon) {
    daemon.stop();
    kms.stop();
    kms.start();
    daemon.start();
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
    restart_both(&mut kms, &mut daemon);
    let client = daemon.client().await;
    assert_eq!(
        map(&client.get_payload(&id, None).await.unwrap()),
        expect(&[("password", "s3cret")])
    );
}

/// A keyring lockbox-kms will not unwrap (here its key was made inactive while lockboxd
/// was down) stays locked; reads say why instead of blaming an unreachable KMS.
#[tokio::test]
async fn a_locked_keyring_says_why() {
    let (kms, mut daemon) = Daemon::with_kms("");
    let id = daemon
        .client()
        .await
        .create_secret(secret("db", vec![set("password", "s3cret")]))
        .await
        .unwrap()
        .resource_id;
    let key_id = keyring_key(&kms.client().await).await.id;
    daemon.stop();
    lockbox_tests::success(&kms.run([
        "kms",
        "symmetric-key",
        "update",
        &key_id,
        "--status",
        "inactive",
    ]));
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
        message.contains("keyring is not unlocked yet")
            && message.contains(&format!("key {key_id} is not active")),
        "{message}"
    );
}

/// lockbox-kms will not destroy a version lockboxd's keyring still needs: the old version
/// is held until lockboxd reports the keyring moved.
#[tokio::test]
async fn the_kms_refuses_to_destroy_the_version_wrapping_the_keyring() {
    let Rotated {
        kms: _kms,
        daemon,
        admin,
        key_id,
        old,
        ..
    } = rotated().await;
    let refused = admin
        .schedule_version_destruction(&key_id, &old, None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), ErrorCode::FailedPrecondition);
    let message = refused.to_string();
    assert!(
        message.contains("still protects data kept by")
            && message.contains(&format!("lockbox kms symmetric-key rewrap {key_id}")),
        "{message}"
    );
    // What the message says to do releases it: the keyring moves, the old version is free.
    let done = json(&daemon.run([
        "--format",
        "json",
        "kms",
        "symmetric-key",
        "rewrap",
        &key_id,
    ]));
    assert_eq!(done["rewrapped_data_keys"], 0);
    destroy(&admin, &key_id, &old).await;
}

/// `lockbox admin rewrap-keyring` moves the keyring to the new primary at once, for an
/// administrator only; after it the old version can go without a restart in between.
#[tokio::test]
async fn the_keyring_rewraps_on_command() {
    let Rotated {
        mut kms,
        mut daemon,
        admin,
        secret_id: id,
        key_id,
        old,
        new,
    } = rotated().await;

    daemon.open_socket_to_nobody();
    let denied = failure(
        &daemon.run_as_nobody(&["admin", "rewrap-keyring"]),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("lockbox.service.manage"), "{denied}");

    let done = json(&daemon.run(["--format", "json", "admin", "rewrap-keyring"]));
    assert_eq!(done["kms_key_id"], key_id.as_str());
    assert_eq!(done["from_version_id"], old.as_str());
    assert_eq!(done["version_id"], new.as_str());
    // Again: already the primary's.
    let again = json(&daemon.run(["--format", "json", "admin", "rewrap-keyring"]));
    assert_eq!(again["from_version_id"], new.as_str());

    destroy(&admin, &key_id, &old).await;
    restart_both(&mut kms, &mut daemon);
    assert_eq!(
        map(&daemon.client().await.get_payload(&id, None).await.unwrap()),
        expect(&[("password", "s3cret")])
    );
}

/// Secrets on a KMS key of their own, some versions wrapped before the key rotated.
struct KmsKeyed {
    kms: Kms,
    daemon: Daemon,
    admin: KmsClient,
    client: LockboxClient,
    key_id: String,
    /// The key's primary version before the rotation.
    old: String,
    /// Every version's payload, by (secret, version).
    written: BTreeMap<(String, String), String>,
}

/// Three secrets on one KMS key with three versions each, then the key rotated and one
/// more version added to each: nine data keys under the old version, three under the new.
async fn kms_keyed() -> KmsKeyed {
    let (kms, daemon) = Daemon::with_kms("");
    let admin = kms.client().await;
    let key_id = kms_key_with(&admin, &[("kms.keys.encrypterDecrypter", &my_subject())]).await;
    let old = admin
        .get_symmetric_key(&key_id)
        .await
        .unwrap()
        .primary_version
        .id;
    let client = daemon.client().await;
    let mut written = BTreeMap::new();
    let mut add = async |client: &LockboxClient, secret_id: &str, value: String| {
        let v = client
            .add_version(AddVersion {
                secret_id: secret_id.into(),
                description: String::new(),
                payload_entries: vec![set("k", &value)],
                base_version_id: None,
            })
            .await
            .unwrap();
        written.insert((secret_id.to_owned(), new_version_id(&v)), value);
    };
    let mut ids = Vec::new();
    for s in 0..3 {
        let mut create = secret(&format!("s{s}"), vec![]);
        create.kms_key_id = key_id.clone();
        let id = client.create_secret(create).await.unwrap().resource_id;
        for v in 0..3 {
            add(&client, &id, format!("s{s}v{v}")).await;
        }
        ids.push(id);
    }
    admin.rotate(&key_id).await.unwrap();
    for (s, id) in ids.iter().enumerate() {
        add(&client, id, format!("s{s}v3")).await;
    }
    KmsKeyed {
        kms,
        daemon,
        admin,
        client,
        key_id,
        old,
        written,
    }
}

/// Every version written reads back as written.
async fn all_read(client: &LockboxClient, written: &BTreeMap<(String, String), String>) {
    for ((secret_id, version_id), value) in written {
        let payload = client
            .get_payload(secret_id, Some(version_id))
            .await
            .unwrap_or_else(|e| panic!("{secret_id}/{version_id}: {e}"));
        assert_eq!(map(&payload), expect(&[("k", value)]));
    }
}

#[tokio::test]
async fn data_keys_follow_their_key_s_rotation_so_the_old_version_can_be_destroyed() {
    let KmsKeyed {
        mut kms,
        mut daemon,
        admin,
        client,
        key_id,
        old,
        written,
    } = kms_keyed().await;

    // Four calls of at most four data keys: progress after each but the last.
    let out = daemon.run([
        "--format",
        "json",
        "kms",
        "symmetric-key",
        "rewrap",
        &key_id,
        "--batch",
        "4",
    ]);
    let done = json(&out);
    assert_eq!(done["rewrapped_data_keys"], 9, "{done}");
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("rewrapped 4 data keys")
            && progress.contains("5 to go")
            && progress.contains("rewrapped 8 data keys")
            && progress.contains("1 to go"),
        "{progress}"
    );
    assert_eq!(client.rewrap_data_keys(&key_id, 100).await.unwrap(), (0, 0));
    all_read(&client, &written).await;

    destroy(&admin, &key_id, &old).await;
    restart_both(&mut kms, &mut daemon);
    all_read(&daemon.client().await, &written).await;
}

/// Without the rewrap, lockbox-kms refuses to destroy the old version (it would take nine
/// versions with it), saying how many data keys it wraps once lockboxd has reported; a
/// partial rewrap still holds it, a whole one releases it. Deleting the key is refused too.
#[tokio::test]
async fn the_kms_refuses_to_destroy_a_version_that_still_wraps_data_keys() {
    let KmsKeyed {
        kms,
        daemon: _daemon,
        admin,
        client,
        key_id,
        old,
        written,
    } = kms_keyed().await;
    let refused = |e: lockbox_client::CallError| {
        assert_eq!(error_code(&e), ErrorCode::FailedPrecondition, "{e}");
        e.to_string()
    };
    let schedule = async || {
        admin
            .schedule_version_destruction(&key_id, &old, None)
            .await
    };
    let message = refused(schedule().await.unwrap_err());
    assert!(
        message.contains(&format!(
            "version {old} of key {key_id} still protects data"
        )) && message.contains("data it encrypted since its last report"),
        "{message}"
    );
    assert_eq!(client.rewrap_data_keys(&key_id, 4).await.unwrap(), (4, 5));
    let message = refused(schedule().await.unwrap_err());
    assert!(
        message.contains("(5 data keys at its last report)"),
        "{message}"
    );
    refused(admin.delete_symmetric_key(&key_id).await.unwrap_err());

    // Releasing by hand needs the right to schedule destruction.
    kms.open_socket_to_nobody();
    let released = [
        "kms",
        "symmetric-key",
        "schedule-version-destruction",
        &key_id,
        "--version-id",
        &old,
        "--release-held-data",
    ];
    let denied = failure(&kms.run_as_nobody(&released), "PERMISSION_DENIED");
    assert!(
        denied.contains("kms.keyVersions.scheduleDestruction"),
        "{denied}"
    );
    refused(schedule().await.unwrap_err());

    assert_eq!(client.rewrap_data_keys(&key_id, 10).await.unwrap(), (5, 0));
    destroy(&admin, &key_id, &old).await;
    all_read(&client, &written).await;
    // The primary still wraps twelve: the key cannot be deleted.
    refused(admin.delete_symmetric_key(&key_id).await.unwrap_err());
}

/// Only an enrolled relay, speaking for itself, reports what it holds.
#[tokio::test]
async fn holds_are_reported_only_by_an_enrolled_relay_for_itself() {
    use lockbox_client::proto::kms::KmsRequest;
    use lockbox_tests::wire::kms_call;
    let report = |key_id: &str| KmsRequest::ReportHolds {
        key_id: key_id.into(),
        held: vec![],
    };
    // Not enrolled.
    let mut kms = Kms::init(lockbox_tests::KmsOptions::default());
    kms.start();
    let key_id = kms_key_with(&kms.client().await, &[]).await;
    let e = kms_call(&kms.socket(), None, report(&key_id)).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied);
    assert!(e.message.contains("kms.holds.report"), "{}", e.message);
    drop(kms);

    // Enrolled, but relaying for someone else.
    let (kms, _daemon) = Daemon::with_kms("");
    let key_id = kms_key_with(&kms.client().await, &[]).await;
    let someone = lockbox_client::proto::Principal {
        subject: "user:nobody".into(),
        groups: vec![],
    };
    let e = kms_call(&kms.socket(), Some(someone), report(&key_id)).unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{}", e.message);
    assert!(e.message.contains("may not be relayed"), "{}", e.message);
    // For itself: accepted.
    kms_call(&kms.socket(), None, report(&key_id)).unwrap();
}

#[tokio::test]
async fn a_rewrap_refuses_bad_input_and_callers_without_the_rights() {
    let KmsKeyed {
        kms: _kms,
        daemon,
        admin,
        client,
        key_id,
        ..
    } = kms_keyed().await;
    let invalid = |e: lockbox_client::CallError| {
        assert_eq!(error_code(&e), ErrorCode::InvalidArgument, "{e}");
        e.to_string()
    };
    let e = invalid(client.rewrap_data_keys(&key_id, 0).await.unwrap_err());
    assert!(
        e.contains("limit: must be between 1 and 10000, got 0"),
        "{e}"
    );
    let e = invalid(client.rewrap_data_keys(&key_id, 10_001).await.unwrap_err());
    assert!(e.contains("got 10001"), "{e}");
    let e = invalid(client.rewrap_data_keys("not a key", 10).await.unwrap_err());
    assert!(e.contains("kms_key_id"), "{e}");

    // Not an administrator of lockboxd.
    daemon.open_socket_to_nobody();
    let denied = failure(
        &daemon.run_as_nobody(&["kms", "symmetric-key", "rewrap", &key_id]),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("lockbox.service.manage"), "{denied}");

    // An administrator of lockboxd whom lockbox-kms does not let use the key: refused by
    // lockbox-kms, nothing changes.
    admin.rotate(&key_id).await.unwrap();
    let strip = vec![lockbox_client::proto::common::AccessBindingDelta {
        action: lockbox_client::proto::common::AccessBindingAction::Remove,
        binding: lockbox_client::proto::common::AccessBinding {
            role_id: "kms.keys.encrypterDecrypter".into(),
            subject: my_subject(),
        },
    }];
    admin
        .update_access_bindings(
            lockbox_client::proto::kms::ResourceRef::Key(key_id.clone()),
            strip,
        )
        .await
        .unwrap();
    let e = client.rewrap_data_keys(&key_id, 100).await.unwrap_err();
    assert_eq!(error_code(&e), ErrorCode::PermissionDenied, "{e}");
}

/// lockboxd killed while it rewraps, again and again: after every restart every version
/// reads, and rewrapping goes on from where it was until nothing is left.
#[tokio::test]
async fn a_crash_mid_rewrap_leaves_every_version_readable() {
    let KmsKeyed {
        kms: _kms,
        mut daemon,
        admin,
        key_id,
        old,
        written,
        ..
    } = kms_keyed().await;
    let mut crashes = 0;
    loop {
        // One data key per call, one call after another; lockboxd is killed as soon as the
        // first answers, so the kill lands while the next call is under way.
        let client = daemon.client().await;
        let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
        let rewrap = tokio::spawn({
            let key_id = key_id.clone();
            async move {
                while let Ok((_, remaining)) = client.rewrap_data_keys(&key_id, 1).await {
                    if answered.send(remaining).is_err() || remaining == 0 {
                        return;
                    }
                }
            }
        });
        let first = answers
            .recv()
            .await
            .expect("the first call of a run answers");
        if first == 0 {
            rewrap.await.unwrap();
            break;
        }
        daemon.kill();
        rewrap.await.unwrap();
        crashes += 1;
        daemon.start();
        all_read(&daemon.client().await, &written).await;
        assert!(
            crashes < 9,
            "every run rewraps at least one of the nine data keys"
        );
    }
    assert!(crashes > 0);
    destroy(&admin, &key_id, &old).await;
    all_read(&daemon.client().await, &written).await;
}
