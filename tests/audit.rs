//! lockboxd's audit trail: payload reads (allowed and denied) and changes, one JSON object a
//! line in files of its own, rotated by size, hash-chained and signed by lockbox-kms;
//! `lockbox audit verify` accepts the trail as written and names the place of any change,
//! including one whose chain was made again to match.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_tests::payload::{secret, set};
use lockbox_tests::{Daemon, failure, json, success};
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

/// `lines` with every chain line made again over the lines as they now are (README, "Audit
/// trail"), as someone able to write the files could.
fn rechain(text: &str) -> String {
    use lockbox_proto::bytes::hex;
    use sha2::{Digest, Sha256};
    let (mut seq, mut prev, mut covered, mut count) = (0u64, [0u8; 32], Sha256::new(), 0);
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("{\"chain\":") {
            let lines_hash = std::mem::take(&mut covered).finalize();
            let hash: [u8; 32] = Sha256::new()
                .chain_update(prev)
                .chain_update(lines_hash)
                .finalize()
                .into();
            seq += 1;
            out.push_str(&format!(
                "{{\"chain\":{seq},\"lines\":{count},\"prev\":\"{}\",\"hash\":\"{}\"}}\n",
                hex(&prev),
                hex(&hash)
            ));
            (prev, count) = (hash, 0);
        } else {
            covered.update(line.as_bytes());
            covered.update(b"\n");
            count += 1;
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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
    // Reads by name get a line each, enough to rotate the files.
    for _ in 0..30 {
        client.get_payload_by_name("", "db", None).await.unwrap();
    }
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
    // A connection repeating a read between two writes of the trail gets one line for the
    // run, with its `count` (how many runs form depends on timing; the reads they count
    // do not).
    let counted = |e: &&Value| e.get("count").map_or(1, |c| c.as_u64().unwrap());
    assert_eq!(reads.iter().map(counted).sum::<u64>(), 92, "{events:#?}");
    let ok = reads.iter().filter(|e| e["status"] == "OK").map(counted);
    assert_eq!(ok.sum::<u64>(), 90);
    for run in reads.iter().filter(|e| e.get("count").is_some()) {
        assert!(run["count"].as_u64().unwrap() > 1, "{run}");
        assert!(run["last"].as_str().unwrap() >= run["time"].as_str().unwrap());
        assert_eq!(run["status"], "OK");
    }
    assert!(
        reads
            .iter()
            .all(|e| e["time"].as_str().unwrap().ends_with('Z'))
    );
    let first = reads[0];
    assert_eq!(first["subject"], "user:root");
    // Every line names the front-end and the process it served.
    assert!(
        events
            .iter()
            .filter(|e| e.get("signed").is_none())
            .all(|e| e["frontend"] == "unix" && e["pid"].as_u64().is_some_and(|p| p > 0)),
        "{events:#?}"
    );
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
    // Signature lines are lines of the trail too.
    let signatures = events.iter().filter(|e| e.get("signed").is_some()).count();
    assert!(signatures >= 1, "signed at shutdown: {events:#?}");
    assert_eq!(verified["lines"], events.len());
    assert_eq!(verified["signatures"], signatures);
    assert_eq!(verified["unchained_tail"], 0);
    // The signature at shutdown vouches for every line.
    assert_eq!(verified["unsigned_lines"], 0, "{verified}");
    // It is reported at the chain line the last signature names, which rotation may have
    // left in the file before the signature's.
    let last_signed = events
        .iter()
        .rev()
        .find_map(|e| e["signed"].as_u64())
        .unwrap();
    let (file, line) = files
        .iter()
        .find_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let at = text
                .lines()
                .position(|l| l.starts_with(&format!("{{\"chain\":{last_signed},")))?;
            Some((f.display().to_string(), at + 1))
        })
        .unwrap();
    assert_eq!(verified["signed_through"]["file"], file, "{verified}");
    assert_eq!(verified["signed_through"]["line"], line, "{verified}");

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
    std::fs::write(denied_in, text.clone()).unwrap();
    let mut shuffled = files.clone();
    shuffled.swap(0, 1);
    assert!(!verify(&daemon, &shuffled).status.success());

    // Someone who can write the files changes a line and makes the chain again: the chain
    // holds, the signature does not.
    let whole: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let forged = rechain(&whole.replace("user:nobody", "user:nobodx"));
    let forged_file = trail.path().join("forged.jsonl");
    std::fs::write(&forged_file, &forged).unwrap();
    let out = verify(&daemon, std::slice::from_ref(&forged_file));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the trail up to it was rewritten"),
        "{stderr}"
    );
    // Made again from the untouched lines, it verifies: the forgery is what fails.
    std::fs::write(&forged_file, rechain(&whole)).unwrap();
    assert_eq!(
        json(&verify(&daemon, std::slice::from_ref(&forged_file)))["unsigned_lines"],
        0
    );
}

