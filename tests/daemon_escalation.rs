//! No escalation and no leftovers: a container is deleted only when empty, bindings go with
//! what they were on, the first start's grant of ownership is never repeated, lists need a
//! role on what they list, and a key for a service account needs the reach to grant what
//! the account holds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::lockbox::LockboxResource;
use lockbox_client::{CallError, LockboxClient, error_code};
use lockbox_daemon::store::records::Records;
use lockbox_daemon::store::rocks::RocksStore;
use lockbox_tests::Daemon;
use lockbox_tests::payload::{secret, set};
use std::sync::Arc;

async fn change(
    admin: &LockboxClient,
    resource: LockboxResource,
    add: bool,
    role: &str,
    subject: &str,
) {
    lockbox_tests::change_binding(admin, &resource, add, role, subject).await;
}

fn refused(err: &CallError, code: ErrorCode, needle: &str) {
    assert_eq!(error_code(err), code, "{err}");
    assert!(err.to_string().contains(needle), "{needle}: {err}");
}

/// Every binding the stopped daemon's data directory holds, as `resource subject role`.
fn stored_bindings(daemon: &Daemon) -> Vec<String> {
    let store = RocksStore::open(&daemon.data_dir()).unwrap();
    let records = Records::new(Arc::new(store)).unwrap();
    records
        .all_bindings()
        .unwrap()
        .into_iter()
        .flat_map(|(resource, list)| {
            list.into_iter()
                .map(move |b| format!("{resource} {} {}", b.subject, b.role))
        })
        .collect()
}

