//! No escalation and no leftovers: a container is deleted only when empty, bindings go with
//! what they were on, the first start's grant of ownership is never repeated, lists need a
//! role on what they list, and a key for a service account needs the reach to grant what
//! the account holds.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta, Page};
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
    admin
        .update_access_bindings(
            resource,
            vec![AccessBindingDelta {
                action: if add {
                    AccessBindingAction::Add
                } else {
                    AccessBindingAction::Remove
                },
                binding: AccessBinding {
                    role_id: role.into(),
                    subject: subject.into(),
                },
            }],
        )
        .await
        .unwrap();
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
