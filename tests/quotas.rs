//! lockboxd's quotas: each named in its refusal with its usage and limit, listed with their
//! usage to anyone who may see the cloud's secrets' metadata, overridable per cloud, freed
//! by destroyed versions, and checked against the records at every start.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::error_code;
use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::lockbox::LockboxResource;
use lockbox_tests::payload::{add, secret, set};
use lockbox_tests::{Daemon, change_binding, failure, json, success};
use serde_json::Value;

const DAY: u64 = 86_400;

/// The quota named `name` in `lockbox quota list` output.
fn quota<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

#[tokio::test]
async fn quotas_are_named_listed_and_freed_by_destroyed_versions() {
    let (_kms, daemon) = Daemon::with_kms(
        "[limits]\nsecrets_per_cloud = 3\nversions_per_secret = 2\npayload_bytes = 100\n",
    );
    let c = daemon.client().await;
    let created = c
        .create_secret(secret("db", vec![set("k", "1")]))
        .await
        .unwrap();
    let id = created.resource_id.clone();
    let v1 = c.get_secret(&id).await.unwrap().current_version.unwrap().id;
    c.add_version(add(&id, vec![set("k", "2")])).await.unwrap();
    let refused = c
        .add_version(add(&id, vec![set("k", "3")]))
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), ErrorCode::ResourceExhausted);
    assert!(
        refused.to_string().contains(&format!(
            "quota lockbox.versions.count exceeded: secret {id} uses 2 of 2"
        )),
        "{refused}"
    );
    let too_big = c
        .create_secret(secret("big", vec![set("k", &"v".repeat(120))]))
        .await
        .unwrap_err();
    assert_eq!(error_code(&too_big), ErrorCode::ResourceExhausted);
    assert!(
        too_big
            .to_string()
            .contains("quota lockbox.payload.size exceeded: the new version's keys and values take 121 bytes of 100"),
        "{too_big}"
    );

    let list = json(&daemon.run(["--format", "json", "quota", "list"]));
    let cloud_id = list["cloud_id"].as_str().unwrap().to_owned();
    let secrets = quota(&list, "lockbox.secrets.count");
    assert_eq!(
        (&secrets["limit"], &secrets["usage"], &secrets["per"]),
        (&Value::from(3), &Value::from(1), &Value::from("cloud"))
    );
    assert_eq!(secrets["resource"], format!("cloud {cloud_id}"));
    let versions = quota(&list, "lockbox.versions.count");
    assert_eq!(
        (&versions["limit"], &versions["usage"]),
        (&2.into(), &2.into())
    );
    assert_eq!(versions["resource"], format!("secret {id}"));
    let size = quota(&list, "lockbox.payload.size");
    assert_eq!(
        (&size["limit"], &size["usage"]),
        (&100.into(), &Value::Null)
    );

    // A destroyed version no longer counts: the secret takes a new one.
    c.schedule_version_destruction(&id, &v1, Some(DAY))
        .await
        .unwrap();
    c.add_version(add(&id, vec![set("k", "3")]))
        .await
        .unwrap_err();
    c.danger_advance_clock(DAY).await.unwrap();
    c.add_version(add(&id, vec![set("k", "3")])).await.unwrap();
    let list = json(&daemon.run(["--format", "json", "quota", "list"]));
    assert_eq!(quota(&list, "lockbox.versions.count")["usage"], 2);

    // Creating secrets up to the cloud's quota.
    for name in ["two", "three"] {
        c.create_secret(secret(name, vec![])).await.unwrap();
    }
    let refused = c.create_secret(secret("four", vec![])).await.unwrap_err();
    assert_eq!(error_code(&refused), ErrorCode::ResourceExhausted);
    assert!(
        refused.to_string().contains(&format!(
            "quota lockbox.secrets.count exceeded: cloud {cloud_id} uses 3 of 3"
        )),
        "{refused}"
    );
    let text = success(&daemon.run(["quota", "list", "--cloud-id", &cloud_id]));
    assert!(text.contains("name: lockbox.secrets.count"), "{text}");
    assert!(text.contains("usage: 3"), "{text}");
}

