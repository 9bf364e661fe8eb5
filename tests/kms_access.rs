//! KMS access control through real processes: a second local user identified by
//! SO_PEERCRED, role bindings at each level, and relayed (on-behalf-of) requests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta, Page};
use lockbox_client::proto::kms::{CreateSymmetricKey, ResourceRef, SymmetricAlgorithm};
use lockbox_client::proto::{ErrorCode, Principal};
use lockbox_client::{KmsClient, error_code};
use lockbox_tests::{Kms, KmsOptions, failure, success};
use std::collections::BTreeMap;

fn spec(folder: &str) -> CreateSymmetricKey {
    CreateSymmetricKey {
        folder_id: folder.into(),
        name: String::new(),
        description: String::new(),
        labels: BTreeMap::new(),
        default_algorithm: SymmetricAlgorithm::Aes256,
        rotation_period: None,
        deletion_protection: false,
    }
}

/// A started KMS whose enrolled relay is the test's own user (also its administrator), and
/// that user's subject.
fn started_with_me_as_relay() -> (Kms, String) {
    let me = lockbox_tests::my_subject();
    let mut kms = Kms::init(KmsOptions {
        relays: vec![me.clone()],
        ..KmsOptions::default()
    });
    kms.start();
    (kms, me)
}

async fn grant(c: &KmsClient, resource: ResourceRef, role: &str, subject: &str) {
    c.update_access_bindings(
        resource,
        vec![AccessBindingDelta {
            action: AccessBindingAction::Add,
            binding: AccessBinding {
                role_id: role.into(),
                subject: subject.into(),
            },
        }],
    )
    .await
    .unwrap();
}

/// Grants the caller `role` on `key_id` and encrypts `plaintext` with the key as itself.
async fn encrypt_as_grantee(
    c: &KmsClient,
    key_id: &str,
    role: &str,
    aad_context: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let me = c.subject().to_owned();
    grant(c, ResourceRef::Key(key_id.to_owned()), role, &me).await;
    c.encrypt(key_id, None, aad_context, plaintext)
        .await
        .unwrap()
        .ciphertext
}

/// Runs the `lockbox` CLI as the unprivileged `nobody` user.
fn as_nobody(kms: &Kms, args: &[&str]) -> std::process::Output {
    kms.run_as_nobody(args)
}

#[tokio::test]
async fn a_second_local_user_is_identified_and_needs_its_own_roles() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    kms.open_socket_to_nobody();
    let admin = kms.client().await;
    let key = admin.create_symmetric_key(spec("f")).await.unwrap();
    let ct = encrypt_as_grantee(&admin, &key.id, "kms.keys.encrypter", b"", b"for nobody").await;
    let ct_file = kms.dir().join("ct");
    std::fs::write(&ct_file, &ct).unwrap();
    std::fs::set_permissions(
        &ct_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let ct_path = ct_file.to_str().unwrap();
    let decrypt = [
        "kms",
        "symmetric-crypto",
        "decrypt",
        "--id",
        &key.id,
        "--ciphertext-file",
        ct_path,
    ];

    // No binding at all: refused, and the message names the permission and the subject.
    let err = failure(&as_nobody(&kms, &decrypt), "PERMISSION_DENIED");
    assert!(err.contains("kms.keys.decrypt"), "{err}");
    assert!(err.contains("user:nobody"), "{err}");
    // The admin cannot decrypt either: management roles do not include crypto.
    assert_eq!(
        error_code(&admin.decrypt(&key.id, b"", &ct).await.unwrap_err()),
        ErrorCode::PermissionDenied
    );

    // An encrypter-only grant is not enough to decrypt.
    grant(
        &admin,
        ResourceRef::Key(key.id.clone()),
        "kms.keys.encrypter",
        "user:nobody",
    )
    .await;
    failure(&as_nobody(&kms, &decrypt), "PERMISSION_DENIED");

    // A decrypter grant through nobody's group, on the folder, is.
    grant(
        &admin,
        ResourceRef::Folder("f".into()),
        "kms.keys.decrypter",
        "group:nogroup",
    )
    .await;
    let out = success(&as_nobody(&kms, &decrypt));
    assert_eq!(out, "for nobody");

    // A grant on another folder does not leak across.
    let other = admin.create_symmetric_key(spec("g")).await.unwrap();
    let err = failure(
        &as_nobody(&kms, &["kms", "symmetric-key", "get", &other.id]),
        "PERMISSION_DENIED",
    );
    assert!(err.contains("kms.keys.get"), "{err}");

    // nobody may not manage bindings, and may not relay.
    let err = failure(
        &as_nobody(
            &kms,
            &[
                "kms",
                "access-binding",
                "add",
                "--root",
                "--role",
                "kms.admin",
                "--subject",
                "user:nobody",
            ],
        ),
        "PERMISSION_DENIED",
    );
    assert!(err.contains("kms.keys.updateAccessBindings"), "{err}");
}

