//! Both processes' Prometheus endpoints, read as Prometheus reads them: off unless
//! configured, loopback only, and counting what the real binaries did.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::error_code;
use lockbox_client::proto::ErrorCode;
use lockbox_tests::payload::{add, secret, set};
use lockbox_tests::scrape::{self, measured, sample, sum};
use lockbox_tests::{Daemon, change_kms_binding, json, kms_key_with, my_subject};

#[tokio::test]
async fn requests_are_counted_by_method_and_code_in_both_processes() {
    let (kms, daemon) = measured("", "");
    let c = daemon.client().await;
    let id = c
        .create_secret(secret("db", vec![set("password", "p4ss")]))
        .await
        .unwrap()
        .resource_id;
    for _ in 0..5 {
        c.get_payload(&id, None).await.unwrap();
    }
    let missing = c
        .get_payload("e6q00000000000000000", None)
        .await
        .unwrap_err();
    assert_eq!(error_code(&missing), ErrorCode::NotFound);

    let text = scrape::metrics(&scrape::address(&daemon.log()));
    let requests = |method: &str, code: &str| {
        sample(
            &text,
            &format!("lockbox_requests_total{{method=\"{method}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(requests("GetPayload", "OK"), Some(5.0), "{text}");
    assert_eq!(requests("GetPayload", "NOT_FOUND"), Some(1.0), "{text}");
    assert_eq!(requests("CreateSecret", "OK"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "lockbox_payload_reads_total{code=\"OK\"}"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "lockbox_request_duration_seconds_count{method=\"GetPayload\"}"
        ),
        Some(6.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE lockbox_request_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(sample(&text, "lockbox_connections"), Some(1.0), "{text}");
    assert!(
        sample(&text, "process_resident_memory_bytes").unwrap() > 1e6,
        "{text}"
    );
    assert!(sample(&text, "process_open_fds").unwrap() > 3.0, "{text}");

    // lockboxd wrapped the secret's data key through the KMS, which counted it.
    let text = scrape::metrics(&scrape::address(&kms.log()));
    assert!(
        sum(&text, "lockbox_kms_requests_total", &["code=\"OK\""]) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "process_start_time_seconds").unwrap() > 1.7e9,
        "{text}"
    );

    // Anything but GET /metrics is refused.
    let (status, _) = scrape::get(&scrape::address(&daemon.log()), "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn what_is_stored_is_read_at_the_scrape_and_refusals_are_counted() {
    let (mut kms, daemon) = measured(
        "[limits]\nsecrets_per_cloud = 10\n\
         [rate_limits]\npayload_reads = { per_second = 1, burst = 3 }\n",
        "secret_series = 1\nsecret_names = true\n",
    );
    let c = daemon.client().await;
    let a = c
        .create_secret(secret("alpha", vec![set("k", "1")]))
        .await
        .unwrap()
        .resource_id;
    for v in ["2", "3"] {
        c.add_version(add(&a, vec![set("k", v)])).await.unwrap();
    }
    let b = c
        .create_secret(secret("beta", vec![set("k", "1")]))
        .await
        .unwrap()
        .resource_id;
    for _ in 0..3 {
        c.get_payload(&b, None).await.unwrap();
    }
    let limited = c.get_payload(&b, None).await.unwrap_err();
    assert_eq!(error_code(&limited), ErrorCode::ResourceExhausted);

    let list = json(&daemon.run(["--format", "json", "quota", "list"]));
    let cloud = list["cloud_id"].as_str().unwrap().to_owned();
    let folder = c.get_secret(&a).await.unwrap().folder_id;
    let text = scrape::metrics(&scrape::address(&daemon.log()));
    let at = |series: String| sample(&text, &series);
    assert_eq!(
        at(format!(
            "lockbox_secrets{{cloud=\"{cloud}\",folder=\"{folder}\"}}"
        )),
        Some(2.0),
        "{text}"
    );
    // One secret has a series of its own, named as configured; the other is summed.
    assert_eq!(
        at(format!(
            "lockbox_secret_active_versions{{secret=\"{a}\",name=\"alpha\"}}"
        )),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        at("lockbox_secret_active_versions{secret=\"other\"}".into()),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(&format!("secret=\"{b}\"")), "{text}");
    let quota = |kind: &str, q: &str| {
        at(format!(
            "lockbox_quota_{kind}{{quota=\"{q}\",cloud=\"{cloud}\"}}"
        ))
    };
    assert_eq!(quota("usage", "lockbox.secrets.count"), Some(2.0), "{text}");
    assert_eq!(
        quota("limit", "lockbox.secrets.count"),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        quota("usage", "lockbox.versions.count"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        quota("limit", "lockbox.versions.count"),
        Some(1000.0),
        "{text}"
    );
    assert_eq!(
        quota("limit", "lockbox.payload.size"),
        Some(65536.0),
        "{text}"
    );
    assert_eq!(
        at("lockbox_rate_limited_total{kind=\"payload_reads\"}".into()),
        Some(1.0),
        "{text}"
    );
    assert_eq!(at("lockbox_quota_usage_drift".into()), Some(0.0), "{text}");
    // Three versions and two secrets were synced, in one group or more.
    assert!(
        at("lockbox_store_sync_group_size_sum".into()).unwrap() >= 4.0,
        "{text}"
    );
    assert!(
        at("lockbox_store_sync_duration_seconds_count".into()).unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        at("lockbox_store_live_data_bytes".into()).is_some(),
        "{text}"
    );
    assert!(
        at("lockbox_store_pending_compaction_bytes".into()).is_some(),
        "{text}"
    );
    assert!(
        sum(&text, "lockbox_kms_client_calls_total", &["code=\"OK\""]) >= 1.0,
        "{text}"
    );
    assert_eq!(at("lockbox_kms_client_up".into()), Some(1.0), "{text}");

    // With the KMS gone, a secret under a KMS key cannot be written, and the link says so.
    let key = kms_key_with(
        &kms.client().await,
        &[("kms.keys.encrypterDecrypter", &my_subject())],
    )
    .await;
    kms.stop();
    let mut keyed = secret("gamma", vec![set("k", "1")]);
    keyed.kms_key_id = key;
    let failed = c.create_secret(keyed).await.unwrap_err();
    assert_eq!(error_code(&failed), ErrorCode::Unavailable);
    let text = scrape::metrics(&scrape::address(&daemon.log()));
    assert_eq!(sample(&text, "lockbox_kms_client_up"), Some(0.0), "{text}");
    assert!(
        sum(
            &text,
            "lockbox_kms_client_calls_total",
            &["code=\"UNAVAILABLE\""]
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn the_kms_counts_operations_by_key_relayed_decisions_and_what_it_holds() {
    let (kms, daemon) = measured("", "");
    let k = kms.client().await;
    let key = kms_key_with(&k, &[("kms.keys.encrypterDecrypter", &my_subject())]).await;
    let c = daemon.client().await;
    let mut keyed = secret("keyed", vec![set("k", "v")]);
    keyed.kms_key_id = key.clone();
    let id = c.create_secret(keyed).await.unwrap().resource_id;
    for _ in 0..2 {
        c.get_payload(&id, None).await.unwrap();
    }
    // The caller loses its KMS role: lockboxd's read on its behalf is denied by the KMS.
    change_kms_binding(
        &k,
        &key,
        false,
        "kms.keys.encrypterDecrypter",
        &my_subject(),
    )
    .await;
    let denied = c.get_payload(&id, None).await.unwrap_err();
    assert_eq!(error_code(&denied), ErrorCode::PermissionDenied);
    // An id no key has counts as an unknown key, not as a series of its own.
    let made_up = "abj00000000000000000";
    k.decrypt(made_up, b"", b"x").await.unwrap_err();
    k.rotate(&key).await.unwrap();

    let text = scrape::metrics(&scrape::address(&kms.log()));
    let ops = |op: &str, key: &str, code: &str| {
        sample(
            &text,
            &format!(
                "lockbox_kms_operations_total{{operation=\"{op}\",key=\"{key}\",code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(ops("Decrypt", &key, "OK"), Some(2.0), "{text}");
    assert_eq!(
        ops("Decrypt", &key, "PERMISSION_DENIED"),
        Some(1.0),
        "{text}"
    );
    assert!(
        ops("GenerateDataKey", &key, "OK").is_some() || ops("Encrypt", &key, "OK").is_some(),
        "{text}"
    );
    assert_eq!(ops("Decrypt", "unknown", "NOT_FOUND"), Some(1.0), "{text}");
    assert!(!text.contains(made_up), "{text}");
    let decisions = |outcome: &str| {
        sample(
            &text,
            &format!("lockbox_kms_relayed_decisions_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert!(decisions("allowed").unwrap() >= 3.0, "{text}");
    assert_eq!(decisions("denied"), Some(1.0), "{text}");
    // Relayed requests are counted under their own method, the principal skipped.
    assert_eq!(
        sample(
            &text,
            "lockbox_kms_requests_total{method=\"Decrypt\",code=\"OK\"}"
        ),
        Some(2.0),
        "{text}"
    );
    // lockboxd's own key and the test's: two active symmetric keys, three versions.
    assert_eq!(
        sample(
            &text,
            "lockbox_kms_keys{kind=\"symmetric\",state=\"ACTIVE\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "lockbox_kms_key_versions{state=\"ACTIVE\"}"),
        Some(3.0),
        "{text}"
    );
    assert!(
        sample(&text, "lockbox_kms_keystore_save_duration_seconds_count").unwrap() >= 3.0,
        "{text}"
    );
}

#[test]
fn metrics_are_off_unless_configured_and_never_on_an_open_address() {
    let (mut kms, mut daemon) = Daemon::with_kms("");
    assert!(!daemon.log().contains("metrics served"), "{}", daemon.log());
    assert!(!kms.log().contains("metrics served"), "{}", kms.log());
    daemon.stop();
    let open = Daemon::new(&kms, "[metrics]\nlisten = \"0.0.0.0:9464\"\n");
    let refused = open.start_expecting_failure();
    assert!(
        refused.contains("metrics.listen: 0.0.0.0:9464 is not a loopback address"),
        "{refused}"
    );
    kms.stop();
}