/// A restarted lockboxd goes on with its chain, so the files of several runs verify as one
/// trail, each run ending in a signature by lockbox-kms; a public key given by hand that
/// did not sign it is refused.
#[tokio::test]
async fn the_trail_of_several_runs_is_one_chain_signed_at_each_shutdown() {
    let trail = tempfile::tempdir().unwrap();
    let config = format!("[audit]\ndir = \"{}\"\n", trail.path().display());
    let (_kms, mut daemon) = Daemon::with_kms(&config);
    let id = daemon
        .client()
        .await
        .create_secret(secret("db", vec![set("password", "s3cret")]))
        .await
        .unwrap()
        .resource_id;
    for _ in 0..3 {
        daemon.client().await.get_payload(&id, None).await.unwrap();
        daemon.stop();
        daemon.start();
    }
    daemon.stop();
    let files = trail_files(trail.path());
    let verified = json(&verify(&daemon, &files));
    assert_eq!(verified["signatures"], 4, "{verified}");
    assert_eq!(verified["unsigned_lines"], 0, "{verified}");
    let reads = events(&files)
        .iter()
        .filter(|e| e["event"] == "GetPayload")
        .count();
    assert_eq!(reads, 3);

    let stranger = trail.path().join("stranger.pem");
    let other_key = p256::SecretKey::from_slice(&[7u8; 32])
        .unwrap()
        .public_key();
    {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        std::fs::write(
            &stranger,
            other_key.to_public_key_pem(LineEnding::LF).unwrap(),
        )
        .unwrap();
    }
    let out = daemon
        .cli()
        .args(["audit", "verify", "--public-key"])
        .arg(&stranger)
        .args(&files)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not hold"), "{stderr}");
}