#[tokio::test]
async fn system_groups_match_every_caller() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    kms.open_socket_to_nobody();
    let admin = kms.client().await;
    let key = admin.create_symmetric_key(spec("f")).await.unwrap();
    failure(
        &as_nobody(&kms, &["kms", "symmetric-key", "get", &key.id]),
        "PERMISSION_DENIED",
    );
    grant(
        &admin,
        ResourceRef::Root,
        "kms.viewer",
        "system:allAuthenticatedUsers",
    )
    .await;
    let out = success(&as_nobody(
        &kms,
        &["kms", "symmetric-key", "get", &key.id, "--format", "json"],
    ));
    assert!(out.contains(&key.id));
}

#[tokio::test]
async fn relayed_subjects_are_authorized_as_themselves() {
    // The test's own user is both the administrator and the enrolled relay.
    let (mut kms, me) = started_with_me_as_relay();
    let admin = kms.client().await;
    let key = admin.create_symmetric_key(spec("f")).await.unwrap();
    let ct = encrypt_as_grantee(
        &admin,
        &key.id,
        "kms.keys.encrypterDecrypter",
        b"",
        b"relayed",
    )
    .await;

    let alice = admin.on_behalf_of(Principal {
        subject: "user:alice".into(),
        groups: vec!["group:finance".into()],
    });
    // The relay's own rights do not carry over to the subject it acts for.
    let err = alice.decrypt(&key.id, b"", &ct).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::PermissionDenied);
    assert!(err.to_string().contains("user:alice"), "{err}");

    grant(
        &admin,
        ResourceRef::Key(key.id.clone()),
        "kms.keys.decrypter",
        "group:finance",
    )
    .await;
    let plain = alice.decrypt(&key.id, b"", &ct).await.unwrap();
    assert_eq!(plain.plaintext.expose(), b"relayed");
    // Still only decrypt: encrypt needs its own role.
    assert_eq!(
        error_code(&alice.encrypt(&key.id, None, b"", b"x").await.unwrap_err()),
        ErrorCode::PermissionDenied
    );

    // Stopping the KMS drains its audit writer, so every decision is in the log.
    kms.stop();
    let log = kms.log();
    let line = |permission: &str, allowed: bool| {
        format!(
            "AUDIT lockbox-kms relayed decision: relay={me:?} subject=\"user:alice\" \
             permission={permission} key={:?} allowed={allowed}\n",
            key.id
        )
    };
    // Refused, then allowed once the group holds decrypter, then encrypt refused.
    for (permission, allowed, times) in [
        ("kms.keys.decrypt", false, 1),
        ("kms.keys.decrypt", true, 1),
        ("kms.keys.encrypt", false, 1),
    ] {
        assert_eq!(
            log.matches(&line(permission, allowed)).count(),
            times,
            "one audit line for {permission} allowed={allowed}: {log}"
        );
    }
}

