//! Service accounts through real processes: keys created through the CLI, tokens signed by
//! the client, and every way a token can be wrong answered with UNAUTHENTICATED.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::token::LOCKBOXD_AUDIENCE;
use lockbox_client::sa::{KeyFile, TOKEN_LIFETIME, now};
use lockbox_client::{LockboxClient, error_code};
use lockbox_tests::payload::{map, secret, set};
use lockbox_tests::{Daemon, failure, json, success};
use p256::pkcs8::{EncodePrivateKey, LineEnding};

fn unauthenticated(err: lockbox_client::CallError, reason: &str) {
    assert_eq!(error_code(&err), ErrorCode::Unauthenticated, "{err}");
    assert!(err.to_string().contains(reason), "{reason}: {err}");
}

async fn account_with_key(admin: &LockboxClient) -> (String, KeyFile) {
    let sa = admin
        .create_service_account("", "robot", "")
        .await
        .unwrap()
        .id;
    let key = admin
        .create_service_account_key(&sa, "test key")
        .await
        .unwrap();
    (sa, key)
}

#[tokio::test]
async fn a_service_account_acts_with_its_own_roles_through_the_cli() {
    let (_kms, daemon) = Daemon::with_kms("");
    let sa = deployer_through_the_cli(&daemon);
    let key_file = daemon_dir(&daemon).join("key.json");
    success(&daemon.run([
        "iam",
        "key",
        "create",
        "--service-account-id",
        &sa,
        "--output",
        key_file.to_str().unwrap(),
    ]));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file holds a private key");
    let keys = json(&daemon.run([
        "iam",
        "key",
        "list",
        "--service-account-id",
        &sa,
        "--format",
        "json",
    ]));
    assert_eq!(keys.as_array().unwrap().len(), 1);

    let admin = daemon.client().await;
    let id = admin
        .create_secret(secret("deploy-token", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let as_robot = |args: &[&str]| {
        let mut full = vec!["--sa-key", key_file.to_str().unwrap()];
        full.extend_from_slice(args);
        daemon.run(full)
    };
    let err = failure(
        &as_robot(&["payload", "get", "--id", &id]),
        "PERMISSION_DENIED",
    );
    assert!(err.contains(&format!("serviceAccount:{sa}")), "{err}");
    success(&daemon.run([
        "secret",
        "add-access-binding",
        "--id",
        &id,
        "--role",
        "lockbox.payloadViewer",
        "--subject",
        &format!("serviceAccount:{sa}"),
    ]));
    assert_eq!(
        success(&as_robot(&["payload", "get", "--id", &id, "--key", "k"])),
        "v"
    );
    // Only what the role allows: no metadata.
    failure(
        &as_robot(&["secret", "get", "--id", &id]),
        "PERMISSION_DENIED",
    );

    // Deleting the account refuses its key from then on.
    success(&daemon.run(["iam", "service-account", "delete", &sa]));
    failure(
        &as_robot(&["payload", "get", "--id", &id]),
        "UNAUTHENTICATED",
    );
}

/// Creates the service account `deployer` with the CLI; its id.
fn deployer_through_the_cli(daemon: &Daemon) -> String {
    let created = json(&daemon.run([
        "iam",
        "service-account",
        "create",
        "--name",
        "deployer",
        "--format",
        "json",
    ]));
    created["id"].as_str().unwrap().to_owned()
}

fn daemon_dir(daemon: &Daemon) -> std::path::PathBuf {
    daemon.socket().parent().unwrap().to_owned()
}

#[tokio::test]
async fn good_tokens_are_accepted_once() {
    let (_kms, daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (sa, key) = account_with_key(&admin).await;
    let robot = LockboxClient::connect_as(&daemon.socket(), &key)
        .await
        .unwrap();
    let id = admin
        .create_secret(secret("s", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    admin
        .update_access_bindings(
            lockbox_client::proto::lockbox::LockboxResource::Secret(id.clone()),
            vec![lockbox_client::proto::common::AccessBindingDelta {
                action: lockbox_client::proto::common::AccessBindingAction::Add,
                binding: lockbox_client::proto::common::AccessBinding {
                    role_id: "lockbox.payloadViewer".into(),
                    subject: format!("serviceAccount:{sa}"),
                },
            }],
        )
        .await
        .unwrap();
    assert_eq!(map(&robot.get_payload(&id, None).await.unwrap())["k"], "v");

    // Replay: the same token on another connection.
    let token = key
        .sign_token(LOCKBOXD_AUDIENCE, now(), TOKEN_LIFETIME)
        .unwrap();
    let first = daemon.client().await;
    assert_eq!(
        first.authenticate(&token).await.unwrap(),
        format!("serviceAccount:{sa}")
    );
    unauthenticated(
        daemon
            .client()
            .await
            .authenticate(&token)
            .await
            .unwrap_err(),
        "already used",
    );
    // A connection switches once.
    let again = key
        .sign_token(LOCKBOXD_AUDIENCE, now(), TOKEN_LIFETIME)
        .unwrap();
    assert_eq!(
        error_code(&first.authenticate(&again).await.unwrap_err()),
        ErrorCode::FailedPrecondition
    );
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated() {
    let (_kms, daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (_sa, key) = account_with_key(&admin).await;
    let try_token = |token: String| {
        let socket = daemon.socket();
        async move {
            LockboxClient::connect(&socket)
                .await
                .unwrap()
                .authenticate(&token)
                .await
                .unwrap_err()
        }
    };

    // Another audience.
    unauthenticated(
        try_token(key.sign_token("lockbox-kms", now(), 60).unwrap()).await,
        "audience",
    );
    // Too long a lifetime.
    unauthenticated(
        try_token(key.sign_token(LOCKBOXD_AUDIENCE, now(), 7200).unwrap()).await,
        "lifetime",
    );
    // Issued in the future.
    unauthenticated(
        try_token(key.sign_token(LOCKBOXD_AUDIENCE, now() + 3600, 60).unwrap()).await,
        "future",
    );
    // Forged: the right key id, signed by a different private key.
    let forger = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let forged = KeyFile {
        private_key: forger.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        ..key.clone()
    };
    unauthenticated(
        try_token(forged.sign_token(LOCKBOXD_AUDIENCE, now(), 60).unwrap()).await,
        "bad signature",
    );
    // Tampered claims: a valid token whose claims part is swapped for another's.
    let a = key.sign_token(LOCKBOXD_AUDIENCE, now(), 60).unwrap();
    let b = key.sign_token(LOCKBOXD_AUDIENCE, now(), 120).unwrap();
    let pa: Vec<&str> = a.split('.').collect();
    let pb: Vec<&str> = b.split('.').collect();
    unauthenticated(
        try_token(format!("{}.{}.{}", pa[0], pb[1], pa[2])).await,
        "bad signature",
    );
    // Garbage.
    unauthenticated(try_token("not-a-token".into()).await, "not a compact JWS");

    // Expired: the daemon's clock moves past the token's lifetime.
    let expiring = key.sign_token(LOCKBOXD_AUDIENCE, now(), 60).unwrap();
    admin.danger_advance_clock(3600).await.unwrap();
    unauthenticated(try_token(expiring).await, "expired");

    // A deleted key.
    let fresh = key.sign_token(LOCKBOXD_AUDIENCE, now() + 3600, 60).unwrap();
    admin
        .delete_service_account_key(&key.service_account_id, &key.id)
        .await
        .unwrap();
    unauthenticated(try_token(fresh).await, "deleted key");
}

/// lockboxd remembers a connection's last payload read to skip the lookups and the check of
/// the next one; what it remembers must never outlive a change of caller or of bindings.
#[tokio::test]
async fn a_connection_s_next_read_follows_its_caller_and_its_bindings() {
    use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta};
    use lockbox_client::proto::lockbox::LockboxResource;
    let (_kms, daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (sa, key) = account_with_key(&admin).await;
    let id = admin
        .create_secret(secret("s", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let viewer = |action| {
        vec![AccessBindingDelta {
            action,
            binding: AccessBinding {
                role_id: "lockbox.payloadViewer".into(),
                subject: format!("serviceAccount:{sa}"),
            },
        }]
    };
    let secret = || LockboxResource::Secret(id.clone());

    // One connection reads as the local user (the bootstrap admin), then switches to the
    // account, which holds no role yet: the admin's read says nothing about it.
    let c = daemon.client().await;
    assert_eq!(map(&c.get_payload(&id, None).await.unwrap())["k"], "v");
    let token = key
        .sign_token(LOCKBOXD_AUDIENCE, now(), TOKEN_LIFETIME)
        .unwrap();
    c.authenticate(&token).await.unwrap();
    assert_eq!(
        error_code(&c.get_payload(&id, None).await.unwrap_err()),
        ErrorCode::PermissionDenied,
        "after switching to the account"
    );

    // Granted on another connection: the next read on this one sees it; revoked: likewise.
    admin
        .update_access_bindings(secret(), viewer(AccessBindingAction::Add))
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(map(&c.get_payload(&id, None).await.unwrap())["k"], "v");
    }
    admin
        .update_access_bindings(secret(), viewer(AccessBindingAction::Remove))
        .await
        .unwrap();
    assert_eq!(
        error_code(&c.get_payload(&id, None).await.unwrap_err()),
        ErrorCode::PermissionDenied,
        "after the role was revoked"
    );
}

/// A token with exactly `claims`, signed with `key`'s private key.
fn token_with(key: &KeyFile, claims: lockbox_client::proto::token::Claims) -> String {
    use lockbox_client::proto::token;
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(&key.private_key).unwrap();
    let header = token::Header {
        alg: token::ALGORITHM.into(),
        typ: "JWT".into(),
        kid: key.id.clone(),
    };
    let input = token::signing_input(&header, &claims);
    let signature: p256::ecdsa::Signature = signing.sign(input.as_bytes());
    token::assemble(&input, &signature.to_bytes())
}

#[tokio::test]
async fn claims_that_would_overflow_are_refused() {
    let (_kms, daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (sa, key) = account_with_key(&admin).await;
    let claims = |iat: i64, exp: i64, jti: &str| lockbox_client::proto::token::Claims {
        iss: sa.clone(),
        aud: LOCKBOXD_AUDIENCE.into(),
        iat,
        exp,
        jti: jti.into(),
    };
    for (iat, exp) in [(i64::MIN, 100), (i64::MIN, i64::MAX), (now(), i64::MAX)] {
        let client = daemon.client().await;
        let err = client
            .authenticate(&token_with(&key, claims(iat, exp, "j")))
            .await
            .unwrap_err();
        unauthenticated(err, "lifetime");
    }
    // Near the top of the range, expiry plus skew must not wrap into the past.
    let client = daemon.client().await;
    let err = client
        .authenticate(&token_with(
            &key,
            claims(i64::MAX - 100, i64::MAX - 50, "j"),
        ))
        .await
        .unwrap_err();
    unauthenticated(err, "future");
    // A token id longer than any client makes.
    let client = daemon.client().await;
    let err = client
        .authenticate(&token_with(
            &key,
            claims(now(), now() + 60, &"j".repeat(129)),
        ))
        .await
        .unwrap_err();
    unauthenticated(err, "jti");
}

#[tokio::test]
async fn the_replay_cache_is_bounded_and_forgets_expired_tokens() {
    let (_kms, daemon) = Daemon::with_kms("[limits]\nlive_tokens = 2\n");
    let admin = daemon.client().await;
    let (_sa, key) = account_with_key(&admin).await;
    let start = now();
    for _ in 0..2 {
        let token = key.sign_token(LOCKBOXD_AUDIENCE, start, 60).unwrap();
        daemon.client().await.authenticate(&token).await.unwrap();
    }
    let token = key.sign_token(LOCKBOXD_AUDIENCE, start, 60).unwrap();
    let err = daemon
        .client()
        .await
        .authenticate(&token)
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::ResourceExhausted, "{err}");
    assert!(err.to_string().contains("2 remembered"), "{err}");
    // Once the remembered tokens have expired, their room is free again.
    let later = admin.danger_advance_clock(300).await.unwrap();
    let token = key.sign_token(LOCKBOXD_AUDIENCE, later, 60).unwrap();
    daemon.client().await.authenticate(&token).await.unwrap();
}

#[test]
fn a_key_file_never_goes_through_an_existing_file_or_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let (_kms, daemon) = Daemon::with_kms("");
    let sa = deployer_through_the_cli(&daemon);
    let dir = daemon_dir(&daemon);
    // A file others may read, and a symlink to a file elsewhere, where the key is to go.
    let readable = dir.join("readable.json");
    std::fs::write(&readable, "old").unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let elsewhere = dir.join("elsewhere");
    std::fs::write(&elsewhere, "untouched").unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    for target in [&readable, &link] {
        success(&daemon.run([
            "iam",
            "key",
            "create",
            "--service-account-id",
            &sa,
            "--output",
            target.to_str().unwrap(),
        ]));
        let meta = std::fs::symlink_metadata(target).unwrap();
        assert!(meta.is_file(), "{} is not a plain file", target.display());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(
            std::fs::read_to_string(target)
                .unwrap()
                .contains("PRIVATE KEY")
        );
    }
    assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
    // Nothing is left behind beside them.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
