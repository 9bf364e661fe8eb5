//! Both processes' Prometheus endpoints, read as Prometheus reads them: off unless
//! configured, loopback only, and counting what the real binaries did.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::error_code;
use lockbox_client::proto::ErrorCode;
use lockbox_tests::payload::{secret, set};
use lockbox_tests::scrape::{self, sample, sum};
use lockbox_tests::{Daemon, Kms, KmsOptions};

const ON: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// A KMS and a lockboxd, both with metrics on.
fn both_measured(daemon_config: &str) -> (Kms, Daemon) {
    let mut kms = Kms::init(KmsOptions {
        enrol_daemon: true,
        config: ON.into(),
        ..KmsOptions::default()
    });
    kms.start();
    let mut daemon = Daemon::new(&kms, &format!("{ON}{daemon_config}"));
    daemon.start();
    (kms, daemon)
}

#[tokio::test]
async fn requests_are_counted_by_method_and_code_in_both_processes() {
    let (kms, daemon) = both_measured("");
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
