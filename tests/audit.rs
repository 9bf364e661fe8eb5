//! lockboxd's audit trail: payload reads (allowed and denied) and changes, one JSON object a
//! line in files of its own, rotated by size, hash-chained; `lockbox audit verify` accepts
//! the trail as written and names the place of any change.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_tests::payload::{secret, set};
use lockbox_tests::{Daemon, failure, json};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The trail's files, oldest first.
fn trail_files(dir: &Path) -> Vec<PathBuf> {
    let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let n = p
                .extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse().ok())
                .unwrap_or(0);
            (n, p)
        })
        .collect();
    numbered.sort_by_key(|f| std::cmp::Reverse(f.0));
    numbered.into_iter().map(|(_, p)| p).collect()
}

/// Every event line of the trail (chain lines left out), parsed.
fn events(files: &[PathBuf]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .filter(|v| v.get("chain").is_none())
        .collect()
}

fn verify(daemon: &Daemon, files: &[PathBuf]) -> std::process::Output {
    daemon
        .cli()
        .args(["--format", "json", "audit", "verify"])
        .args(files)
        .output()
        .unwrap()
}

#[tokio::test]
async fn reads_and_changes_are_audited_in_a_chained_trail_that_verifies() {
    let trail = tempfile::tempdir().unwrap();
    let config = format!(
        "[audit]\ndir = \"{}\"\nmax_file_bytes = 4096\nkeep_files = 100\n",
        trail.path().display()
    );
    let (_kms, mut daemon) = Daemon::with_kms(&config);
    let client = daemon.client().await;
    let id = client
        .create_secret(secret("db", vec![set("password", "s3cret")]))
        .await
        .unwrap()
        .resource_id;
    for _ in 0..60 {
        client.get_payload(&id, None).await.unwrap();
    }
    client.get_payload_by_name("", "db", None).await.unwrap();
    client
        .get_payload(&id, Some("e6v00000000000000000"))
        .await
        .unwrap_err();
    daemon.open_socket_to_nobody();
    failure(
        &daemon.run_as_nobody(&["payload", "get", "--id", &id]),
        "PERMISSION_DENIED",
    );
    failure(
        &daemon.run_as_nobody(&["secret", "delete", "--id", &id]),
        "PERMISSION_DENIED",
    );
    client.delete_secret(&id).await.unwrap();
    // Lines reach the files off the request path; stopping flushes them.
    daemon.stop();

    let files = trail_files(trail.path());
    assert!(files.len() > 2, "rotated at 4 KiB: {files:?}");
    let events = events(&files);
    let reads: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "GetPayload")
        .collect();
    assert_eq!(reads.len(), 63, "{events:#?}");
    let ok = reads.iter().filter(|e| e["status"] == "OK").count();
    assert_eq!(ok, 61);
    assert!(
        reads
            .iter()
            .all(|e| e["time"].as_str().unwrap().ends_with('Z'))
    );
    let first = reads[0];
    assert_eq!(first["subject"], "user:root");
    assert_eq!(first["secret"], id.as_str());
    assert!(first["version"].as_str().unwrap().starts_with("e6v"));
    assert!(
        reads
            .iter()
            .any(|e| e["secret"] == "/db" && e["status"] == "OK")
    );
    assert!(
        reads
            .iter()
            .any(|e| e["status"] == "NOT_FOUND" && e["version"] == "e6v00000000000000000")
    );
    assert!(reads.iter().any(|e| e["status"] == "PERMISSION_DENIED"
        && e["subject"] == "user:nobody"
        && e["secret"] == id.as_str()));
    // The secret's history outlives it.
    for change in ["Create secret", "Delete secret"] {
        assert!(
            events.iter().any(|e| e["event"] == change
                && e["resource"] == id.as_str()
                && e["status"] == "OK"
                && e["operation"].as_str().unwrap().starts_with("e6o")),
            "{change}: {events:#?}"
        );
    }
    // A refused change is recorded with the permission it lacked.
    assert!(
        events.iter().any(|e| e["event"] == "Denied"
            && e["subject"] == "user:nobody"
            && e["permission"] == "lockbox.secrets.delete"),
        "{events:#?}"
    );
    // No payload in the trail.
    for f in &files {
        assert!(!std::fs::read_to_string(f).unwrap().contains("s3cret"));
    }

    let verified = json(&verify(&daemon, &files));
    assert_eq!(verified["files"], files.len());
    assert_eq!(verified["lines"], events.len());
    assert_eq!(verified["unchained_tail"], 0);

    // One subject changed in one file: found, in that file.
    let denied_in = files
        .iter()
        .find(|f| std::fs::read_to_string(f).unwrap().contains("user:nobody"))
        .unwrap();
    let text = std::fs::read_to_string(denied_in).unwrap();
    std::fs::write(denied_in, text.replace("user:nobody", "user:nobodx")).unwrap();
    let out = verify(&daemon, &files);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("broken at {} line", denied_in.display()))
            && stderr.contains("was changed, removed or inserted"),
        "{stderr}"
    );
    // Files out of order break it too.
    std::fs::write(denied_in, text).unwrap();
    let mut shuffled = files.clone();
    shuffled.swap(0, 1);
    assert!(!verify(&daemon, &shuffled).status.success());
}

/// lockbox-kms with `[audit] dir`: its relayed decisions go to chained JSON lines in files
/// of its own, and none to its log.
#[tokio::test]
async fn the_kms_writes_its_decisions_to_a_chained_trail_of_its_own() {
    use lockbox_tests::{Kms, KmsOptions, kms_key_with, my_subject};
    let trail = tempfile::tempdir().unwrap();
    let mut kms = Kms::init(KmsOptions {
        enrol_daemon: true,
        config: format!("[audit]\ndir = \"{}\"\n", trail.path().display()),
        ..KmsOptions::default()
    });
    kms.start();
    let mut daemon = Daemon::new(&kms, "");
    daemon.start();
    let key_id = kms_key_with(
        &kms.client().await,
        &[("kms.keys.encrypterDecrypter", &my_subject())],
    )
    .await;
    let client = daemon.client().await;
    let mut create = secret("card", vec![set("k", "v")]);
    create.kms_key_id = key_id.clone();
    let id = client.create_secret(create).await.unwrap().resource_id;
    for _ in 0..3 {
        client.get_payload(&id, None).await.unwrap();
    }
    daemon.stop();
    kms.stop();

    let files = trail_files(trail.path());
    let decisions = events(&files);
    let on_key = |permission: &str| {
        decisions
            .iter()
            .filter(|e| {
                e["event"] == "KmsDecision"
                    && e["permission"] == permission
                    && e["resource"] == format!("key {key_id}")
                    && e["relay"] == my_subject().as_str()
                    && e["subject"] == my_subject().as_str()
                    && e["status"] == "OK"
            })
            .count()
    };
    assert_eq!(on_key("kms.keys.decrypt"), 3, "{decisions:#?}");
    assert!(on_key("kms.keys.encrypt") >= 1, "{decisions:#?}");
    let verified = json(&verify(&daemon, &files));
    assert_eq!(verified["lines"], decisions.len());
    assert!(!kms.log().contains("AUDIT"), "{}", kms.log());
}
