//! Bad input to lockboxd: every validation rule and quota answers with its exact code and a
//! message naming the field or quota, and nothing already stored changes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::SecretBytes;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::lockbox::{
    CreateSecret, LockboxRequest, PayloadEntryChange, PayloadValue, UpdateSecret,
};
use lockbox_client::{LockboxClient, error_code};
use lockbox_tests::Daemon;
use lockbox_tests::payload::{add, map, remove, secret, set};
use std::collections::BTreeMap;

const LIMITS: &str =
    "[limits]\nsecrets_per_cloud = 4\nversions_per_secret = 3\npayload_bytes = 1000\n";

async fn refused(c: &LockboxClient, spec: CreateSecret, code: ErrorCode, mention: &str) {
    let err = c.create_secret(spec).await.unwrap_err();
    assert_eq!(error_code(&err), code, "{err}");
    assert!(err.to_string().contains(mention), "{mention}: {err}");
}

#[tokio::test]
async fn create_secret_validation() {
    let (_kms, daemon) = Daemon::with_kms(LIMITS);
    let c = daemon.client().await;
    let ok = || secret("ok", vec![set("k", "v")]);
    let with = |f: &dyn Fn(&mut CreateSecret)| {
        let mut s = ok();
        f(&mut s);
        s
    };
    use ErrorCode::{InvalidArgument as Invalid, NotFound, ResourceExhausted as Exhausted};
    let cases: Vec<(CreateSecret, ErrorCode, &str)> = vec![
        (with(&|s| s.name = "n".repeat(101)), Invalid, "name"),
        (with(&|s| s.name = "-leading-dash".into()), Invalid, "name"),
        (with(&|s| s.name = "has space".into()), Invalid, "name"),
        (
            with(&|s| s.description = "d".repeat(1025)),
            Invalid,
            "description",
        ),
        (
            with(&|s| s.version_description = "d".repeat(1025)),
            Invalid,
            "version_description",
        ),
        (
            with(&|s| s.labels = BTreeMap::from([("Env".into(), "x".into())])),
            Invalid,
            "labels",
        ),
        (
            with(&|s| s.labels = BTreeMap::from([("env".into(), "X".into())])),
            Invalid,
            "labels",
        ),
        (
            with(&|s| s.labels = BTreeMap::from([("k".repeat(64), String::new())])),
            Invalid,
            "labels",
        ),
        (
            with(&|s| s.labels = (0..65).map(|i| (format!("k{i}"), String::new())).collect()),
            Invalid,
            "labels",
        ),
        (
            with(&|s| s.version_payload_entries = vec![set("bad key", "v")]),
            Invalid,
            "key",
        ),
        (
            with(&|s| s.version_payload_entries = vec![set(&"k".repeat(257), "v")]),
            Invalid,
            "key",
        ),
        (
            with(&|s| s.version_payload_entries = vec![set("k", "1"), set("k", "2")]),
            Invalid,
            "more than once",
        ),
        (
            with(&|s| s.version_payload_entries = vec![remove("k")]),
            Invalid,
            "no such key",
        ),
        (
            with(&|s| {
                s.version_payload_entries = vec![PayloadEntryChange {
                    key: "k".into(),
                    value: Some(PayloadValue::Text(SecretBytes::new(vec![0xff, 0xfe]))),
                }]
            }),
            Invalid,
            "UTF-8",
        ),
        (
            with(&|s| s.version_payload_entries = vec![set("k", &"v".repeat(1000))]),
            Exhausted,
            "quota lockbox.payload.size exceeded: the new version's keys and values take 1001 bytes of 1000",
        ),
        (
            with(&|s| s.kms_key_id = "not-a-key".into()),
            Invalid,
            "kms_key_id",
        ),
        (
            with(&|s| s.folder_id = "b1f00000000000000000".into()),
            NotFound,
            "folder",
        ),
        (
            with(&|s| s.folder_id = "../etc".into()),
            Invalid,
            "folder_id",
        ),
    ];
    for (spec, code, mention) in cases {
        refused(&c, spec, code, mention).await;
    }
    let (secrets, _) = c.list_secrets("", Page::default()).await.unwrap();
    assert!(secrets.is_empty(), "no refused create left anything behind");

    c.create_secret(ok()).await.unwrap();
    refused(&c, ok(), ErrorCode::AlreadyExists, "already exists").await;
}