/// Subjects come from user and group names, which may hold any character: lines of
/// multi-byte names, of lengths that put the writer's 4,096-byte chunk limits inside
/// characters, are written whole, and the KMS goes on serving (a writer that cut a chunk
/// inside a character panicked, and every relayed request then waited for ever).
#[tokio::test]
async fn relayed_subjects_with_multi_byte_names_are_audited_whole() {
    let (mut kms, me) = started_with_me_as_relay();
    let admin = kms.client().await;
    let key = admin.create_symmetric_key(spec("f")).await.unwrap();
    let ct = encrypt_as_grantee(&admin, &key.id, "kms.keys.encrypterDecrypter", b"", b"x").await;
    grant(
        &admin,
        ResourceRef::Key(key.id.clone()),
        "kms.keys.decrypter",
        "group:team",
    )
    .await;
    // 2-, 3- and 4-byte characters, names of 1 to 200 of them: about 250 KiB of lines, sent
    // all at once on one connection so they gather in the writer's buffer and many chunk
    // limits fall inside lines, at offsets that vary from line to line.
    let subjects: Vec<String> = (1..=200)
        .map(|n| format!("user:{}", ["ü", "€", "😀"][n % 3].repeat(n)))
        .collect();
    let mut reads = tokio::task::JoinSet::new();
    for subject in &subjects {
        let relayed = admin.on_behalf_of(Principal {
            subject: subject.clone(),
            groups: vec!["group:team".into()],
        });
        let (key_id, ct) = (key.id.clone(), ct.clone());
        reads.spawn(async move { relayed.decrypt(&key_id, b"", &ct).await });
    }
    // A generous bound, only so that a KMS that stopped answering fails the test instead of
    // hanging it.
    let all = async {
        while let Some(read) = reads.join_next().await {
            assert_eq!(read.unwrap().unwrap().plaintext.expose(), b"x");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("the KMS stopped answering relayed decrypts");
    // Still serving.
    admin.decrypt(&key.id, b"", &ct).await.unwrap();
    kms.stop();
    let log = kms.log();
    assert!(!log.contains("panicked"), "{log}");
    for subject in &subjects {
        let line = format!(
            "AUDIT lockbox-kms relayed decision: relay={me:?} subject={subject:?} \
             permission=kms.keys.decrypt key={:?} allowed=true\n",
            key.id
        );
        assert_eq!(log.matches(&line).count(), 1, "{subject}: {log}");
    }
}

#[tokio::test]
async fn on_behalf_of_is_refused_from_callers_that_are_not_relays() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let admin = kms.client().await;
    let key = admin.create_symmetric_key(spec("f")).await.unwrap();
    let forged = admin.on_behalf_of(Principal {
        subject: admin.subject().to_owned(),
        groups: Vec::new(),
    });
    let err = forged.get_symmetric_key(&key.id).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::PermissionDenied);
    assert!(err.to_string().contains("not an enrolled relay"), "{err}");

    // Decrypt is read in place, apart from other requests: it is refused the same way, even
    // for a subject that may decrypt with the key itself.
    let ct = encrypt_as_grantee(
        &admin,
        &key.id,
        "kms.keys.encrypterDecrypter",
        b"ctx",
        b"mine",
    )
    .await;
    let plain = admin.decrypt(&key.id, b"ctx", &ct).await.unwrap();
    assert_eq!(plain.plaintext.expose(), b"mine");
    let err = forged.decrypt(&key.id, b"ctx", &ct).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::PermissionDenied);
    assert!(err.to_string().contains("not an enrolled relay"), "{err}");
}

