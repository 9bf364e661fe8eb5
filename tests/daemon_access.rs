//! Lockbox access control through real processes.
//!
//! The permission matrix: the action table of the seed documents (Yandex Lockbox access
//! management), written out here independently of the daemon's code, is checked for every
//! role at every level of the hierarchy, with the actions performed by a second local user
//! (`nobody`, via setuid in the CLI's process) whom the daemon identifies by SO_PEERCRED.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::LockboxClient;
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta, Page};
use lockbox_client::proto::lockbox::LockboxResource;
use lockbox_tests::payload::{secret, set};
use lockbox_tests::{Daemon, NOBODY, change_kms_binding, failure, is_root};
use std::os::unix::process::CommandExt;

/// The seed's actions, in the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Delete,
    ChangeMetadata,
    ReadMetadata,
    ChangeContent,
    ReadContent,
    ControlAccess,
}

const ACTIONS: [Action; 7] = [
    Action::Create,
    Action::Delete,
    Action::ChangeMetadata,
    Action::ReadMetadata,
    Action::ChangeContent,
    Action::ReadContent,
    Action::ControlAccess,
];

/// What each role may do, from the seeds: the action table for lockbox.admin, editor,
/// viewer and payloadViewer; the role descriptions for lockbox.auditor ("viewing info on
/// secrets") and the primitive roles (auditor: metadata only; viewer: "access to service data
/// in read mode"; editor: manage resources, not roles; admin: everything); the owners may do
/// everything; resource-manager.admin may assign roles (and so read what it assigns on);
/// clouds.member grants nothing by itself.
fn expected(role: &str, action: Action) -> bool {
    use Action::*;
    match role {
        "lockbox.admin"
        | "admin"
        | "organization-manager.organizations.owner"
        | "resource-manager.clouds.owner" => true,
        "lockbox.editor" => matches!(
            action,
            Create | Delete | ChangeMetadata | ReadMetadata | ChangeContent
        ),
        "editor" => action != ControlAccess,
        "lockbox.viewer" | "lockbox.auditor" | "auditor" => action == ReadMetadata,
        "viewer" => matches!(action, ReadMetadata | ReadContent),
        "lockbox.payloadViewer" => action == ReadContent,
        "resource-manager.admin" => matches!(action, ReadMetadata | ControlAccess),
        "resource-manager.clouds.member" | "none" => false,
        other => panic!("no expectation for {other}"),
    }
}

const ROLES: [&str; 13] = [
    "lockbox.auditor",
    "lockbox.viewer",
    "lockbox.editor",
    "lockbox.admin",
    "lockbox.payloadViewer",
    "auditor",
    "viewer",
    "editor",
    "admin",
    "resource-manager.admin",
    "resource-manager.clouds.owner",
    "resource-manager.clouds.member",
    "organization-manager.organizations.owner",
];

struct World {
    organization: String,
    cloud: String,
    folder: String,
}

async fn world(c: &LockboxClient) -> World {
    let (clouds, _) = c.list_clouds(Page::default()).await.unwrap();
    let (folders, _) = c.list_folders("", Page::default()).await.unwrap();
    World {
        organization: clouds[0].organization_id.clone(),
        cloud: clouds[0].id.clone(),
        folder: folders[0].id.clone(),
    }
}

async fn change(
    c: &LockboxClient,
    resource: &LockboxResource,
    add: bool,
    role: &str,
    subject: &str,
) {
    lockbox_tests::change_binding(c, resource, add, role, subject).await;
}

/// Runs the CLI as `nobody`.
fn run_as_nobody(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    daemon
        .cli()
        .uid(NOBODY)
        .gid(NOBODY)
        .args(args)
        .output()
        .unwrap()
}

/// Runs the CLI as `nobody`; `Ok` on success, `Err` on PERMISSION_DENIED, a panic otherwise.
fn as_nobody(daemon: &Daemon, args: &[&str]) -> Result<(), String> {
    let out = run_as_nobody(daemon, args);
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.starts_with("lockbox: PERMISSION_DENIED: "),
        "{args:?} failed with something other than PERMISSION_DENIED: {stderr}"
    );
    Err(stderr)
}

