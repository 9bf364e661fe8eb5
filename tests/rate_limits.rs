//! Per-subject rate limits in lockboxd: a subject's own rate wins over its roles', a role's
//! over the default; the bucket is shared by the subject's connections; a request past it
//! is refused with RESOURCE_EXHAUSTED and when to try again; time refills it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::lockbox::LockboxResource;
use lockbox_tests::payload::{secret, set};
use lockbox_tests::{Daemon, change_binding, failure, success};

const LIMITS: &str = "\
[rate_limits]
payload_reads = { per_second = 1, burst = 2 }
mutations = { per_second = 1, burst = 3 }

[rate_limits.roles.\"lockbox.payloadViewer\"]
payload_reads = { per_second = 1, burst = 4 }

[rate_limits.subjects.\"user:root\"]
payload_reads = { per_second = 1000, burst = 1000 }
mutations = { per_second = 1000, burst = 1000 }
";

#[tokio::test]
async fn each_subject_gets_its_own_role_s_or_the_default_rate() {
    let (_kms, daemon) = Daemon::with_kms(LIMITS);
    let c = daemon.client().await;
    let id = c
        .create_secret(secret("db", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let on_secret = LockboxResource::Secret(id.clone());
    change_binding(&c, &on_secret, true, "lockbox.payloadViewer", "user:nobody").await;
    daemon.open_socket_to_nobody();
    let read = ["payload", "get", "--id", id.as_str()];

    // The subject's own rate: far more than the default's burst.
    for _ in 0..20 {
        c.get_payload(&id, None).await.unwrap();
    }
    // nobody's role allows four at once, over as many connections (a CLI run each).
    for _ in 0..4 {
        success(&daemon.run_as_nobody(&read));
    }
    let refused = failure(&daemon.run_as_nobody(&read), "RESOURCE_EXHAUSTED");
    assert!(
        refused.contains(
            "rate limit payload_reads: user:nobody may make 1 a second (burst 4); retry in 1.0 s"
        ),
        "{refused}"
    );
    // A second later one more.
    c.danger_advance_clock(1).await.unwrap();
    success(&daemon.run_as_nobody(&read));
    failure(&daemon.run_as_nobody(&read), "RESOURCE_EXHAUSTED");

    // Without the role, the default: two at once.
    change_binding(
        &c,
        &on_secret,
        false,
        "lockbox.payloadViewer",
        "user:nobody",
    )
    .await;
    change_binding(&c, &on_secret, true, "viewer", "user:nobody").await;
    for _ in 0..2 {
        success(&daemon.run_as_nobody(&read));
    }
    let refused = failure(&daemon.run_as_nobody(&read), "RESOURCE_EXHAUSTED");
    assert!(refused.contains("(burst 2)"), "{refused}");

    // Changes count separately, refused or not: three at once by default.
    let create = ["secret", "create", "--name", "mine"];
    for _ in 0..3 {
        failure(&daemon.run_as_nobody(&create), "PERMISSION_DENIED");
    }
    let refused = failure(&daemon.run_as_nobody(&create), "RESOURCE_EXHAUSTED");
    assert!(refused.contains("rate limit mutations"), "{refused}");
    // Metadata reads are not limited.
    for _ in 0..5 {
        success(&daemon.run_as_nobody(&["secret", "get", "--id", &id]));
    }
}

#[test]
fn a_bad_rate_stops_lockboxd_at_start_saying_which() {
    let (kms, mut daemon) = Daemon::with_kms("");
    daemon.stop();
    let daemon = Daemon::new(
        &kms,
        "[rate_limits.roles.\"lockbox.reader\"]\npayload_reads = { per_second = 1 }\n",
    );
    let stderr = daemon.start_expecting_failure();
    assert!(
        stderr.contains("rate_limits.roles: unknown role \"lockbox.reader\""),
        "{stderr}"
    );
}