#[tokio::test]
async fn bindings_are_validated_listed_and_replaced() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let c = kms.client().await;
    let me = c.subject().to_owned();
    let bad = |role: &str, subject: &str| AccessBindingDelta {
        action: AccessBindingAction::Add,
        binding: AccessBinding {
            role_id: role.into(),
            subject: subject.into(),
        },
    };
    for (role, subject) in [
        ("kms.owner", "user:a"),
        ("kms.admin", "alice"),
        ("kms.admin", "system:x"),
    ] {
        let err = c
            .update_access_bindings(ResourceRef::Folder("f".into()), vec![bad(role, subject)])
            .await
            .unwrap_err();
        assert_eq!(
            error_code(&err),
            ErrorCode::InvalidArgument,
            "{role} {subject}: {err}"
        );
    }
    let too_many: Vec<_> = (0..1001)
        .map(|i| bad("kms.viewer", &format!("user:u{i}")))
        .collect();
    assert_eq!(
        error_code(
            &c.update_access_bindings(ResourceRef::Folder("f".into()), too_many)
                .await
                .unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    let (root, _) = c
        .list_access_bindings(ResourceRef::Root, Page::default())
        .await
        .unwrap();
    assert_eq!(
        root,
        vec![AccessBinding {
            role_id: "kms.admin".into(),
            subject: me
        }]
    );
    let (folder, _) = c
        .list_access_bindings(ResourceRef::Folder("f".into()), Page::default())
        .await
        .unwrap();
    assert!(folder.is_empty(), "rejected updates changed nothing");

    c.set_access_bindings(
        ResourceRef::Folder("f".into()),
        vec![
            AccessBinding {
                role_id: "kms.viewer".into(),
                subject: "user:a".into(),
            },
            AccessBinding {
                role_id: "kms.editor".into(),
                subject: "user:b".into(),
            },
        ],
    )
    .await
    .unwrap();
    let (folder, _) = c
        .list_access_bindings(ResourceRef::Folder("f".into()), Page::default())
        .await
        .unwrap();
    assert_eq!(folder.len(), 2);
    assert_eq!(
        error_code(
            &c.list_access_bindings(
                ResourceRef::Key("abj00000000000000000".into()),
                Page::default()
            )
            .await
            .unwrap_err()
        ),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn a_relay_may_relay_only_crypto() {
    let (kms, _) = started_with_me_as_relay();
    let admin = kms.client().await;
    let key = admin.create_symmetric_key(spec("f")).await.unwrap();
    // alice may do everything with the key herself...
    for role in ["kms.admin", "kms.keys.encrypterDecrypter"] {
        grant(&admin, ResourceRef::Root, role, "user:alice").await;
    }
    let alice = admin.on_behalf_of(Principal {
        subject: "user:alice".into(),
        groups: Vec::new(),
    });
    // ...but through a relay, only the crypto a secrets daemon does for its callers.
    let ct = alice.encrypt(&key.id, None, b"c", b"p").await.unwrap();
    let plain = alice.decrypt(&key.id, b"c", &ct.ciphertext).await.unwrap();
    assert_eq!(plain.plaintext.expose(), b"p");
    alice
        .re_encrypt(&key.id, None, b"d", &key.id, b"c", &ct.ciphertext)
        .await
        .unwrap();
    alice
        .generate_data_key(&key.id, None, b"c", SymmetricAlgorithm::Aes256, true)
        .await
        .unwrap();
    let refused = |err: lockbox_client::CallError, name: &str| {
        assert_eq!(error_code(&err), ErrorCode::PermissionDenied, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("{name} may not be relayed")),
            "{err}"
        );
    };
    refused(
        alice.create_symmetric_key(spec("f")).await.unwrap_err(),
        "CreateSymmetricKey",
    );
    refused(
        alice.rotate(&key.id).await.unwrap_err(),
        "RotateSymmetricKey",
    );
    refused(
        alice
            .update_access_bindings(
                ResourceRef::Root,
                vec![AccessBindingDelta {
                    action: AccessBindingAction::Add,
                    binding: AccessBinding {
                        role_id: "kms.admin".into(),
                        subject: "user:mallory".into(),
                    },
                }],
            )
            .await
            .unwrap_err(),
        "UpdateAccessBindings",
    );
    let version = admin
        .get_symmetric_key(&key.id)
        .await
        .unwrap()
        .primary_version
        .id;
    refused(
        alice
            .schedule_version_destruction(&key.id, &version, None)
            .await
            .unwrap_err(),
        "ScheduleVersionDestruction",
    );
    refused(
        alice.get_symmetric_key(&key.id).await.unwrap_err(),
        "GetSymmetricKey",
    );
}

#[test]
fn only_a_unix_user_can_be_enrolled_as_a_relay() {
    for flag in ["--relay", "--daemon"] {
        for subject in [
            "group:daemons",
            "serviceAccount:aje00000000000000000",
            "user:",
            "alice",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let out = std::process::Command::new(lockbox_tests::binary("lockbox-kms"))
                .arg("init")
                .arg("--state-dir")
                .arg(dir.path().join("state"))
                .args([flag, subject])
                .output()
                .unwrap();
            assert!(!out.status.success(), "{flag} {subject}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("cannot be a relay: only a Unix user can"),
                "{flag} {subject}: {err}"
            );
            assert!(!dir.path().join("state").join("keystore.sealed").exists());
        }
    }
}