fn perform(
    daemon: &Daemon,
    w: &World,
    action: Action,
    target: &str,
    doomed: &str,
    case: usize,
) -> Result<(), String> {
    let name = format!("made-by-nobody-{case}");
    match action {
        Action::Create => as_nobody(
            daemon,
            &[
                "secret",
                "create",
                "--name",
                &name,
                "--folder-id",
                &w.folder,
            ],
        ),
        Action::Delete => as_nobody(daemon, &["secret", "delete", "--id", doomed]),
        Action::ChangeMetadata => as_nobody(
            daemon,
            &[
                "secret",
                "update",
                "--id",
                target,
                "--description",
                "changed",
            ],
        ),
        Action::ReadMetadata => as_nobody(daemon, &["secret", "get", "--id", target]),
        Action::ChangeContent => as_nobody(
            daemon,
            &[
                "secret",
                "add-version",
                "--id",
                target,
                "--payload",
                r#"[{"key":"k","text_value":"new"}]"#,
            ],
        ),
        Action::ReadContent => as_nobody(daemon, &["payload", "get", "--id", target]),
        Action::ControlAccess => as_nobody(
            daemon,
            &[
                "secret",
                "add-access-binding",
                "--id",
                target,
                "--role",
                "lockbox.auditor",
                "--subject",
                "user:somebody",
            ],
        ),
    }
}

fn started() -> (lockbox_tests::Kms, Daemon) {
    assert!(
        is_root(),
        "these tests run the CLI as another Unix user and must run as root (CI does)"
    );
    let (kms, daemon) = Daemon::with_kms("");
    daemon.open_socket_to_nobody();
    (kms, daemon)
}

