//! lockboxd through the client library: the secret lifecycle, versions over a base,
//! pagination, scheduled destruction on the test clock, operations, passwords, lookups by
//! name, the resource hierarchy, and restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::lockbox::{
    AddVersion, OperationResult, PasswordPayloadSpecification, SecretStatus, UpdateSecret,
    VersionStatus,
};
use lockbox_client::{CallError, LockboxClient, error_code};
use lockbox_tests::payload::{expect, map, remove, secret, set, set_binary};
use lockbox_tests::{Daemon, new_version_id};
use std::collections::BTreeMap;

const DAY: u64 = 24 * 3600;

fn code<T: std::fmt::Debug>(r: Result<T, CallError>) -> ErrorCode {
    error_code(&r.expect_err("expected an error"))
}

async fn create(
    c: &LockboxClient,
    name: &str,
    entries: Vec<lockbox_client::proto::lockbox::PayloadEntryChange>,
) -> String {
    c.create_secret(secret(name, entries))
        .await
        .unwrap()
        .resource_id
}

fn add(
    secret_id: &str,
    changes: Vec<lockbox_client::proto::lockbox::PayloadEntryChange>,
    base: Option<&str>,
) -> AddVersion {
    AddVersion {
        secret_id: secret_id.into(),
        description: String::new(),
        payload_entries: changes,
        base_version_id: base.map(Into::into),
    }
}

#[tokio::test]
async fn secret_lifecycle() {
    let (_kms, daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let op = c
        .create_secret(secret(
            "db",
            vec![set("user", "alice"), set_binary("key", &[0, 159, 255])],
        ))
        .await
        .unwrap();
    assert!(op.done);
    assert_eq!(op.description, "Create secret");
    assert_eq!(op.created_by, c.subject());
    let id = op.resource_id.clone();

    let s = c.get_secret(&id).await.unwrap();
    assert_eq!(s.name, "db");
    assert_eq!(s.status, SecretStatus::Active);
    let current = s.current_version.unwrap();
    assert_eq!(current.payload_entry_keys, vec!["user", "key"]);
    let p = c.get_payload(&id, None).await.unwrap();
    assert_eq!(map(&p), expect(&[("user", "alice"), ("key", "bin:009fff")]));

    c.update_secret(UpdateSecret {
        secret_id: id.clone(),
        update_mask: vec![
            "name".into(),
            "description".into(),
            "labels".into(),
            "deletion_protection".into(),
        ],
        name: "database".into(),
        description: "the main database".into(),
        labels: BTreeMap::from([("env".into(), "prod".into())]),
        deletion_protection: true,
        password_payload_specification: None,
    })
    .await
    .unwrap();
    let s = c.get_secret(&id).await.unwrap();
    assert_eq!(
        (s.name.as_str(), s.description.as_str()),
        ("database", "the main database")
    );
    assert_eq!(s.labels["env"], "prod");
    // The old name is free again, the new one resolves.
    assert_eq!(
        map(&c.get_payload_by_name("", "database", None).await.unwrap())["user"],
        "alice"
    );
    assert_eq!(
        code(c.get_payload_by_name("", "db", None).await),
        ErrorCode::NotFound
    );

    c.deactivate_secret(&id).await.unwrap();
    assert_eq!(
        c.get_secret(&id).await.unwrap().status,
        SecretStatus::Inactive,
        "metadata stays readable"
    );
    let err = c.get_payload(&id, None).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::FailedPrecondition);
    assert!(err.to_string().contains("deactivated"), "{err}");
    c.activate_secret(&id).await.unwrap();
    c.get_payload(&id, None).await.unwrap();

    assert_eq!(
        code(c.delete_secret(&id).await),
        ErrorCode::FailedPrecondition
    );
    c.update_secret(UpdateSecret {
        secret_id: id.clone(),
        update_mask: vec!["deletion_protection".into()],
        name: String::new(),
        description: String::new(),
        labels: BTreeMap::new(),
        deletion_protection: false,
        password_payload_specification: None,
    })
    .await
    .unwrap();
    c.delete_secret(&id).await.unwrap();
    assert_eq!(code(c.get_secret(&id).await), ErrorCode::NotFound);
    assert_eq!(code(c.get_payload(&id, None).await), ErrorCode::NotFound);
    let (left, _) = c.list_secrets("", Page::default()).await.unwrap();
    assert!(left.is_empty());
}