#[tokio::test]
async fn containers_are_deleted_only_when_empty_and_bindings_go_with_what_is_deleted() {
    let (_kms, mut daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let cloud = admin.create_cloud("c", "").await.unwrap().resource_id;
    let folder = admin
        .create_folder(&cloud, "f", "")
        .await
        .unwrap()
        .resource_id;
    let sa = admin
        .create_service_account(&folder, "robot", "")
        .await
        .unwrap()
        .id;
    // A folder holding a service account is not deleted: the account would be left
    // usable and unmanageable.
    refused(
        &admin.delete_folder(&folder).await.unwrap_err(),
        ErrorCode::FailedPrecondition,
        "still holds service accounts",
    );
    let mut doomed = secret("doomed", vec![set("k", "v")]);
    doomed.folder_id = folder.clone();
    let doomed = admin.create_secret(doomed).await.unwrap().resource_id;
    refused(
        &admin.delete_folder(&folder).await.unwrap_err(),
        ErrorCode::FailedPrecondition,
        "still holds secrets and service accounts",
    );
    refused(
        &admin.delete_cloud(&cloud).await.unwrap_err(),
        ErrorCode::FailedPrecondition,
        "still has folders",
    );

    // Bindings on each and naming the account.
    let account = format!("serviceAccount:{sa}");
    let kept = admin
        .create_secret(secret("kept", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    for resource in [
        LockboxResource::Cloud(cloud.clone()),
        LockboxResource::Folder(folder.clone()),
        LockboxResource::Secret(doomed.clone()),
        LockboxResource::Secret(kept.clone()),
    ] {
        change(
            &admin,
            resource.clone(),
            true,
            "lockbox.viewer",
            "user:nobody",
        )
        .await;
        change(&admin, resource, true, "lockbox.viewer", &account).await;
    }
    admin.delete_service_account(&sa).await.unwrap();
    let (on_kept, _) = admin
        .list_access_bindings(LockboxResource::Secret(kept.clone()), Page::default())
        .await
        .unwrap();
    let subjects: Vec<&str> = on_kept.iter().map(|b| b.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec!["user:nobody"],
        "the account's binding went with it"
    );
    admin.delete_secret(&doomed).await.unwrap();
    admin.delete_folder(&folder).await.unwrap();
    admin.delete_cloud(&cloud).await.unwrap();

    daemon.stop();
    let left = stored_bindings(&daemon);
    for gone in [&cloud, &folder, &doomed, &sa] {
        assert!(
            left.iter().all(|b| !b.contains(gone.as_str())),
            "a binding of {gone} outlived it: {left:?}"
        );
    }
    assert!(left.iter().any(|b| b.contains(&kept)), "{left:?}");
}

#[tokio::test]
async fn ownership_is_granted_on_the_first_start_only() {
    let (_kms, mut daemon) = Daemon::with_kms("");
    let admin = daemon.client().await;
    let (clouds, _) = admin.list_clouds(Page::default()).await.unwrap();
    let cloud = clouds[0].clone();
    let organization = LockboxResource::Organization(cloud.organization_id.clone());
    let (owners, _) = admin
        .list_access_bindings(organization.clone(), Page::default())
        .await
        .unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    // The only owner steps down: no binding is left anywhere.
    admin
        .set_access_bindings(organization, Vec::new())
        .await
        .unwrap();
    refused(
        &admin.get_cloud(&cloud.id).await.unwrap_err(),
        ErrorCode::PermissionDenied,
        "denied",
    );
    daemon.stop();
    daemon.start();
    let admin = daemon.client().await;
    refused(
        &admin.get_cloud(&cloud.id).await.unwrap_err(),
        ErrorCode::PermissionDenied,
        "denied",
    );
    assert!(
        daemon
            .log()
            .matches("made the administrators owners")
            .count()
            <= 1,
        "{}",
        daemon.log()
    );
}

/// Runs the CLI as `nobody`.
fn as_nobody(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    daemon
        .cli()
        .uid(lockbox_tests::NOBODY)
        .gid(lockbox_tests::NOBODY)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_key_for_a_service_account_needs_the_reach_to_grant_its_roles() {
    assert!(
        lockbox_tests::is_root(),
        "this test runs the CLI as another Unix user and must run as root (CI does)"
    );
    let (kms, daemon) = Daemon::with_kms("");
    daemon.open_socket_to_nobody();
    let admin = daemon.client().await;
    let folder = admin
        .create_folder("", "team", "")
        .await
        .unwrap()
        .resource_id;
    let on_folder = LockboxResource::Folder(folder.clone());
    change(
        &admin,
        on_folder.clone(),
        true,
        "lockbox.admin",
        "user:nobody",
    )
    .await;
    let account = |name: &'static str| {
        let (admin, folder) = (admin.clone(), folder.clone());
        async move {
            admin
                .create_service_account(&folder, name, "")
                .await
                .unwrap()
                .id
        }
    };
    let keys_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        keys_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let create_key = |sa: &str| {
        let out = keys_dir.path().join(format!("{sa}.json"));
        as_nobody(
            &daemon,
            &[
                "iam",
                "key",
                "create",
                "--service-account-id",
                sa,
                "--output",
                out.to_str().unwrap(),
            ],
        )
    };

    // Within nobody's reach: a viewer of the folder nobody administers.
    let within = account("within").await;
    change(
        &admin,
        on_folder.clone(),
        true,
        "lockbox.viewer",
        &format!("serviceAccount:{within}"),
    )
    .await;
    lockbox_tests::success(&create_key(&within));

    // Beyond it: a reader of a secret elsewhere, and an owner of the organization.
    let elsewhere = admin
        .create_secret(secret("elsewhere", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let reader = account("reader").await;
    change(
        &admin,
        LockboxResource::Secret(elsewhere),
        true,
        "lockbox.payloadViewer",
        &format!("serviceAccount:{reader}"),
    )
    .await;
    let err = lockbox_tests::failure(&create_key(&reader), "PERMISSION_DENIED");
    assert!(err.contains("lockbox.payloadViewer"), "{err}");
    let (clouds, _) = admin.list_clouds(Page::default()).await.unwrap();
    let owner = account("owner").await;
    change(
        &admin,
        LockboxResource::Organization(clouds[0].organization_id.clone()),
        true,
        "organization-manager.organizations.owner",
        &format!("serviceAccount:{owner}"),
    )
    .await;
    lockbox_tests::failure(&create_key(&owner), "PERMISSION_DENIED");

    // Beyond it in the other authority: a decrypter of a KMS key nobody does not administer.
    let decrypter = account("decrypter").await;
    let decrypter_subject = format!("serviceAccount:{decrypter}");
    lockbox_tests::kms_key_with(
        &kms.client().await,
        &[("kms.keys.decrypter", decrypter_subject.as_str())],
    )
    .await;
    let err = lockbox_tests::failure(&create_key(&decrypter), "PERMISSION_DENIED");
    assert!(err.contains("lockbox-kms"), "{err}");
    // The owner of everything may.
    admin
        .create_service_account_key(&decrypter, "")
        .await
        .unwrap();

    // Deleting a key of an account beyond reach is refused the same way.
    let key = admin.create_service_account_key(&reader, "").await.unwrap();
    let err = lockbox_tests::failure(
        &as_nobody(
            &daemon,
            &[
                "iam",
                "key",
                "delete",
                "--service-account-id",
                &reader,
                &key.id,
            ],
        ),
        "PERMISSION_DENIED",
    );
    assert!(err.contains("may not act as"), "{err}");
}