#[tokio::test]
async fn permission_matrix_follows_the_seed_action_table() {
    let (_kms, daemon) = started();
    let admin = daemon.client().await;
    let w = world(&admin).await;
    let mut mismatches = Vec::new();
    let mut case = 0;
    let levels = ["organization", "cloud", "folder", "secret"];
    // Every role at every level for user:nobody; a few through its group and system groups;
    // and nobody with no binding at all.
    let mut cases: Vec<(&str, &str, String)> = Vec::new();
    for role in ROLES {
        for level in levels {
            cases.push((role, level, "user:nobody".into()));
        }
    }
    for (role, subject) in [
        ("lockbox.payloadViewer", "group:nogroup"),
        ("lockbox.editor", "system:allAuthenticatedUsers"),
        ("lockbox.viewer", "system:allUsers"),
    ] {
        cases.push((role, "folder", subject.into()));
    }
    cases.push(("none", "folder", String::new()));

    for (role, level, subject) in cases {
        case += 1;
        let target = admin
            .create_secret(secret(&format!("target-{case}"), vec![set("k", "v")]))
            .await
            .unwrap()
            .resource_id;
        let doomed = admin
            .create_secret(secret(&format!("doomed-{case}"), vec![]))
            .await
            .unwrap()
            .resource_id;
        let resources: Vec<LockboxResource> = match level {
            "organization" => vec![LockboxResource::Organization(w.organization.clone())],
            "cloud" => vec![LockboxResource::Cloud(w.cloud.clone())],
            "folder" => vec![LockboxResource::Folder(w.folder.clone())],
            _ => vec![
                LockboxResource::Secret(target.clone()),
                LockboxResource::Secret(doomed.clone()),
            ],
        };
        if role != "none" {
            for r in &resources {
                change(&admin, r, true, role, &subject).await;
            }
        }
        for action in ACTIONS {
            // Creating needs a binding on the folder or above: a binding on a secret cannot
            // grant it.
            let want = expected(role, action) && !(level == "secret" && action == Action::Create);
            let got = perform(&daemon, &w, action, &target, &doomed, case);
            if got.is_ok() != want {
                mismatches.push(format!(
                    "{role} on {level} for {subject}: {action:?} expected {} got {got:?}",
                    if want { "allowed" } else { "denied" }
                ));
            }
        }
        if role != "none" {
            for r in &resources {
                // The doomed secret may be gone; its bindings went with it.
                if admin
                    .list_access_bindings(r.clone(), Page::default())
                    .await
                    .is_ok()
                {
                    change(&admin, r, false, role, &subject).await;
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn denials_name_the_permission_and_listing_needs_a_role_on_the_container() {
    let (_kms, daemon) = started();
    let admin = daemon.client().await;
    let visible = admin
        .create_secret(secret("visible", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    admin
        .create_secret(secret("hidden", vec![set("k", "v")]))
        .await
        .unwrap();
    change(
        &admin,
        &LockboxResource::Secret(visible.clone()),
        true,
        "lockbox.viewer",
        "user:nobody",
    )
    .await;
    let list = |args: &[&str]| {
        daemon
            .cli()
            .uid(NOBODY)
            .gid(NOBODY)
            .args(args)
            .output()
            .unwrap()
    };

    // A role on one secret reads that secret, but does not list the folder: neither the
    // other secrets nor their ids (as page tokens) are the caller's to see.
    assert!(list(&["secret", "get", "--id", &visible]).status.success());
    let err = failure(
        &list(&["secret", "list", "--page-size", "1"]),
        "PERMISSION_DENIED",
    );
    assert!(err.contains("lockbox.secrets.get"), "{err}");
    assert!(err.contains("folder"), "{err}");
    failure(
        &list(&["resource-manager", "folder", "list"]),
        "PERMISSION_DENIED",
    );
    failure(
        &list(&["resource-manager", "cloud", "list"]),
        "PERMISSION_DENIED",
    );

    // A role on the folder lists all of it.
    let folder = admin.get_secret(&visible).await.unwrap().folder_id;
    change(
        &admin,
        &LockboxResource::Folder(folder),
        true,
        "lockbox.viewer",
        "user:nobody",
    )
    .await;
    let out = list(&["secret", "list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["hidden", "visible"]);

    let err = as_nobody(&daemon, &["payload", "get", "--id", &visible]).unwrap_err();
    assert!(err.contains("lockbox.payloads.get"), "{err}");
    assert!(err.contains(&format!("secret {visible}")), "{err}");
    assert!(err.contains("user:nobody"), "{err}");
}

#[tokio::test]
async fn nobody_grants_beyond_their_own_reach() {
    let (_kms, daemon) = started();
    let admin = daemon.client().await;
    let w = world(&admin).await;
    let folder = LockboxResource::Folder(w.folder.clone());
    // lockbox.admin on the folder may grant roles within its reach…
    change(&admin, &folder, true, "lockbox.admin", "user:nobody").await;
    let grant = |role: &str| {
        as_nobody(
            &daemon,
            &[
                "resource-manager",
                "folder",
                "add-access-binding",
                &w.folder,
                "--role",
                role,
                "--subject",
                "user:friend",
            ],
        )
    };
    grant("lockbox.payloadViewer").unwrap();
    grant("lockbox.editor").unwrap();
    // …but not the primitive admin (which can manage resources) nor an owner role.
    assert!(grant("admin").unwrap_err().contains("beyond"));
    assert!(
        grant("resource-manager.clouds.owner")
            .unwrap_err()
            .contains("beyond")
    );
    // And nothing at all on the cloud above.
    as_nobody(
        &daemon,
        &[
            "resource-manager",
            "cloud",
            "add-access-binding",
            &w.cloud,
            "--role",
            "lockbox.viewer",
            "--subject",
            "user:friend",
        ],
    )
    .unwrap_err();
    let (bindings, _) = admin
        .list_access_bindings(folder, Page::default())
        .await
        .unwrap();
    let friend: Vec<_> = bindings
        .iter()
        .filter(|b| b.subject == "user:friend")
        .map(|b| b.role_id.as_str())
        .collect();
    assert_eq!(friend, vec!["lockbox.editor", "lockbox.payloadViewer"]);
}

#[tokio::test]
async fn bad_bindings_are_refused_with_invalid_argument() {
    let (_kms, daemon) = started();
    let admin = daemon.client().await;
    let w = world(&admin).await;
    for (role, subject) in [
        ("lockbox.superuser", "user:a"),
        ("lockbox.viewer", "alice"),
        ("lockbox.viewer", "system:everyone"),
    ] {
        let err = admin
            .update_access_bindings(
                LockboxResource::Folder(w.folder.clone()),
                vec![AccessBindingDelta {
                    action: AccessBindingAction::Add,
                    binding: AccessBinding {
                        role_id: role.into(),
                        subject: subject.into(),
                    },
                }],
            )
            .await
            .unwrap_err();
        assert_eq!(
            lockbox_client::error_code(&err),
            lockbox_client::proto::ErrorCode::InvalidArgument,
            "{err}"
        );
    }
    let too_many: Vec<_> = (0..1001)
        .map(|i| AccessBindingDelta {
            action: AccessBindingAction::Add,
            binding: AccessBinding {
                role_id: "lockbox.viewer".into(),
                subject: format!("user:u{i}"),
            },
        })
        .collect();
    let err = admin
        .update_access_bindings(LockboxResource::Folder(w.folder.clone()), too_many)
        .await
        .unwrap_err();
    assert_eq!(
        lockbox_client::error_code(&err),
        lockbox_client::proto::ErrorCode::InvalidArgument
    );
    let (bindings, _) = admin
        .list_access_bindings(LockboxResource::Folder(w.folder), Page::default())
        .await
        .unwrap();
    assert!(bindings.is_empty());
}

#[tokio::test]
async fn reading_a_kms_keyed_secret_needs_both_authorities() {
    use lockbox_client::proto::kms::{CreateSymmetricKey, SymmetricAlgorithm};
    let (kms, daemon) = started();
    let k = kms.client().await;
    let admin = daemon.client().await;
    let key = k
        .create_symmetric_key(CreateSymmetricKey {
            folder_id: "apps".into(),
            name: String::new(),
            description: String::new(),
            labels: Default::default(),
            default_algorithm: SymmetricAlgorithm::Aes256,
            rotation_period: None,
            deletion_protection: false,
        })
        .await
        .unwrap()
        .id;
    change_kms_binding(
        &k,
        &key,
        true,
        "kms.keys.encrypterDecrypter",
        &admin.subject(),
    )
    .await;
    let mut spec = secret("split", vec![set("k", "v")]);
    spec.kms_key_id = key.clone();
    let id = admin.create_secret(spec).await.unwrap().resource_id;
    let on_secret = LockboxResource::Secret(id.clone());
    let read = || as_nobody(&daemon, &["payload", "get", "--id", &id, "--key", "k"]);

    // lockbox.admin without a KMS role: the KMS refuses.
    change(&admin, &on_secret, true, "lockbox.admin", "user:nobody").await;
    let err = read().unwrap_err();
    assert!(
        err.contains("lockbox-kms") && err.contains("kms.keys.decrypt"),
        "{err}"
    );
    change(&admin, &on_secret, false, "lockbox.admin", "user:nobody").await;

    // kms.admin and even kms.keys.decrypter without a Lockbox role: lockboxd refuses.
    change_kms_binding(&k, &key, true, "kms.admin", "user:nobody").await;
    change_kms_binding(&k, &key, true, "kms.keys.decrypter", "user:nobody").await;
    let err = read().unwrap_err();
    assert!(err.contains("lockbox.payloads.get"), "{err}");

    // Both: allowed.
    change(
        &admin,
        &on_secret,
        true,
        "lockbox.payloadViewer",
        "user:nobody",
    )
    .await;
    read().unwrap();

    // Writing a version needs kms.keys.encrypter as well as lockbox.editor.
    change(&admin, &on_secret, true, "lockbox.editor", "user:nobody").await;
    let write = || {
        as_nobody(
            &daemon,
            &[
                "secret",
                "add-version",
                "--id",
                &id,
                "--payload",
                r#"[{"key":"k","text_value":"w"}]"#,
            ],
        )
    };
    let err = write().unwrap_err();
    assert!(err.contains("kms.keys.encrypt"), "{err}");
    change_kms_binding(&k, &key, true, "kms.keys.encrypter", "user:nobody").await;
    write().unwrap();
    assert!(
        kms.log().contains("user:nobody"),
        "the KMS logs the relayed subject"
    );
}

/// Runs the CLI as `nobody`; its stderr when it fails with `code`.
fn as_nobody_failing(daemon: &Daemon, args: &[&str], code: &str) -> String {
    failure(&run_as_nobody(daemon, args), code)
}

#[tokio::test]
async fn answers_tell_nothing_the_caller_may_not_read() {
    let (_kms, daemon) = started();
    let admin = daemon.client().await;
    let id = admin
        .create_secret(secret("named", vec![set("k", &"v".repeat(60_000))]))
        .await
        .unwrap()
        .resource_id;

    // By name, without a role: the same refusal whether the secret exists or not.
    let exists = as_nobody_failing(
        &daemon,
        &["payload", "get", "--name", "named"],
        "PERMISSION_DENIED",
    );
    let missing = as_nobody_failing(
        &daemon,
        &["payload", "get", "--name", "absent"],
        "PERMISSION_DENIED",
    );
    assert_eq!(exists.replace("\"named\"", "\"absent\""), missing);
    assert!(!exists.contains(&id), "{exists}");
    // With the role on the folder, a missing name is just missing.
    let folder = admin.get_secret(&id).await.unwrap().folder_id;
    change(
        &admin,
        &LockboxResource::Folder(folder.clone()),
        true,
        "lockbox.payloadViewer",
        "user:nobody",
    )
    .await;
    as_nobody_failing(
        &daemon,
        &["payload", "get", "--name", "absent"],
        "NOT_FOUND",
    );
    change(
        &admin,
        &LockboxResource::Folder(folder),
        false,
        "lockbox.payloadViewer",
        "user:nobody",
    )
    .await;

    // An editor changes the content without reading it: no answer tells which keys the
    // current version has or how large it is.
    change(
        &admin,
        &LockboxResource::Secret(id.clone()),
        true,
        "lockbox.editor",
        "user:nobody",
    )
    .await;
    let big = format!(r#"[{{"key":"k2","text_value":"{}"}}]"#, "w".repeat(6_000));
    let err = as_nobody_failing(
        &daemon,
        &["secret", "add-version", "--id", &id, "--payload", &big],
        "RESOURCE_EXHAUSTED",
    );
    assert!(
        err.contains("quota lockbox.payload.size exceeded") && err.contains("65536 bytes"),
        "{err}"
    );
    assert!(
        !err.contains("66003"),
        "the size of the payload shows: {err}"
    );
    // Whoever may read the payload is told its size.
    let err = failure(
        &daemon.run(["secret", "add-version", "--id", &id, "--payload", &big]),
        "RESOURCE_EXHAUSTED",
    );
    assert!(err.contains("66003 bytes"), "{err}");
}