#[tokio::test]
async fn add_version_applies_changes_over_the_base_version() {
    let (_kms, daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let id = create(&c, "s", vec![set("a", "1"), set("b", "2")]).await;
    let v1 = c.get_secret(&id).await.unwrap().current_version.unwrap().id;

    // Default base: the current version.
    let v2 = new_version_id(
        &c.add_version(add(&id, vec![set("b", "22"), set("c", "3")], None))
            .await
            .unwrap(),
    );
    assert_eq!(
        map(&c.get_payload(&id, None).await.unwrap()),
        expect(&[("a", "1"), ("b", "22"), ("c", "3")])
    );

    // An explicit older base.
    let v3 = new_version_id(
        &c.add_version(add(&id, vec![remove("a")], Some(&v1)))
            .await
            .unwrap(),
    );
    let p = c.get_payload(&id, None).await.unwrap();
    assert_eq!(p.version_id(), v3);
    assert_eq!(map(&p), expect(&[("b", "2")]));

    // Old versions stay readable; the current one can be moved back.
    assert_eq!(map(&c.get_payload(&id, Some(&v2)).await.unwrap())["c"], "3");
    c.set_current_version(&id, &v2).await.unwrap();
    assert_eq!(c.get_payload(&id, None).await.unwrap().version_id(), v2);

    let (versions, _) = c.list_versions(&id, Page::default()).await.unwrap();
    let ids: Vec<_> = versions.iter().map(|v| v.id.clone()).collect();
    assert_eq!(
        ids,
        vec![v3.clone(), v2.clone(), v1.clone()],
        "newest first"
    );

    // Bad changes are refused and change nothing.
    assert_eq!(
        code(c.add_version(add(&id, vec![remove("nope")], None)).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            c.add_version(add(&id, vec![set("x", "1")], Some("e6v00000000000000000")))
                .await
        ),
        ErrorCode::NotFound
    );
    assert_eq!(
        c.list_versions(&id, Page::default()).await.unwrap().0.len(),
        3
    );

    // A secret created without a payload has no versions until one is added.
    let empty = create(&c, "empty", vec![]).await;
    assert!(
        c.get_secret(&empty)
            .await
            .unwrap()
            .current_version
            .is_none()
    );
    assert_eq!(code(c.get_payload(&empty, None).await), ErrorCode::NotFound);
    c.add_version(add(&empty, vec![set("k", "v")], None))
        .await
        .unwrap();
    assert_eq!(map(&c.get_payload(&empty, None).await.unwrap())["k"], "v");
}

#[tokio::test]
async fn listing_pages_over_more_than_one_page() {
    let (_kms, daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let mut created = Vec::new();
    for i in 0..23 {
        created.push(create(&c, &format!("s{i}"), vec![set("k", "v")]).await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (secrets, next) = c
            .list_secrets(
                "",
                Page {
                    page_size: 10,
                    page_token: token,
                },
            )
            .await
            .unwrap();
        assert!(secrets.len() <= 10);
        seen.extend(secrets.into_iter().map(|s| s.id));
        pages += 1;
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "oldest first, nothing missed or repeated");

    let id = &created[0];
    for i in 0..4 {
        c.add_version(add(id, vec![set("k", &i.to_string())], None))
            .await
            .unwrap();
    }
    let (first, token) = c
        .list_versions(
            id,
            Page {
                page_size: 3,
                page_token: String::new(),
            },
        )
        .await
        .unwrap();
    let (second, end) = c
        .list_versions(
            id,
            Page {
                page_size: 3,
                page_token: token,
            },
        )
        .await
        .unwrap();
    assert_eq!((first.len(), second.len()), (3, 2));
    assert!(end.is_empty());
    assert!(first[0].created_at >= second[1].created_at);
    assert_eq!(
        code(
            c.list_secrets(
                "",
                Page {
                    page_size: 1001,
                    page_token: String::new()
                }
            )
            .await
        ),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(
            c.list_secrets(
                "",
                Page {
                    page_size: 10,
                    page_token: "garbage".into()
                }
            )
            .await
        ),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn scheduled_destruction_follows_the_clock() {
    let (_kms, daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let id = create(&c, "s", vec![set("k", "old")]).await;
    let v1 = c.get_secret(&id).await.unwrap().current_version.unwrap().id;
    assert_eq!(
        code(c.schedule_version_destruction(&id, &v1, Some(DAY)).await),
        ErrorCode::FailedPrecondition,
        "the current version cannot be scheduled"
    );
    c.add_version(add(&id, vec![set("k", "new")], None))
        .await
        .unwrap();
    let op = c
        .schedule_version_destruction(&id, &v1, Some(2 * DAY))
        .await
        .unwrap();
    match op.result {
        Some(Ok(OperationResult::Version(v))) => {
            assert_eq!(v.status, VersionStatus::ScheduledForDestruction);
            assert!(v.destroy_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    c.cancel_version_destruction(&id, &v1).await.unwrap();
    c.danger_advance_clock(3 * DAY).await.unwrap();
    assert_eq!(
        map(&c.get_payload(&id, Some(&v1)).await.unwrap())["k"],
        "old",
        "cancelled"
    );

    c.schedule_version_destruction(&id, &v1, None)
        .await
        .unwrap();
    c.danger_advance_clock(7 * DAY - 1).await.unwrap();
    assert_eq!(
        map(&c.get_payload(&id, Some(&v1)).await.unwrap())["k"],
        "old",
        "readable until destroy_at"
    );
    c.danger_advance_clock(1).await.unwrap();
    let err = c.get_payload(&id, Some(&v1)).await.unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::FailedPrecondition);
    assert!(err.to_string().contains("destroyed"), "{err}");
    let (versions, _) = c.list_versions(&id, Page::default()).await.unwrap();
    assert_eq!(
        versions.iter().find(|v| v.id == v1).unwrap().status,
        VersionStatus::Destroyed
    );
    assert_eq!(
        code(c.cancel_version_destruction(&id, &v1).await),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(c.set_current_version(&id, &v1).await),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(c.add_version(add(&id, vec![], Some(&v1))).await),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(map(&c.get_payload(&id, None).await.unwrap())["k"], "new");
}

#[tokio::test]
async fn destruction_survives_a_restart_and_everything_else_persists() {
    let (mut kms, mut daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let id = create(&c, "durable", vec![set("k", "v1")]).await;
    let v1 = c.get_secret(&id).await.unwrap().current_version.unwrap().id;
    c.add_version(add(&id, vec![set("k", "v2")], None))
        .await
        .unwrap();
    c.schedule_version_destruction(&id, &v1, Some(DAY))
        .await
        .unwrap();
    drop(c);
    daemon.stop();
    kms.stop();
    kms.start();
    daemon.start();
    let c = daemon.client().await;
    assert_eq!(
        map(&c.get_payload_by_name("", "durable", None).await.unwrap())["k"],
        "v2"
    );
    assert_eq!(
        map(&c.get_payload(&id, Some(&v1)).await.unwrap())["k"],
        "v1"
    );
    c.danger_advance_clock(DAY).await.unwrap();
    assert_eq!(
        code(c.get_payload(&id, Some(&v1)).await),
        ErrorCode::FailedPrecondition
    );
    let (ops, _) = c.list_operations(&id, Page::default()).await.unwrap();
    let kinds: Vec<_> = ops.iter().map(|o| o.description.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Schedule secret version destruction",
            "Add secret version",
            "Create secret"
        ]
    );
}

#[tokio::test]
async fn passwords_are_generated_by_the_server() {
    let (_kms, daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let mut spec = secret("generated", vec![set("user", "svc")]);
    spec.password_payload_specification = Some(PasswordPayloadSpecification {
        password_key: "password".into(),
        length: 40,
        include_uppercase: true,
        include_lowercase: true,
        include_digits: true,
        include_punctuation: false,
        included_punctuation: String::new(),
        excluded_punctuation: String::new(),
    });
    let id = c.create_secret(spec.clone()).await.unwrap().resource_id;
    let p = map(&c.get_payload(&id, None).await.unwrap());
    let pw = &p["password"];
    assert_eq!(pw.len(), 40);
    assert!(pw.chars().all(|ch| ch.is_ascii_alphanumeric()), "{pw}");
    assert!(
        pw.chars().any(|ch| ch.is_ascii_uppercase()) && pw.chars().any(|ch| ch.is_ascii_digit())
    );
    assert_eq!(p["user"], "svc");
    let s = c.get_secret(&id).await.unwrap();
    assert_eq!(s.password_payload_specification.unwrap().length, 40);

    // A second secret gets a different password.
    spec.name = "generated-2".into();
    let other = c.create_secret(spec.clone()).await.unwrap().resource_id;
    assert_ne!(
        map(&c.get_payload(&other, None).await.unwrap())["password"],
        *pw
    );

    spec.name = "bad".into();
    let p = spec.password_payload_specification.as_mut().unwrap();
    p.length = 257;
    assert_eq!(
        code(c.create_secret(spec.clone()).await),
        ErrorCode::InvalidArgument
    );
    let p = spec.password_payload_specification.as_mut().unwrap();
    p.length = 10;
    p.include_uppercase = false;
    p.include_lowercase = false;
    p.include_digits = false;
    assert_eq!(
        code(c.create_secret(spec).await),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn folders_and_clouds_scope_secrets() {
    let (_kms, daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let (clouds, _) = c.list_clouds(Page::default()).await.unwrap();
    assert_eq!(clouds.len(), 1, "a fresh daemon has a default cloud");
    let (folders, _) = c.list_folders("", Page::default()).await.unwrap();
    assert_eq!(folders[0].name, "default");

    let cloud = c.create_cloud("staging", "").await.unwrap().resource_id;
    assert_eq!(
        code(c.create_cloud("staging", "").await),
        ErrorCode::AlreadyExists
    );
    let folder = c
        .create_folder(&cloud, "apps", "")
        .await
        .unwrap()
        .resource_id;
    assert_eq!(c.get_folder(&folder).await.unwrap().cloud_id, cloud);

    // The same name in two folders is two secrets.
    let mut in_folder = secret("api", vec![set("token", "staging")]);
    in_folder.folder_id = folder.clone();
    c.create_secret(in_folder.clone()).await.unwrap();
    create(&c, "api", vec![set("token", "default")]).await;
    assert_eq!(
        code(c.create_secret(in_folder).await),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        map(&c.get_payload_by_name(&folder, "api", None).await.unwrap())["token"],
        "staging"
    );
    assert_eq!(
        map(&c.get_payload_by_name("", "api", None).await.unwrap())["token"],
        "default"
    );

    assert_eq!(
        code(c.delete_folder(&folder).await),
        ErrorCode::FailedPrecondition
    );
    assert_eq!(
        code(c.delete_cloud(&cloud).await),
        ErrorCode::FailedPrecondition
    );
    let (secrets, _) = c.list_secrets(&folder, Page::default()).await.unwrap();
    c.delete_secret(&secrets[0].id).await.unwrap();
    c.delete_folder(&folder).await.unwrap();
    c.delete_cloud(&cloud).await.unwrap();
    assert_eq!(code(c.get_cloud(&cloud).await), ErrorCode::NotFound);
    let default_folder = &folders[0].id;
    assert_eq!(
        code(c.delete_folder(default_folder).await),
        ErrorCode::FailedPrecondition
    );
}

/// Reads every change right after making it, with each read first filling lockboxd's read
/// cache: a cached secret or version must never outlive the change that replaced it. Run with
/// the cache on (default) and off, which must answer the same.
#[tokio::test]
async fn payload_reads_follow_every_change() {
    for config in ["", "read_cache_entries = 0"] {
        let (_kms, daemon) = Daemon::with_kms(config);
        let c = daemon.client().await;
        let value = |id: String, version: Option<String>| {
            let c = &c;
            async move { map(&c.get_payload(&id, version.as_deref()).await.unwrap())["k"].clone() }
        };
        let id = create(&c, "cached", vec![set("k", "one")]).await;
        let v1 = c.get_secret(&id).await.unwrap().current_version.unwrap().id;
        assert_eq!(value(id.clone(), None).await, "one", "{config}");

        let v2 = new_version_id(
            &c.add_version(add(&id, vec![set("k", "two")], None))
                .await
                .unwrap(),
        );
        assert_eq!(
            value(id.clone(), None).await,
            "two",
            "{config}: new version"
        );
        assert_eq!(value(id.clone(), Some(v1.clone())).await, "one");

        c.set_current_version(&id, &v1).await.unwrap();
        assert_eq!(
            value(id.clone(), None).await,
            "one",
            "{config}: current moved back"
        );

        c.deactivate_secret(&id).await.unwrap();
        assert_eq!(
            code(c.get_payload(&id, None).await),
            ErrorCode::FailedPrecondition,
            "{config}: deactivated"
        );
        c.activate_secret(&id).await.unwrap();
        assert_eq!(value(id.clone(), Some(v2.clone())).await, "two");

        // Another secret's version, cached by a read of its own, is not this secret's.
        let other = create(&c, "other", vec![set("k", "elsewhere")]).await;
        let other_version = c
            .get_secret(&other)
            .await
            .unwrap()
            .current_version
            .unwrap()
            .id;
        assert_eq!(value(other.clone(), None).await, "elsewhere");
        assert_eq!(
            code(c.get_payload(&id, Some(&other_version)).await),
            ErrorCode::NotFound,
            "{config}: a version of another secret"
        );

        c.update_secret(UpdateSecret {
            secret_id: id.clone(),
            update_mask: vec!["name".into()],
            name: "renamed".into(),
            description: String::new(),
            labels: BTreeMap::new(),
            deletion_protection: false,
            password_payload_specification: None,
        })
        .await
        .unwrap();
        assert_eq!(
            code(c.get_payload_by_name("", "cached", None).await),
            ErrorCode::NotFound,
            "{config}: old name"
        );
        let by_name = c.get_payload_by_name("", "renamed", None).await.unwrap();
        assert_eq!(map(&by_name)["k"], "one");

        c.delete_secret(&id).await.unwrap();
        assert_eq!(
            code(c.get_payload(&id, None).await),
            ErrorCode::NotFound,
            "{config}: deleted"
        );
        assert_eq!(
            code(c.get_payload(&id, Some(&v2)).await),
            ErrorCode::NotFound,
            "{config}: deleted version"
        );
    }
}