#[tokio::test]
async fn quotas_answer_resource_exhausted_and_change_nothing() {
    let (_kms, daemon) = Daemon::with_kms(LIMITS);
    let c = daemon.client().await;
    let first = c
        .create_secret(secret("s0", vec![set("k", "0")]))
        .await
        .unwrap()
        .resource_id;
    for i in 1..4 {
        c.create_secret(secret(&format!("s{i}"), vec![]))
            .await
            .unwrap();
    }
    refused(
        &c,
        secret("s4", vec![]),
        ErrorCode::ResourceExhausted,
        "lockbox.secrets.count",
    )
    .await;
    // Deleting one frees a place.
    let (secrets, _) = c.list_secrets("", Page::default()).await.unwrap();
    c.delete_secret(&secrets[3].id).await.unwrap();
    c.create_secret(secret("s4", vec![])).await.unwrap();

    for i in 1..3 {
        c.add_version(add(&first, vec![set("k", &i.to_string())]))
            .await
            .unwrap();
    }
    let err = c
        .add_version(add(&first, vec![set("k", "3")]))
        .await
        .unwrap_err();
    assert_eq!(error_code(&err), ErrorCode::ResourceExhausted);
    assert!(err.to_string().contains("lockbox.versions.count"), "{err}");
    assert_eq!(map(&c.get_payload(&first, None).await.unwrap())["k"], "2");
    assert_eq!(
        c.list_versions(&first, Page::default())
            .await
            .unwrap()
            .0
            .len(),
        3
    );
}

#[tokio::test]
async fn other_bad_requests_name_what_is_wrong_and_change_nothing() {
    let (_kms, daemon) = Daemon::with_kms(LIMITS);
    let c = daemon.client().await;
    let id = c
        .create_secret(secret("s", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let version = c.get_secret(&id).await.unwrap().current_version.unwrap().id;
    let unknown_secret = "e6q00000000000000000";

    let checks: Vec<(LockboxRequest, ErrorCode)> = vec![
        (
            LockboxRequest::GetSecret {
                secret_id: unknown_secret.into(),
            },
            ErrorCode::NotFound,
        ),
        (
            LockboxRequest::GetSecret {
                secret_id: "nonsense".into(),
            },
            ErrorCode::InvalidArgument,
        ),
        (
            LockboxRequest::GetPayload {
                secret_id: id.clone(),
                version_id: Some("e6v00000000000000000".into()),
            },
            ErrorCode::NotFound,
        ),
        (
            LockboxRequest::GetPayload {
                secret_id: id.clone(),
                version_id: Some("v1".into()),
            },
            ErrorCode::InvalidArgument,
        ),
        (
            LockboxRequest::ListSecrets {
                folder_id: "b1f00000000000000000".into(),
                page: Page::default(),
            },
            ErrorCode::NotFound,
        ),
        (
            LockboxRequest::SetCurrentVersion {
                secret_id: unknown_secret.into(),
                version_id: version.clone(),
            },
            ErrorCode::NotFound,
        ),
        (
            LockboxRequest::AddVersion(add(&id, vec![set("big", &"v".repeat(2000))])),
            ErrorCode::ResourceExhausted,
        ),
        (
            LockboxRequest::AddVersion(add(&id, vec![set("", "v")])),
            ErrorCode::InvalidArgument,
        ),
        (
            LockboxRequest::AddVersion(add(&id, vec![remove("missing")])),
            ErrorCode::InvalidArgument,
        ),
        (
            LockboxRequest::UpdateSecret(UpdateSecret {
                secret_id: id.clone(),
                update_mask: vec!["kms_key_id".into()],
                name: String::new(),
                description: String::new(),
                labels: BTreeMap::new(),
                deletion_protection: false,
                password_payload_specification: None,
            }),
            ErrorCode::InvalidArgument,
        ),
        (
            LockboxRequest::UpdateSecret(UpdateSecret {
                secret_id: id.clone(),
                update_mask: vec!["name".into()],
                name: "Invalid Name!".into(),
                description: String::new(),
                labels: BTreeMap::new(),
                deletion_protection: false,
                password_payload_specification: None,
            }),
            ErrorCode::InvalidArgument,
        ),
        (
            LockboxRequest::DeleteFolder {
                folder_id: "b1f00000000000000000".into(),
            },
            ErrorCode::NotFound,
        ),
        (
            LockboxRequest::CreateFolder {
                cloud_id: String::new(),
                name: "Bad".into(),
                description: String::new(),
            },
            ErrorCode::InvalidArgument,
        ),
    ];
    for (request, expected) in checks {
        let shown = format!("{request:?}");
        let err = c.call(&request).await.unwrap_err();
        assert_eq!(
            error_code(&err),
            expected,
            "{}: {err}",
            &shown[..shown.len().min(80)]
        );
    }
    // Still exactly as created.
    let s = c.get_secret(&id).await.unwrap();
    assert_eq!(s.name, "s");
    assert_eq!(s.current_version.unwrap().id, version);
    assert_eq!(map(&c.get_payload(&id, None).await.unwrap())["k"], "v");
    assert_eq!(
        c.list_versions(&id, Page::default()).await.unwrap().0.len(),
        1
    );
}
