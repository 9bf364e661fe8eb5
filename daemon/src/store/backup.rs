//! Backups of the data directory: a checkpoint taken into a directory of its own, its files
//! listed with their lengths and SHA-256, read back a piece at a time, and removed when the
//! backup is done (or abandoned: [`Backups::clear`] at start).

use super::StoreError;
use super::records::Records;
use lockbox_proto::bytes::hex;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// Its name in the checkpoint's directory.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

/// A checkpoint on disk, removed when dropped.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<CheckpointFile>,
}

/// Where checkpoints are taken: a directory beside the data, on the same filesystem so the
/// engine can hard-link its table files instead of copying them.
#[derive(Debug, Clone)]
pub struct Backups {
    root: PathBuf,
}

impl Backups {
    /// Checkpoints under `root` (created, mode 0700, when the first is taken).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Removes what earlier runs left behind (a backup abandoned by a crash).
    pub fn clear(&self) -> Result<(), StoreError> {
        let abandoned = match fs::read_dir(&self.root) {
            Ok(mut entries) => entries.next().is_some(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&self.root, e)),
        };
        fs::remove_dir_all(&self.root).map_err(|e| io(&self.root, e))?;
        if abandoned {
            // A finished backup leaves the directory empty; only a crash leaves one in it.
            tracing::info!(dir = %self.root.display(), "removed an abandoned backup checkpoint");
        }
        Ok(())
    }

    /// Takes a checkpoint named `id` of `records` and lists its files. Blocking: reads every
    /// file once to checksum it.
    pub fn take(&self, records: &Records, id: &str) -> Result<Checkpoint, StoreError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| io(&self.root, e))?;
        let dir = self.root.join(id);
        records.checkpoint(&dir)?;
        // From here the directory exists: dropping the checkpoint removes it.
        let mut checkpoint = Checkpoint {
            dir,
            files: Vec::new(),
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&checkpoint.dir).map_err(|e| io(&checkpoint.dir, e))? {
            let entry = entry.map_err(|e| io(&checkpoint.dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            let path = checkpoint.dir.join(&name);
            let (size, sha256) = digest(&path)?;
            checkpoint.files.push(CheckpointFile { name, size, sha256 });
        }
        Ok(checkpoint)
    }
}

impl Checkpoint {
    /// Its files, by name.
    pub fn files(&self) -> &[CheckpointFile] {
        &self.files
    }

    /// Up to `length` bytes of the file `name` from `offset`; empty at or past its end.
    /// `None` for a name the checkpoint does not list: only listed files are ever opened,
    /// whatever the caller sends.
    pub fn read(
        &self,
        name: &str,
        offset: u64,
        length: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(file) = self.files.iter().find(|f| f.name == name) else {
            return Ok(None);
        };
        let path = self.dir.join(&file.name);
        let mut f = fs::File::open(&path).map_err(|e| io(&path, e))?;
        let want = usize::try_from(file.size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(length);
        let mut out = vec![0; want];
        f.seek(SeekFrom::Start(offset)).map_err(|e| io(&path, e))?;
        f.read_exact(&mut out).map_err(|e| io(&path, e))?;
        Ok(Some(out))
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove a backup checkpoint");
        }
    }
}

/// The length and SHA-256 (lowercase hex) of a file.
pub fn digest(path: &Path) -> Result<(u64, String), StoreError> {
    let mut f = fs::File::open(path).map_err(|e| io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Engine(format!("{}: {e}", path.display()))
}

/// What [`restore`] put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup's id.
    pub backup_id: String,
    /// Files copied.
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
}

/// Restores lockboxd's part of the backup in `from` into `data_dir`, which must not exist
/// or be empty: checks the manifest, the schema (a newer one is refused) and every file's
/// length and SHA-256, copies the files into a new directory beside `data_dir`, syncs them,
/// and renames it into place, so an interrupted restore leaves no half-filled data
/// directory. Errors are whole sentences for the operator.
pub fn restore(from: &Path, data_dir: &Path) -> Result<Restored, String> {
    use lockbox_proto::backup::{DAEMON_DIR, MANIFEST_FILE, Manifest};
    let manifest_path = from.join(MANIFEST_FILE);
    let manifest = fs::read(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let manifest = Manifest::parse(&manifest)?;
    let part = &manifest.lockboxd;
    if part.schema > crate::model::SCHEMA {
        return Err(format!(
            "the backup is from a newer lockboxd (data schema {}; this one reads up to {}); \
             restore it with that release or a later one",
            part.schema,
            crate::model::SCHEMA
        ));
    }
    if fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "{} exists and is not empty; restore into a new data directory (or move this \
             one away first)",
            data_dir.display()
        ));
    }
    let source = from.join(DAEMON_DIR);
    for file in &part.files {
        let path = source.join(&file.name);
        let (size, sha256) = digest(&path).map_err(|e| format!("backup file missing: {e}"))?;
        if size != file.size || sha256 != file.sha256 {
            return Err(format!(
                "backup file {DAEMON_DIR}/{} is damaged: its length or SHA-256 differs from \
                 the manifest's; nothing was restored",
                file.name
            ));
        }
    }
    let staging = staging_dir(data_dir)?;
    let copied = (|| -> Result<u64, String> {
        let mut bytes = 0;
        for file in &part.files {
            let to = staging.join(&file.name);
            bytes += fs::copy(source.join(&file.name), &to)
                .map_err(|e| format!("copying {}: {e}", file.name))?;
            fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("syncing {}: {e}", to.display()))?;
        }
        sync(&staging)?;
        // An empty data directory (a unit's StateDirectory=) is replaced as well.
        fs::rename(&staging, data_dir)
            .map_err(|e| format!("moving the restored data to {}: {e}", data_dir.display()))?;
        if let Some(parent) = data_dir.parent() {
            sync(parent)?;
        }
        Ok(bytes)
    })();
    match copied {
        Ok(bytes) => Ok(Restored {
            backup_id: manifest.backup_id,
            files: part.files.len(),
            bytes,
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// A new private directory beside `data_dir`, on its filesystem, to restore into.
fn staging_dir(data_dir: &Path) -> Result<PathBuf, String> {
    let name = data_dir
        .file_name()
        .ok_or_else(|| format!("{} is not a directory name", data_dir.display()))?;
    let mut staging_name = name.to_owned();
    staging_name.push(format!(".restoring-{}", std::process::id()));
    let staging = data_dir.with_file_name(staging_name);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| format!("creating {}: {e}", staging.display()))?;
    Ok(staging)
}

fn sync(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing {}: {e}", dir.display()))
}
