//! Revocation takes effect on open connections: a service account's connection ends when
//! its token expires or its key or account is deleted; every connection ends at its maximum
//! age; a refused token ends its connection; the client holding a key signs in again on its
//! own; and the groups a connection acts with are the ones the kernel reports for the
//! process, not the ones the user database lists.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta};
use lockbox_client::proto::hello::Service;
use lockbox_client::proto::lockbox::{LockboxRequest, LockboxResource, LockboxResponse};
use lockbox_client::proto::token::LOCKBOXD_AUDIENCE;
use lockbox_client::sa::{KeyFile, now};
use lockbox_client::{CallError, LockboxClient, error_code};
use lockbox_rpc::Channel;
use lockbox_tests::gate::KmsGate;
use lockbox_tests::payload::{map, secret, set};
use lockbox_tests::{Daemon, Kms, KmsOptions, NOBODY, failure, is_root, my_subject, success};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

async fn grant(admin: &LockboxClient, resource: LockboxResource, role: &str, subject: &str) {
    lockbox_tests::change_binding(admin, &resource, true, role, subject).await;
}

/// A secret the service account `sa` may read, and a key of the account.
async fn readable_secret(admin: &LockboxClient) -> (String, KeyFile) {
    let sa = admin
        .create_service_account("", "robot", "")
        .await
        .unwrap()
        .id;
    let key = admin
        .create_service_account_key(&sa, "test key")
        .await
        .unwrap();
    let id = admin
        .create_secret(secret("s", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    grant(
        admin,
        LockboxResource::Secret(id.clone()),
        "lockbox.payloadViewer",
        &format!("serviceAccount:{sa}"),
    )
    .await;
    (id, key)
}

/// A connection switched to the account with a token the test signed (so the client does
/// not sign in again by itself), valid for `lifetime` seconds from `iat`.
async fn signed_in(daemon: &Daemon, key: &KeyFile, iat: i64, lifetime: i64) -> LockboxClient {
    let client = daemon.client().await;
    let token = key.sign_token(LOCKBOXD_AUDIENCE, iat, lifetime).unwrap();
    client.authenticate(&token).await.unwrap();
    client
}

fn refused(err: &CallError, reason: &str) {
    assert_eq!(error_code(err), ErrorCode::Unauthenticated, "{err}");
    assert!(err.to_string().contains(reason), "{reason}: {err}");
}

/// Once refused, the connection is gone: the next call does not reach the daemon.
async fn closed(client: &LockboxClient, id: &str) {
    let err = client.get_payload(id, None).await.unwrap_err();
    assert!(matches!(err, CallError::Disconnected(_)), "{err}");
}

#[tokio::test]
async fn deleting_the_key_or_the_account_ends_open_connections() {
    let (_kms, daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (id, key) = readable_secret(&admin).await;
    let by_key = signed_in(&daemon, &key, now(), 300).await;
    assert_eq!(map(&by_key.get_payload(&id, None).await.unwrap())["k"], "v");
    admin
        .delete_service_account_key(&key.service_account_id, &key.id)
        .await
        .unwrap();
    refused(
        &by_key.get_payload(&id, None).await.unwrap_err(),
        "deleted key",
    );
    closed(&by_key, &id).await;

    let key = admin
        .create_service_account_key(&key.service_account_id, "second key")
        .await
        .unwrap();
    let by_account = signed_in(&daemon, &key, now(), 300).await;
    assert_eq!(
        map(&by_account.get_payload(&id, None).await.unwrap())["k"],
        "v"
    );
    admin
        .delete_service_account(&key.service_account_id)
        .await
        .unwrap();
    // Deleting the account deletes its keys too: either refusal names the lapse.
    let err = by_account.get_payload(&id, None).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::Unauthenticated, "{err}");
    closed(&by_account, &id).await;
}

#[tokio::test]
async fn an_expired_token_ends_its_connection() {
    let (_kms, daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (id, key) = readable_secret(&admin).await;
    let client = signed_in(&daemon, &key, now(), 60).await;
    assert_eq!(map(&client.get_payload(&id, None).await.unwrap())["k"], "v");
    // Past the token's expiry and the tolerated skew (120 s in all), well within the
    // connection's age (900 s). The daemon's test clock stood still from its start, which
    // may be seconds before the token was signed on the wall clock: the margin covers that.
    admin.danger_advance_clock(300).await.unwrap();
    refused(&client.get_payload(&id, None).await.unwrap_err(), "expired");
    closed(&client, &id).await;
}

/// A client holding `key`, signing its tokens at the time the returned clock tells.
async fn signing_in_by_itself(daemon: &Daemon, key: &KeyFile) -> (LockboxClient, Arc<AtomicI64>) {
    let clock = Arc::new(AtomicI64::new(now()));
    let tokens_at = clock.clone();
    let client = LockboxClient::connect_as_with_clock(
        &daemon.socket(),
        key,
        Arc::new(move || tokens_at.load(Ordering::SeqCst)),
    )
    .await
    .unwrap();
    (client, clock)
}

#[tokio::test]
async fn a_client_holding_the_key_signs_in_again_by_itself() {
    let (_kms, daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (id, key) = readable_secret(&admin).await;
    let (robot, clock) = signing_in_by_itself(&daemon, &key).await;
    assert_eq!(map(&robot.get_payload(&id, None).await.unwrap())["k"], "v");

    // Both clocks move past the token's lifetime: the client renews before sending.
    admin.danger_advance_clock(400).await.unwrap();
    clock.fetch_add(400, Ordering::SeqCst);
    assert_eq!(map(&robot.get_payload(&id, None).await.unwrap())["k"], "v");

    // The daemon's clock moves past the token while the client thinks it still has time:
    // the daemon refuses, and the client signs in on a new connection and asks again.
    admin.danger_advance_clock(400).await.unwrap();
    clock.fetch_add(200, Ordering::SeqCst);
    assert_eq!(map(&robot.get_payload(&id, None).await.unwrap())["k"], "v");
    let log = daemon.log();
    assert_eq!(
        log.matches("service account authenticated").count(),
        3,
        "{log}"
    );
}

#[tokio::test]
async fn a_refused_token_closes_the_connection() {
    let (_kms, daemon) = Daemon::with_kms("");
    let client = daemon.client().await;
    let err = client.authenticate("not-a-token").await.unwrap_err();
    refused(&err, "not a compact JWS");
    let err = client.get_secret("e6q00000000000000000").await.unwrap_err();
    assert!(matches!(err, CallError::Disconnected(_)), "{err}");
}

/// A connection of the protocol itself, which does not reconnect.
async fn raw(daemon: &Daemon) -> Channel<LockboxResponse> {
    Channel::connect(&daemon.socket(), Service::Lockbox, "test")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_connection_past_its_maximum_age_is_refused_and_the_client_reconnects() {
    let (_kms, daemon) = Daemon::with_kms("max_connection_age = 60\n");
    let admin = daemon.client().await;
    let id = admin
        .create_secret(secret("s", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let old = raw(&daemon).await;
    let get = LockboxRequest::GetSecret {
        secret_id: id.clone(),
    };
    old.call(None, &get).await.unwrap();
    admin.danger_advance_clock(59).await.unwrap();
    old.call(None, &get).await.unwrap();
    admin.danger_advance_clock(1).await.unwrap();
    refused(
        &old.call(None, &get).await.unwrap_err(),
        "maximum age (60 s)",
    );
    let err = old.call(None, &get).await.unwrap_err();
    assert!(matches!(err, CallError::Disconnected(_)), "{err}");

    // The client library's connection aged out too; it opens a new one and asks again.
    assert_eq!(map(&admin.get_payload(&id, None).await.unwrap())["k"], "v");

    // Zero would end every connection at once: refused at start.
    let kms = Kms::init(KmsOptions::default());
    let bad = Daemon::new(&kms, "max_connection_age = 0\n");
    let err = bad.start_expecting_failure();
    assert!(
        err.contains("max_connection_age: must be at least 1"),
        "{err}"
    );
}

/// The gid of the group `name`, created (with `nobody` as a member, as the user database
/// sees it) if it does not exist yet.
fn test_group(name: &str) -> u32 {
    let lookup = || {
        std::process::Command::new("getent")
            .args(["group", name])
            .output()
            .unwrap()
    };
    if !lookup().status.success() {
        let out = std::process::Command::new("groupadd")
            .args(["--system", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = std::process::Command::new("gpasswd")
        .args(["--add", "nobody", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = String::from_utf8(lookup().stdout).unwrap();
    entry.split(':').nth(2).unwrap().parse().unwrap()
}

/// Runs the CLI as `nobody` with exactly the supplementary groups `groups`, whatever the
/// user database says nobody belongs to.
fn as_nobody_with_groups(daemon: &Daemon, groups: &[u32], args: &[&str]) -> std::process::Output {
    let list: Vec<String> = groups.iter().map(u32::to_string).collect();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"));
    if list.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    let cli = daemon.cli();
    cmd.arg(cli.get_program());
    for (k, v) in cli.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.args(args).output().unwrap()
}

#[tokio::test]
async fn a_connection_has_the_groups_its_process_holds() {
    assert!(
        is_root(),
        "this test runs the CLI as another Unix user with chosen groups and must run as root \
         (CI does)"
    );
    let listed = test_group("lockbox-test-members");
    let (kms, daemon) = Daemon::with_kms("");
    daemon.open_socket_to_nobody();
    let admin = daemon.client().await;
    let id = admin
        .create_secret(secret("s", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let on_secret = LockboxResource::Secret(id.clone());
    grant(
        &admin,
        on_secret.clone(),
        "lockbox.payloadViewer",
        "group:lockbox-test-members",
    )
    .await;
    let read = ["payload", "get", "--id", id.as_str(), "--key", "k"];

    // The user database lists nobody in the group; a process without it gets no role.
    let dropped = as_nobody_with_groups(&daemon, &[], &read);
    assert!(failure(&dropped, "PERMISSION_DENIED").contains("user:nobody"));
    let holding = as_nobody_with_groups(&daemon, &[listed], &read);
    assert_eq!(success(&holding).trim(), "v");

    // A group the process holds that the database does not list for it counts.
    let unlisted = 48_213;
    grant(
        &admin,
        on_secret.clone(),
        "lockbox.payloadViewer",
        &format!("group:{unlisted}"),
    )
    .await;
    assert_eq!(
        success(&as_nobody_with_groups(&daemon, &[unlisted], &read)).trim(),
        "v"
    );

    // The KMS decides on the same groups lockboxd received from the kernel.
    let me = my_subject();
    let key = lockbox_tests::kms_key_with(
        &kms.client().await,
        &[
            ("kms.keys.encrypterDecrypter", me.as_str()),
            ("kms.keys.decrypter", "group:lockbox-test-members"),
        ],
    )
    .await;
    let mut keyed = secret("kms-keyed", vec![set("k", "w")]);
    keyed.kms_key_id = key;
    let keyed = admin.create_secret(keyed).await.unwrap().resource_id;
    grant(
        &admin,
        LockboxResource::Secret(keyed.clone()),
        "lockbox.payloadViewer",
        "user:nobody",
    )
    .await;
    let read = ["payload", "get", "--id", keyed.as_str(), "--key", "k"];
    let denied = failure(
        &as_nobody_with_groups(&daemon, &[], &read),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("lockbox-kms"), "{denied}");
    assert_eq!(
        success(&as_nobody_with_groups(&daemon, &[listed], &read)).trim(),
        "w"
    );
}

#[tokio::test]
async fn reading_as_a_service_account_still_works_across_the_connection_s_age() {
    // The client holding the key reconnects at the maximum age like any other.
    let (_kms, daemon) = Daemon::with_kms("max_connection_age = 60\n");
    let admin = daemon.client().await;
    let (id, key) = readable_secret(&admin).await;
    let (robot, clock) = signing_in_by_itself(&daemon, &key).await;
    admin.danger_advance_clock(61).await.unwrap();
    clock.fetch_add(61, Ordering::SeqCst);
    assert_eq!(map(&robot.get_payload(&id, None).await.unwrap())["k"], "v");
}

/// A KMS key in folder `f` that `subjects` may encrypt and decrypt with.
async fn shared_kms_key(kms: &Kms, subjects: &[&str]) -> String {
    let grants: Vec<(&str, &str)> = subjects
        .iter()
        .map(|s| ("kms.keys.encrypterDecrypter", *s))
        .collect();
    lockbox_tests::kms_key_with(&kms.client().await, &grants).await
}

/// A KMS, a gate in front of it, a daemon behind the gate and an administrator's client.
async fn behind_a_gate() -> (Kms, KmsGate, Daemon, LockboxClient) {
    let mut kms = Kms::init(KmsOptions {
        enrol_daemon: true,
        ..KmsOptions::default()
    });
    kms.start();
    let gate = KmsGate::start(&kms.dir().join("gate.sock"), &kms.socket()).await;
    let mut daemon = Daemon::new(&kms, "").with_kms_socket(gate.socket());
    daemon.start();
    let admin = daemon.client().await;
    (kms, gate, daemon, admin)
}

/// A service account with a key, a client acting as it, and its subject.
async fn robot(daemon: &Daemon, admin: &LockboxClient) -> (LockboxClient, String) {
    let sa = admin
        .create_service_account("", "robot", "")
        .await
        .unwrap()
        .id;
    let key = admin.create_service_account_key(&sa, "").await.unwrap();
    let client = LockboxClient::connect_as(&daemon.socket(), &key)
        .await
        .unwrap();
    (client, format!("serviceAccount:{sa}"))
}

// Multi-threaded: the gate serves lockboxd while the test blocks starting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_removed_while_a_version_is_sealed_stops_the_write_and_no_write_waits_for_the_kms() {
    let (kms, mut gate, daemon, admin) = behind_a_gate().await;
    let (robot, subject) = robot(&daemon, &admin).await;
    let key = shared_kms_key(&kms, &[&my_subject(), &subject]).await;
    let mut spec = secret("keyed", vec![set("a", "1")]);
    spec.kms_key_id = key;
    let id = admin.create_secret(spec).await.unwrap().resource_id;
    let on_secret = LockboxResource::Secret(id.clone());
    grant(&admin, on_secret.clone(), "lockbox.editor", &subject).await;
    grant(&admin, on_secret.clone(), "lockbox.payloadViewer", &subject).await;

    gate.hold(&subject);
    let adding = tokio::spawn({
        let (robot, id) = (robot.clone(), id.clone());
        async move {
            robot
                .add_version(lockbox_client::proto::lockbox::AddVersion {
                    secret_id: id,
                    description: String::new(),
                    payload_entries: vec![set("b", "2")],
                    base_version_id: None,
                })
                .await
        }
    });
    // The robot's addition reads the current version's data key, then seals its own.
    gate.arrival().await;
    gate.allow(1);
    gate.arrival().await;
    // Meanwhile another version becomes current.
    admin
        .add_version(lockbox_client::proto::lockbox::AddVersion {
            secret_id: id.clone(),
            description: String::new(),
            payload_entries: vec![set("c", "3")],
            base_version_id: None,
        })
        .await
        .unwrap();
    // The robot's version is sealed; it is then built again on the new current version,
    // whose data key it asks the KMS for: held here.
    gate.allow(1);
    gate.arrival().await;
    // No mutation waits for the KMS: the robot's role goes while its addition is held.
    let revoke = admin.update_access_bindings(
        on_secret.clone(),
        vec![AccessBindingDelta {
            action: AccessBindingAction::Remove,
            binding: AccessBinding {
                role_id: "lockbox.editor".into(),
                subject: subject.clone(),
            },
        }],
    );
    tokio::time::timeout(std::time::Duration::from_secs(30), revoke)
        .await
        .expect("a binding change waited for a KMS round trip of another write")
        .unwrap();
    gate.allow(100);
    let err = adding.await.unwrap().unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::PermissionDenied, "{err}");
    let (versions, _) = admin.list_versions(&id, Default::default()).await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    let current = admin.get_payload(&id, None).await.unwrap();
    assert_eq!(map(&current).len(), 2, "a and c, without the robot's b");
}

// Multi-threaded: the gate serves lockboxd while the test blocks starting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_deleted_while_a_first_version_is_sealed_stops_the_creation() {
    let (kms, mut gate, daemon, admin) = behind_a_gate().await;
    let (robot, subject) = robot(&daemon, &admin).await;
    let key = shared_kms_key(&kms, &[&my_subject(), &subject]).await;
    let (folder, _) = admin_folder(&admin).await;
    grant(
        &admin,
        LockboxResource::Folder(folder.clone()),
        "lockbox.editor",
        &subject,
    )
    .await;
    gate.hold(&subject);
    let creating = tokio::spawn({
        let (robot, folder) = (robot.clone(), folder.clone());
        async move {
            let mut spec = secret("late", vec![set("a", "1")]);
            spec.folder_id = folder;
            spec.kms_key_id = key;
            robot.create_secret(spec).await
        }
    });
    gate.arrival().await;
    admin.delete_folder(&folder).await.unwrap();
    gate.allow(100);
    let err = creating.await.unwrap().unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::NotFound, "{err}");
    assert!(err.to_string().contains(&folder), "{err}");
}

async fn admin_folder(admin: &LockboxClient) -> (String, ()) {
    let op = admin.create_folder("", "work", "").await.unwrap();
    (op.resource_id, ())
}
