//! A data directory written by an earlier lockboxd keeps working: `testdata/schema1` was made
//! by lockboxd 0.1 at schema 1, before the stored layout of payload entries had a number
//! (`testdata/make-data-dir`, run as root). Its secrets read as they were written, through
//! the service keyring and through a secret's own KMS key; new versions build over the old
//! ones; and all of it still reads after a restart. The directory is upgraded to the current
//! schema once, at the first start.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::LockboxClient;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::lockbox::AddVersion;
use lockbox_tests::payload::{expect, map, set};
use lockbox_tests::{Daemon, Kms, KmsOptions, is_root, testdata};
use std::collections::BTreeMap;

/// The payload of the secret `name` (in the default folder) at `version` (`None`: current).
async fn read(c: &LockboxClient, name: &str, version: Option<&str>) -> BTreeMap<String, String> {
    map(&c.get_payload_by_name("", name, version).await.unwrap())
}

async fn id_of(c: &LockboxClient, name: &str) -> String {
    let (secrets, _) = c.list_secrets("", Page::default()).await.unwrap();
    secrets
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no secret {name}"))
        .id
}

/// The id of the first version of the secret `name`.
async fn first_version(c: &LockboxClient, name: &str) -> String {
    let (versions, _) = c
        .list_versions(&id_of(c, name).await, Page::default())
        .await
        .unwrap();
    versions.last().expect("a version").id.clone()
}

/// Every secret the fixture holds, as `make-data-dir` wrote it.
async fn check_as_written(c: &LockboxClient) {
    let first = first_version(c, "plain").await;
    assert_eq!(
        read(c, "plain", Some(&first)).await,
        expect(&[("user", "app"), ("password", "s3cret")])
    );
    let edges = read(c, "edges", Some(&first_version(c, "edges").await)).await;
    assert_eq!(edges["empty"], "");
    assert_eq!(edges["note"], "zürich ✓");
    assert_eq!(edges[&"k".repeat(200)], "v".repeat(300));
    assert_eq!(edges.len(), 3);
    let first = first_version(c, "on-key").await;
    assert_eq!(
        read(c, "on-key", Some(&first)).await,
        expect(&[("card", "4111")])
    );
    let on_key = c.get_secret(&id_of(c, "on-key").await).await.unwrap();
    assert!(!on_key.kms_key_id.is_empty(), "on-key names its KMS key");
}

fn add(secret_id: &str, key: &str, value: &str) -> AddVersion {
    AddVersion {
        secret_id: secret_id.into(),
        description: String::new(),
        payload_entries: vec![set(key, value)],
        base_version_id: None,
    }
}

#[tokio::test]
async fn a_schema_one_data_directory_reads_and_grows() {
    assert!(
        is_root(),
        "the fixture's KMS enrolled user:root as the secrets daemon; run as root (CI does)"
    );
    let fixture = testdata("schema1");
    let mut kms = Kms::from_state(
        &fixture.join("kms"),
        KmsOptions {
            enrol_daemon: true,
            ..KmsOptions::default()
        },
    );
    kms.start();
    let mut daemon = Daemon::from_data(&kms, "", &fixture.join("data"));
    daemon.start();
    let upgraded = "upgraded the data directory's schema";
    assert!(daemon.log().contains(upgraded), "{}", daemon.log());
    let c = daemon.client().await;
    check_as_written(&c).await;
    assert_eq!(
        read(&c, "plain", None).await,
        expect(&[
            ("user", "app"),
            ("password", "n3w"),
            ("blob", "bin:000102ff")
        ])
    );

    // New versions over the old ones, with both kinds of key.
    let plain = id_of(&c, "plain").await;
    c.add_version(add(&plain, "password", "third"))
        .await
        .unwrap();
    let on_key = id_of(&c, "on-key").await;
    c.add_version(add(&on_key, "cvv", "123")).await.unwrap();
    let grown = |c: LockboxClient| async move {
        check_as_written(&c).await;
        assert_eq!(
            read(&c, "plain", None).await,
            expect(&[
                ("user", "app"),
                ("password", "third"),
                ("blob", "bin:000102ff")
            ])
        );
        assert_eq!(
            read(&c, "on-key", None).await,
            expect(&[("card", "4111"), ("cvv", "123")])
        );
    };
    grown(c).await;

    daemon.stop();
    daemon.start();
    // Each start logs afresh: the second found the directory upgraded already.
    assert!(!daemon.log().contains(upgraded), "{}", daemon.log());
    grown(daemon.client().await).await;
}
