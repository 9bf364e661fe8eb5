//! Backup and restore: `lockbox admin backup` under write load, restored with
//! `lockbox-kms restore` and `lockboxd restore` into fresh directories; every write
//! acknowledged before the backup began is there and decrypts. Damaged, newer and
//! mismatched backups are refused, and nothing is written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::LockboxClient;
use lockbox_client::proto::ErrorCode;
use lockbox_client::proto::backup::{MANIFEST_FILE, Manifest};
use lockbox_client::proto::lockbox::AddVersion;
use lockbox_tests::payload::{expect, map, secret, set};
use lockbox_tests::{
    Daemon, Kms, KmsOptions, binary, failure, json, kms_key_with, my_subject, new_version_id,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Versions written, by (secret, version), with their value.
type Written = BTreeMap<(String, String), String>;

async fn add(client: &LockboxClient, secret_id: &str, value: &str) -> String {
    let op = client
        .add_version(AddVersion {
            secret_id: secret_id.into(),
            description: String::new(),
            payload_entries: vec![set("k", value)],
            base_version_id: None,
        })
        .await
        .unwrap();
    new_version_id(&op)
}

/// Both processes, two secrets on the keyring and one on a KMS key of its own.
async fn installation() -> (Kms, Daemon, Vec<String>) {
    let (kms, daemon) = Daemon::with_kms("");
    let key_id = kms_key_with(
        &kms.client().await,
        &[("kms.keys.encrypterDecrypter", &my_subject())],
    )
    .await;
    let client = daemon.client().await;
    let mut ids = Vec::new();
    for (name, key) in [("a", ""), ("b", ""), ("c", key_id.as_str())] {
        let mut create = secret(name, vec![set("k", "first")]);
        create.kms_key_id = key.to_owned();
        ids.push(client.create_secret(create).await.unwrap().resource_id);
    }
    (kms, daemon, ids)
}

fn run(program: &str, args: &[&Path]) -> Output {
    Command::new(binary(program)).args(args).output().unwrap()
}

/// Stderr of a failed server command, asserting it failed.
fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Restores `backup` into a fresh KMS (with `unseal` as its material) and a fresh lockboxd,
/// and starts both.
fn restored(backup: &Path, unseal: &Path) -> (Kms, Daemon, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::copy(unseal, state.join("unseal.key")).unwrap();
    let out = run(
        "lockbox-kms",
        &[
            Path::new("restore"),
            Path::new("--from"),
            backup,
            Path::new("--state-dir"),
            &state,
        ],
    );
    lockbox_tests::success(&out);
    // The name lockbox-kms serves from: the refusals below check that it stays absent.
    assert!(state.join("keystore.sealed").exists());
    let mut kms = Kms::from_state(&state, KmsOptions::default());
    kms.start();
    let mut daemon = Daemon::new(&kms, "");
    let out = run(
        "lockboxd",
        &[
            Path::new("restore"),
            Path::new("--from"),
            backup,
            Path::new("--data-dir"),
            &daemon.data_dir(),
        ],
    );
    lockbox_tests::success(&out);
    daemon.start();
    (kms, daemon, scratch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_write_acknowledged_before_it() {
    let (kms, daemon, ids) = installation().await;
    let written: Arc<Mutex<Written>> = Arc::default();
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = tokio::spawn({
        let (client, written, writing, ids) = (
            daemon.client().await,
            written.clone(),
            writing.clone(),
            ids.clone(),
        );
        async move {
            let mut n = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let secret_id = &ids[n % ids.len()];
                let value = format!("v{n}");
                let version = add(&client, secret_id, &value).await;
                written
                    .lock()
                    .unwrap()
                    .insert((secret_id.clone(), version), value);
                n += 1;
            }
            n
        }
    });
    // Some writes first, so the backup point is in the middle of the load.
    while written.lock().unwrap().len() < 20 {
        tokio::task::yield_now().await;
    }
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("backup");
    let before = written.lock().unwrap().clone();
    let cli = daemon.cli();
    let out = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            let mut cli = cli;
            cli.args(["--format", "json", "admin", "backup", "--to"])
                .arg(&dir)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let total = writer.await.unwrap();
    let report = json(&out);
    assert!(report["lockboxd_files"].as_u64().unwrap() > 0, "{report}");
    assert!(
        total > before.len(),
        "writes went on during the backup ({total} in all, {} before)",
        before.len()
    );
    let manifest = Manifest::parse(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(manifest.backup_id, report["backup_id"]);
    // The unseal material is not in the backup.
    let unseal = std::fs::read(kms.state_dir().join("unseal.key")).unwrap();
    for entry in walk(&dir) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(unseal.len()).any(|w| w == unseal),
            "{} holds the unseal material",
            entry.display()
        );
    }

    let unseal_path = kms.state_dir().join("unseal.key");
    drop(daemon);
    let (_kms2, daemon2, _scratch2) = restored(&dir, &unseal_path);
    drop(kms);
    let client = daemon2.client().await;
    for ((secret_id, version_id), value) in &before {
        let payload = client
            .get_payload(secret_id, Some(version_id))
            .await
            .unwrap_or_else(|e| panic!("{secret_id}/{version_id}: {e}"));
        assert_eq!(map(&payload), expect(&[("k", value)]));
    }
    // And it goes on: a new version on each kind of secret.
    for id in &ids {
        add(&client, id, "after").await;
        assert_eq!(
            map(&client.get_payload(id, None).await.unwrap()),
            expect(&[("k", "after")])
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A copy of the backup `dir` in a new temp dir, changed by `change`.
fn altered(dir: &Path, change: impl FnOnce(&Path)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for file in walk(dir) {
        let to = copy.path().join(file.strip_prefix(dir).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
    change(copy.path());
    copy
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Manifest)) {
    let path = dir.join(MANIFEST_FILE);
    let mut manifest = Manifest::parse(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, manifest.to_json()).unwrap();
}

#[tokio::test]
async fn damaged_newer_and_mismatched_backups_are_refused_and_nothing_is_written() {
    let (kms, daemon, _) = installation().await;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("backup");
    lockbox_tests::success(&daemon.run([
        Path::new("admin"),
        Path::new("backup"),
        Path::new("--to"),
        &dir,
    ]));
    // Not into a directory that holds something.
    let again = failure(
        &daemon.run([
            Path::new("admin"),
            Path::new("backup"),
            Path::new("--to"),
            &dir,
        ]),
        "INVALID_ARGUMENT",
    );
    assert!(again.contains("exists and is not empty"), "{again}");
    let manifest = Manifest::parse(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    let unseal = kms.state_dir().join("unseal.key");

    let daemon_restore = |from: &Path, into: &Path| {
        run(
            "lockboxd",
            &[
                Path::new("restore"),
                Path::new("--from"),
                from,
                Path::new("--data-dir"),
                into,
            ],
        )
    };
    let kms_restore = |from: &Path, state: &Path| {
        if !state.join("unseal.key").exists() {
            std::fs::create_dir_all(state).unwrap();
            std::fs::copy(&unseal, state.join("unseal.key")).unwrap();
        }
        run(
            "lockbox-kms",
            &[
                Path::new("restore"),
                Path::new("--from"),
                from,
                Path::new("--state-dir"),
                state,
            ],
        )
    };
    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("data");
    let state = target.path().join("state");

    // A flipped byte in one of lockboxd's files.
    let largest = manifest
        .lockboxd
        .files
        .iter()
        .max_by_key(|f| f.size)
        .unwrap();
    let damaged = altered(&dir, |d| {
        flip_a_byte(&d.join("lockboxd").join(&largest.name))
    });
    let e = refused(&daemon_restore(damaged.path(), &data));
    assert!(
        e.contains(&format!("backup file lockboxd/{} is damaged", largest.name)),
        "{e}"
    );
    assert!(!data.exists(), "nothing is written");
    // A missing one.
    let missing = altered(&dir, |d| {
        std::fs::remove_file(d.join("lockboxd").join(&largest.name)).unwrap()
    });
    let e = refused(&daemon_restore(missing.path(), &data));
    assert!(e.contains("backup file missing"), "{e}");
    // A flipped byte in the keystore.
    let damaged = altered(&dir, |d| flip_a_byte(&d.join("kms/keystore")));
    let e = refused(&kms_restore(damaged.path(), &state));
    assert!(e.contains("backup file kms/keystore is damaged"), "{e}");
    assert!(
        !state.join("keystore.sealed").exists(),
        "nothing is written"
    );

    // From a newer lockboxd, or a newer manifest format.
    let newer = altered(&dir, |d| edit_manifest(d, |m| m.lockboxd.schema = 99));
    let e = refused(&daemon_restore(newer.path(), &data));
    assert!(e.contains("from a newer lockboxd (data schema 99"), "{e}");
    let newer = altered(&dir, |d| edit_manifest(d, |m| m.format = 99));
    let e = refused(&kms_restore(newer.path(), &state));
    assert!(e.contains("format 99 is newer"), "{e}");
    // A manifest naming a file outside the backup.
    let escaping = altered(&dir, |d| {
        edit_manifest(d, |m| m.lockboxd.files[0].name = "../../x".into())
    });
    let e = refused(&daemon_restore(escaping.path(), &data));
    assert!(e.contains("not a plain file name"), "{e}");

    // The keystore of another pair: it does not hold this lockboxd's keyring key.
    let other = altered(&dir, |d| {
        edit_manifest(d, |m| {
            m.lockboxd.keyring_kms_key_id = "abjzzzzzzzzzzzzzzzzz".into()
        })
    });
    let e = refused(&kms_restore(other.path(), &state));
    assert!(
        e.contains("are not a pair") && e.contains("abjzzzzzzzzzzzzzzzzz"),
        "{e}"
    );
    assert!(!state.join("keystore.sealed").exists());
    // Other unseal material: the keystore does not open.
    let strangers = tempfile::tempdir().unwrap();
    let stranger_state = strangers.path().join("state");
    std::fs::create_dir(&stranger_state).unwrap();
    std::fs::write(stranger_state.join("unseal.key"), [7u8; 32]).unwrap();
    std::fs::set_permissions(
        stranger_state.join("unseal.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let e = refused(&kms_restore(&dir, &stranger_state));
    assert!(e.contains("does not open with"), "{e}");

    // Into places that hold data already.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("CURRENT"), b"x").unwrap();
    let e = refused(&daemon_restore(&dir, &data));
    assert!(e.contains("exists and is not empty"), "{e}");
    let e = refused(&kms_restore(&dir, &kms.state_dir()));
    assert!(e.contains("already exists; refusing to overwrite"), "{e}");
}

/// The backup calls need lockboxd's admin and the KMS's; a file not in the checkpoint is
/// never read, whatever its name.
#[tokio::test]
async fn backups_are_for_administrators_and_read_only_their_own_files() {
    let (kms, daemon, _) = installation().await;
    daemon.open_socket_to_nobody();
    kms.open_socket_to_nobody();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("backup");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let denied = failure(
        &daemon.run_as_nobody(&["admin", "backup", "--to", dir.join("x").to_str().unwrap()]),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("lockbox.service.manage"), "{denied}");

    let client = daemon.client().await;
    let backup_id = client.begin_backup().await.unwrap().backup_id;
    let not_found = |e: lockbox_client::CallError| {
        assert_eq!(lockbox_client::error_code(&e), ErrorCode::NotFound, "{e}");
    };
    for name in ["../../../etc/passwd", "/etc/passwd", "..", "LOCK"] {
        not_found(
            client
                .read_backup(&backup_id, name, 0, 1024)
                .await
                .unwrap_err(),
        );
    }
    not_found(
        client
            .read_backup("e6b00000000000000000", "CURRENT", 0, 10)
            .await
            .unwrap_err(),
    );
    // A newer backup abandons the first.
    let second = client.begin_backup().await.unwrap().backup_id;
    not_found(
        client
            .read_backup(&backup_id, "CURRENT", 0, 10)
            .await
            .unwrap_err(),
    );
    assert!(
        !client
            .read_backup(&second, "CURRENT", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    client.end_backup(&second).await.unwrap();
    not_found(client.end_backup(&second).await.unwrap_err());
    // The checkpoint's files are gone with it.
    assert!(!daemon.data_dir().join("backups").join(&second).exists());

    // An administrator of lockboxd who is not kms.admin gets lockboxd's part, then
    // lockbox-kms refuses the keystore: the command fails and writes no manifest, so the
    // directory never passes for a backup.
    let (clouds, _) = client
        .list_clouds(lockbox_client::proto::common::Page::default())
        .await
        .unwrap();
    let organization = lockbox_client::proto::lockbox::LockboxResource::Organization(
        clouds[0].organization_id.clone(),
    );
    lockbox_tests::change_binding(&client, &organization, true, "admin", "user:nobody").await;
    let partial = dir.join("partial");
    let denied = failure(
        &daemon.run_as_nobody(&["admin", "backup", "--to", partial.to_str().unwrap()]),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("the KMS root"), "{denied}");
    assert!(
        partial
            .join("lockboxd")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
    assert!(!partial.join(MANIFEST_FILE).exists());
}