/// The seeds give every Lockbox role from lockbox.auditor up the quota details, and
/// payloadViewer (contents only) none.
#[tokio::test]
async fn quotas_are_shown_to_auditors_of_the_cloud_and_up() {
    let (_kms, daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    daemon.open_socket_to_nobody();
    let list = json(&daemon.run(["--format", "json", "quota", "list"]));
    let cloud = LockboxResource::Cloud(list["cloud_id"].as_str().unwrap().to_owned());
    let denied = failure(
        &daemon.run_as_nobody(&["quota", "list"]),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("lockbox.quotas.get"), "{denied}");
    change_binding(&c, &cloud, true, "lockbox.payloadViewer", "user:nobody").await;
    failure(
        &daemon.run_as_nobody(&["quota", "list"]),
        "PERMISSION_DENIED",
    );
    for role in [
        "lockbox.auditor",
        "lockbox.viewer",
        "lockbox.editor",
        "viewer",
    ] {
        change_binding(&c, &cloud, true, role, "user:nobody").await;
        success(&daemon.run_as_nobody(&["quota", "list"]));
        change_binding(&c, &cloud, false, role, "user:nobody").await;
    }
    failure(
        &daemon.run_as_nobody(&["quota", "list", "--cloud-id", "b1g00000000000000000"]),
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn a_cloud_s_own_quota_overrides_the_default() {
    let (kms, mut daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let big = c.create_cloud("small", "").await.unwrap().resource_id;
    let folder = c.create_folder(&big, "f", "").await.unwrap().resource_id;
    daemon.stop();
    let mut daemon = Daemon::new(
        &kms,
        &format!("[limits]\nsecrets_per_cloud = 5\n[limits.clouds.{big}]\nsecrets_per_cloud = 1\n"),
    );
    daemon.start();
    let c = daemon.client().await;
    let in_folder = |name: &str| {
        let mut s = secret(name, vec![]);
        s.folder_id = folder.clone();
        s
    };
    c.create_secret(in_folder("one")).await.unwrap();
    let refused = c.create_secret(in_folder("two")).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains(&format!("cloud {big} uses 1 of 1")),
        "{refused}"
    );
    // The default cloud keeps the default.
    for name in ["a", "b"] {
        c.create_secret(secret(name, vec![])).await.unwrap();
    }
    let list = json(&daemon.run(["--format", "json", "quota", "list", "--cloud-id", &big]));
    assert_eq!(quota(&list, "lockbox.secrets.count")["limit"], 1);
    let list = json(&daemon.run(["--format", "json", "quota", "list"]));
    assert_eq!(quota(&list, "lockbox.secrets.count")["limit"], 5);
}

/// Counters that disagree with the records (here changed behind lockboxd's back) are
/// reported at the next start, one error line each, and corrected.
#[tokio::test]
async fn usage_counters_are_checked_and_corrected_at_start() {
    let (_kms, mut daemon) = Daemon::with_kms("");
    let c = daemon.client().await;
    let id = c
        .create_secret(secret("db", vec![set("k", "1")]))
        .await
        .unwrap()
        .resource_id;
    c.add_version(add(&id, vec![set("k", "2")])).await.unwrap();
    let list = json(&daemon.run(["--format", "json", "quota", "list"]));
    let cloud_id = list["cloud_id"].as_str().unwrap().to_owned();
    daemon.stop();
    {
        use lockbox_daemon::store::records::Records;
        use lockbox_daemon::store::rocks::RocksStore;
        let records = Records::new(std::sync::Arc::new(
            RocksStore::open(&daemon.data_dir()).unwrap(),
        ))
        .unwrap();
        let mut batch = lockbox_daemon::store::Batch::default();
        records.put_secret_count(&mut batch, &cloud_id, 40);
        let mut record = records.secret(&id).unwrap().unwrap();
        record.version_count = 9;
        let name = record.name.clone();
        records.put_secret(&mut batch, &record, Some(&name));
        records.commit(batch).unwrap();
    }
    daemon.start();
    let log = daemon.log();
    assert_eq!(
        log.matches("disagreed with the records").count(),
        2,
        "{log}"
    );
    assert!(
        log.contains(&format!("lockbox.secrets.count of cloud {cloud_id}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("lockbox.versions.count of secret {id}")),
        "{log}"
    );
    let list = json(&daemon.run(["--format", "json", "quota", "list"]));
    assert_eq!(quota(&list, "lockbox.secrets.count")["usage"], 1);
    assert_eq!(quota(&list, "lockbox.versions.count")["usage"], 2);
    daemon.stop();
    daemon.start();
    assert!(!daemon.log().contains("disagreed"), "{}", daemon.log());
}
