//! `lockbox admin …`: maintenance of lockboxd itself.

use crate::Format;
use crate::io::invalid;
use crate::render::print;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use lockbox_client::proto::backup::{
    DAEMON_DIR, DaemonPart, FORMAT, FileEntry, KEYSTORE_FILE, KMS_DIR, KmsPart, MANIFEST_FILE,
    Manifest, is_plain_file_name,
};
use lockbox_client::proto::bytes::hex;
use lockbox_client::proto::kms::MAX_KEYSTORE_CHUNK;
use lockbox_client::proto::lockbox::{BackupFile, BackupStarted, MAX_BACKUP_CHUNK};
use lockbox_client::{KmsClient, LockboxClient};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Wrap lockboxd's service keyring under its KMS key's primary version now (lockboxd
    /// also does it at every start and every keyring_rewrap_interval). Run it after
    /// rotating that key and before destroying the old version. Needs
    /// lockbox.service.manage (admin) on the organization.
    RewrapKeyring,
    /// Back up lockboxd and lockbox-kms while both keep serving: a consistent checkpoint of
    /// lockboxd's data, then lockbox-kms's keystore, sealed as it is, with a manifest of
    /// checksums. The unseal material is not part of it: keep it apart, as safely as the
    /// original. Restore with `lockbox-kms restore` and `lockboxd restore`. Needs admin on
    /// lockboxd's organization and kms.admin on the KMS root.
    Backup {
        /// Directory to write the backup into (created with mode 0700; if it exists it
        /// must be empty).
        #[arg(long)]
        to: PathBuf,
    },
}

pub(crate) async fn run(
    client: &LockboxClient,
    kms_socket: &Path,
    format: Format,
    command: AdminCommand,
) -> Result<()> {
    match command {
        AdminCommand::RewrapKeyring => {
            let (kms_key_id, from_version_id, version_id) = client.rewrap_keyring().await?;
            print(
                format,
                &json!({
                    "kms_key_id": kms_key_id,
                    "from_version_id": from_version_id,
                    "version_id": version_id,
                }),
            );
        }
        AdminCommand::Backup { to } => {
            let kms = KmsClient::connect(kms_socket).await?;
            let manifest = backup(client, &kms, &to).await?;
            let bytes: u64 = manifest.lockboxd.files.iter().map(|f| f.size).sum();
            print(
                format,
                &json!({
                    "backup_id": manifest.backup_id,
                    "directory": to.display().to_string(),
                    "created_at": crate::render::time(manifest.created_at),
                    "lockboxd_files": manifest.lockboxd.files.len(),
                    "lockboxd_bytes": bytes,
                    "keystore_bytes": manifest.kms.file.size,
                }),
            );
        }
    }
    Ok(())
}

/// Writes a backup into `dir`: lockboxd's checkpoint first, then the keystore (so every key
/// version the checkpoint needs is in it), then the manifest, which marks it complete.
async fn backup(client: &LockboxClient, kms: &KmsClient, dir: &Path) -> Result<Manifest> {
    prepare_directory(dir)?;
    let BackupStarted {
        backup_id,
        schema,
        created_at,
        keyring_kms_key_id,
        files,
    } = client.begin_backup().await?;
    let copied = copy_checkpoint(client, &backup_id, &files, &dir.join(DAEMON_DIR)).await;
    // Release the checkpoint whatever happened; a failure to copy is the error to report.
    let ended = client.end_backup(&backup_id).await;
    let files = copied?;
    ended?;
    let (kms_schema, keystore) = export_keystore(kms).await?;
    let keystore_entry = write_file(&dir.join(KMS_DIR), KEYSTORE_FILE, &keystore)?;
    let manifest = Manifest {
        format: FORMAT,
        backup_id,
        created_at,
        lockboxd: DaemonPart {
            schema,
            keyring_kms_key_id,
            files,
        },
        kms: KmsPart {
            schema: kms_schema,
            file: keystore_entry,
        },
    };
    write_file(dir, MANIFEST_FILE, &manifest.to_json())?;
    sync_directory(dir)?;
    Ok(manifest)
}

/// Creates `dir` (mode 0700) and its two parts' directories; an existing `dir` must be
/// empty, so a backup never mixes with other files.
fn prepare_directory(dir: &Path) -> Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(invalid(format!(
                "{} exists and is not empty; back up into a new directory",
                dir.display()
            )));
        }
    }
    for d in [dir.to_owned(), dir.join(DAEMON_DIR), dir.join(KMS_DIR)] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .with_context(|| format!("creating {}", d.display()))?;
    }
    Ok(())
}

/// Copies every file of the checkpoint into `into`, checking each against its listed length
/// and SHA-256.
async fn copy_checkpoint(
    client: &LockboxClient,
    backup_id: &str,
    files: &[BackupFile],
    into: &Path,
) -> Result<Vec<FileEntry>> {
    let mut entries = Vec::with_capacity(files.len());
    for file in files {
        if !is_plain_file_name(&file.name) {
            bail!(
                "lockboxd listed a backup file {:?} that is not a plain name",
                file.name
            );
        }
        let path = into.join(&file.name);
        let mut out = new_private_file(&path)?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        while offset < file.size {
            let chunk = client
                .read_backup(backup_id, &file.name, offset, MAX_BACKUP_CHUNK)
                .await?;
            if chunk.is_empty() {
                bail!("{} ended at {offset} bytes of {}", file.name, file.size);
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .with_context(|| format!("writing {}", path.display()))?;
            offset += chunk.len() as u64;
        }
        out.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
        let sha256 = hex(&hasher.finalize());
        if offset != file.size || sha256 != file.sha256 {
            bail!(
                "{} arrived damaged (its checksum does not match lockboxd's)",
                file.name
            );
        }
        entries.push(FileEntry {
            name: file.name.clone(),
            size: file.size,
            sha256,
        });
    }
    sync_directory(into)?;
    Ok(entries)
}

/// The sealed keystore, read whole from one version of the file: pieces that span a change
/// (lockbox-kms replaced the file meanwhile) are thrown away and the read starts over.
async fn export_keystore(kms: &KmsClient) -> Result<(u32, Vec<u8>)> {
    for _ in 0..5 {
        let (schema, total, sha256, mut bytes) = kms.export_keystore(0, MAX_KEYSTORE_CHUNK).await?;
        let mut consistent = true;
        while (bytes.len() as u64) < total {
            let (_, t, s, chunk) = kms
                .export_keystore(bytes.len() as u64, MAX_KEYSTORE_CHUNK)
                .await?;
            if t != total || s != sha256 || chunk.is_empty() {
                consistent = false;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        if consistent && hex(&Sha256::digest(&bytes)) == sha256 {
            return Ok((schema, bytes));
        }
    }
    bail!("lockbox-kms's keystore kept changing while it was exported; try again")
}

/// Writes `bytes` to the new file `dir/name` (mode 0600), synced; returns its entry.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileEntry> {
    let path = dir.join(name);
    let mut out = new_private_file(&path)?;
    out.write_all(bytes)
        .and_then(|()| out.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    sync_directory(dir)?;
    Ok(FileEntry {
        name: name.to_owned(),
        size: bytes.len() as u64,
        sha256: hex(&Sha256::digest(bytes)),
    })
}

fn new_private_file(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

fn sync_directory(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}