/// A trail that cannot be written refuses what it would record, the repeated reads it
/// counts included, with `UNAVAILABLE` and the reason.
#[tokio::test]
async fn a_trail_that_cannot_be_written_refuses_reads_and_changes() {
    use lockbox_client::proto::ErrorCode;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("trail");
    let config = format!(
        "[audit]\ndir = \"{}\"\nmax_file_bytes = 4096\n",
        dir.display()
    );
    let (_kms, mut daemon) = Daemon::with_kms(&config);
    let client = daemon.client().await;
    let id = client
        .create_secret(secret("db", vec![set("password", "s3cret")]))
        .await
        .unwrap()
        .resource_id;
    for _ in 0..3 {
        client.get_payload(&id, None).await.unwrap();
    }
    // Lines go on to the file removed with its directory until it is full; the rotation
    // then cannot open the next one.
    std::fs::remove_dir_all(&dir).unwrap();
    let mut refused = None;
    for _ in 0..100_000 {
        if let Err(e) = client.get_payload_by_name("", "db", None).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("reads go on while the trail cannot be written");
    assert_eq!(
        lockbox_client::error_code(&refused),
        ErrorCode::Unavailable,
        "{refused}"
    );
    let why = refused.to_string();
    assert!(why.contains("audit trail cannot be written"), "{why}");
    assert!(why.contains("trail/audit.jsonl"), "{why}");
    // The read this connection repeats, counted rather than written, is refused too.
    let e = client.get_payload(&id, None).await.unwrap_err();
    assert_eq!(
        lockbox_client::error_code(&e),
        ErrorCode::Unavailable,
        "{e}"
    );
    let e = client
        .create_secret(secret("other", vec![set("k", "v")]))
        .await
        .unwrap_err();
    assert_eq!(
        lockbox_client::error_code(&e),
        ErrorCode::Unavailable,
        "{e}"
    );
    failure(&daemon.run(["payload", "get", "--id", &id]), "UNAVAILABLE");
    daemon.stop();
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
    // Direct requests: a change and a use of the key, and a refused change.
    let kms_client = kms.client().await;
    kms_client.rotate(&key_id).await.unwrap();
    kms_client
        .encrypt(&key_id, None, b"", b"direct")
        .await
        .unwrap();
    kms.open_socket_to_nobody();
    failure(
        &kms.run_as_nobody(&["kms", "symmetric-key", "rotate", &key_id]),
        "PERMISSION_DENIED",
    );
    // The KMS's own key that signs its trail, readable by its administrators, kept for an
    // offline check as the README says.
    let own = json(&kms.run([
        "--format",
        "json",
        "kms",
        "asymmetric-signature-key",
        "list",
        "--folder-id",
        "lockbox-kms",
    ]));
    let own = own.as_array().unwrap();
    assert_eq!(own.len(), 1, "{own:?}");
    assert_eq!(own[0]["name"], "audit-trail");
    let keys = tempfile::tempdir().unwrap();
    let own_key_pem = keys.path().join("key.pem");
    success(&kms.run([
        "kms",
        "asymmetric-signature-key",
        "get-public-key",
        own[0]["id"].as_str().unwrap(),
        "--output",
        own_key_pem.to_str().unwrap(),
    ]));
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
    assert!(!kms.log().contains("AUDIT"), "{}", kms.log());
    let direct = |event: &str, subject: &str, status: &str| {
        decisions
            .iter()
            .filter(|e| {
                e["event"] == event
                    && e["subject"] == subject
                    && e["resource"] == format!("key {key_id}")
                    && e["status"] == status
                    && e.get("relay").is_none()
            })
            .count()
    };
    assert_eq!(
        direct("RotateSymmetricKey", &my_subject(), "OK"),
        1,
        "{decisions:#?}"
    );
    assert_eq!(direct("Encrypt", &my_subject(), "OK"), 1, "{decisions:#?}");
    assert_eq!(
        direct("RotateSymmetricKey", "user:nobody", "PERMISSION_DENIED"),
        1,
        "{decisions:#?}"
    );
    assert!(
        decisions
            .iter()
            .any(|e| e["event"] == "CreateSymmetricKey" && e["status"] == "OK"),
        "{decisions:#?}"
    );
    // Reads of metadata are not audited.
    assert!(
        !decisions
            .iter()
            .any(|e| e["event"] == "ListAsymmetricSignatureKeys"),
        "{decisions:#?}"
    );
    // Signed at shutdown by the KMS's own key: with lockbox-kms stopped, its public key
    // must be given.
    let unreachable = failure(&verify(&daemon, &files), "UNAVAILABLE");
    assert!(unreachable.contains("--public-key"), "{unreachable}");
    let out = daemon
        .cli()
        .args(["--format", "json", "audit", "verify", "--public-key"])
        .arg(&own_key_pem)
        .args(&files)
        .output()
        .unwrap();
    let verified = json(&out);
    assert_eq!(verified["lines"], decisions.len());
    assert_eq!(verified["signatures"], 1, "{verified}");
    assert_eq!(verified["unsigned_lines"], 0, "{verified}");
}
