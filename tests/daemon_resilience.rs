//! Hostile and broken peers: readers that never read, users that hold every connection they
//! can, a KMS that stops answering, and settings that cannot work. The daemon keeps serving
//! everyone else and refuses what it cannot do with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::CallError;
use lockbox_client::proto::hello::Service;
use lockbox_client::proto::lockbox::{AddVersion, LockboxRequest, LockboxResource};
use lockbox_client::proto::{ErrorCode, Request, frame};
use lockbox_tests::payload::{secret, set, set_binary};
use lockbox_tests::wire::{connected_to, hello};
use lockbox_tests::{Daemon, Kms, KmsOptions, NOBODY, failure, is_root, my_subject, success};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// Resident memory of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// A new version of `secret` setting `k` to `value`.
fn version(secret: &str, value: &str) -> AddVersion {
    AddVersion {
        secret_id: secret.into(),
        description: String::new(),
        payload_entries: vec![set("k", value)],
        base_version_id: None,
    }
}

/// Sends `sig` (`-STOP`, `-CONT`) to process `pid`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Median and worst of `samples`.
fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

/// Reads `id` `count` times, one at a time; the time each read took.
async fn timed_reads(
    client: &lockbox_client::LockboxClient,
    id: &str,
    count: usize,
) -> Vec<Duration> {
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let payload = client.get_payload(id, None).await.unwrap();
        took.push(started.elapsed());
        assert_eq!(payload.len(), 1);
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_never_read_hold_bounded_memory_and_others_keep_their_latency() {
    let (_kms, daemon) = Daemon::with_kms("");
    let client = daemon.client().await;
    let big = vec![0x5a; 64 * 1024 - 1];
    let id = client
        .create_secret(secret("big", vec![set_binary("k", &big)]))
        .await
        .unwrap()
        .resource_id;
    let before = timed_reads(&client, &id, 300).await;
    let rss_before = rss(daemon.pid());

    // A hundred connections, each pipelining 200 reads of the 64 KiB payload (12.5 MiB of
    // answers apiece) and reading none of them.
    let mut request = Vec::new();
    for n in 1..=200u64 {
        let body = LockboxRequest::GetPayload {
            secret_id: id.clone(),
            version_id: None,
        };
        let framed = Request {
            id: n,
            on_behalf_of: None,
            body,
        };
        frame::encode(&framed, &mut request, frame::DEFAULT_MAX_FRAME).unwrap();
    }
    let mut hostile = Vec::new();
    for _ in 0..100 {
        let mut s = connected_to(&daemon.socket(), Service::Lockbox);
        s.write_all(&request).unwrap();
        hostile.push(s);
    }
    let during = timed_reads(&client, &id, 300).await;
    let rss_after = rss(daemon.pid());
    let growth = rss_after.saturating_sub(rss_before);
    let ((p50_before, max_before), (p50_during, max_during)) = (summary(before), summary(during));
    eprintln!(
        "lockboxd RSS {} MiB -> {} MiB (+{} KiB) with 100 connections not reading; \
         a reader's latency p50 {p50_before:?} max {max_before:?} before, \
         p50 {p50_during:?} max {max_during:?} during",
        rss_before >> 20,
        rss_after >> 20,
        growth >> 10
    );
    assert!(
        growth <= 64 << 20,
        "lockboxd grew by {} MiB for peers that never read",
        growth >> 20
    );
    drop(hostile);
    // Still serving once they are gone.
    timed_reads(&client, &id, 1).await;
}

#[tokio::test]
async fn a_user_at_the_connection_cap_does_not_keep_another_out() {
    assert!(
        is_root(),
        "this test connects as another Unix user and must run as root (CI does)"
    );
    let (_kms, daemon) = Daemon::with_kms("max_connections = 8\nmax_connections_per_user = 4\n");
    daemon.open_socket_to_nobody();
    let admin = daemon.client().await;
    let id = admin
        .create_secret(secret("shared", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    lockbox_tests::change_binding(
        &admin,
        &LockboxResource::Secret(id.clone()),
        true,
        "lockbox.payloadViewer",
        "user:nobody",
    )
    .await;

    // This user tries to take every connection there is: three more are served (the admin's
    // client holds the fourth), the rest refused at once with the reason.
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..8 {
        let (s, reply) = hello(&daemon.socket(), Service::Lockbox);
        match reply {
            Ok(_) => held.push(s),
            Err(e) => refused.push(e),
        }
    }
    assert_eq!((held.len(), refused.len()), (3, 5), "{refused:?}");
    for e in &refused {
        assert_eq!(e.code, ErrorCode::ResourceExhausted, "{e:?}");
        assert!(e.message.contains("connections"), "{e:?}");
    }
    let refusal = failure(
        &daemon
            .cli()
            .args(["payload", "get", "--id", &id])
            .output()
            .unwrap(),
        "RESOURCE_EXHAUSTED",
    );
    assert!(refusal.contains("limit"), "{refusal}");

    // Another user still connects and reads.
    let out = Command::new("timeout")
        .arg("20")
        .arg(lockbox_tests::binary("lockbox"))
        .env("LOCKBOX_SOCKET", daemon.socket())
        .args(["payload", "get", "--id", &id, "--key", "k"])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert_eq!(success(&out).trim(), "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_kms_fails_only_the_reads_that_need_it_and_only_for_the_deadline() {
    let (kms, daemon) = Daemon::with_kms("kms_timeout = 1\n");
    let client = daemon.client().await;
    let me = my_subject();
    let key = lockbox_tests::kms_key_with(
        &kms.client().await,
        &[("kms.keys.encrypterDecrypter", me.as_str())],
    )
    .await;
    let mut keyed = secret("keyed", vec![set("k", "kms")]);
    keyed.kms_key_id = key;
    let keyed = client.create_secret(keyed).await.unwrap().resource_id;
    let plain = client
        .create_secret(secret("plain", vec![set("k", "ring")]))
        .await
        .unwrap()
        .resource_id;
    client.get_payload(&keyed, None).await.unwrap();

    signal(kms.pid(), "-STOP");
    let started = Instant::now();
    let hung = client.get_payload(&keyed, None).await.unwrap_err();
    let waited = started.elapsed();
    signal(kms.pid(), "-CONT");
    let CallError::Server(e) = &hung else {
        panic!("{hung:?}")
    };
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    assert!(e.message.contains("did not answer within"), "{e:?}");
    // The deadline is a second, give or take the watchdog's quarter; never the ten-second
    // connect timeout or for ever.
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // The KMS answers again: so do its reads.
    assert_eq!(client.get_payload(&keyed, None).await.unwrap().len(), 1);
    assert_eq!(client.get_payload(&plain, None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_kms_hangs_keyring_reads_go_on() {
    let (kms, daemon) = Daemon::with_kms("kms_timeout = 3600\n");
    let client = daemon.client().await;
    let plain = client
        .create_secret(secret("plain", vec![set("k", "ring")]))
        .await
        .unwrap()
        .resource_id;
    signal(kms.pid(), "-STOP");
    for _ in 0..100 {
        assert_eq!(client.get_payload(&plain, None).await.unwrap().len(), 1);
    }
    signal(kms.pid(), "-CONT");
}

#[test]
fn settings_that_cannot_work_are_refused_at_start_by_name() {
    let mut kms = Kms::init(KmsOptions {
        enrol_daemon: true,
        ..KmsOptions::default()
    });
    kms.start();
    for (config, named) in [
        ("max_connections = 0", "max_connections"),
        (
            "max_connections = 4\nmax_connections_per_user = 5",
            "max_connections_per_user",
        ),
        ("max_frame = 65536", "max_frame"),
        ("max_frame = 1073741824", "max_frame"),
        ("idle_timeout = 0", "idle_timeout"),
        ("kms_timeout = 0", "kms_timeout"),
        ("max_connections = 100000000", "LimitNOFILE"),
    ] {
        let daemon = Daemon::new(&kms, config);
        let err = daemon.start_expecting_failure();
        assert!(err.contains(named), "{config:?}: {err}");
    }

    let broken = Kms::init(KmsOptions {
        config: "max_frame = 1024\n".into(),
        ..KmsOptions::default()
    });
    let err = broken.start_expecting_failure();
    assert!(err.contains("max_frame"), "{err}");
}

#[test]
fn lockboxd_keeps_its_data_private_and_dumps_no_core() {
    use std::os::unix::fs::PermissionsExt;
    let (_kms, mut daemon) = Daemon::with_kms("");
    let mode = std::fs::metadata(daemon.data_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    // The log says whether memory is locked, either way.
    assert!(daemon.log().contains("memory"), "{}", daemon.log());
    daemon.stop();

    std::fs::set_permissions(daemon.data_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = daemon.start_expecting_failure();
    assert!(refused.contains("chmod 700"), "{refused}");
}

#[tokio::test]
async fn a_failed_sync_stops_every_write_and_lockboxd_restarts_on_what_the_disk_holds() {
    let kms = {
        let mut kms = Kms::init(KmsOptions {
            enrol_daemon: true,
            ..KmsOptions::default()
        });
        kms.start();
        kms
    };
    let mut daemon = Daemon::new(&kms, "");
    let trigger = kms.dir().join("disk-fails");
    let trigger_text = trigger.to_str().unwrap().to_owned();
    daemon.start_with(&[("LOCKBOXD_DANGER_FAIL_SYNC_IF", &trigger_text)]);
    let client = daemon.client().await;
    let kept = client
        .create_secret(secret("kept", vec![set("k", "before")]))
        .await
        .unwrap()
        .resource_id;

    std::fs::write(&trigger, "").unwrap();
    let failed = client
        .add_version(version(&kept, "during"))
        .await
        .unwrap_err();
    let CallError::Server(e) = &failed else {
        panic!("{failed:?}")
    };
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    assert!(
        e.message.contains("may or may not have been saved"),
        "{e:?}"
    );
    // lockboxd acknowledges nothing more and exits for its supervisor.
    let status = daemon.wait_exit();
    assert!(!status.success());
    assert!(
        daemon.log().contains("stopping for a restart"),
        "{}",
        daemon.log()
    );

    std::fs::remove_file(&trigger).unwrap();
    daemon.start_with(&[("LOCKBOXD_DANGER_FAIL_SYNC_IF", &trigger_text)]);
    let client = daemon.client().await;
    let payload = client.get_payload(&kept, None).await.unwrap();
    assert_eq!(payload.len(), 1);
    client.add_version(version(&kept, "after")).await.unwrap();
}
