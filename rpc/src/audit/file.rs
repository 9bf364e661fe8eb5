//! The files of a trail of its own: where they are (`[audit]`) and their rotation by size.

use super::{Sink, chain};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `[audit]` table of a server's configuration: where its trail goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrailConfig {
    /// Directory of the trail's files (the current one, then `.1`, `.2`, … as it rotates);
    /// unset: no trail of its own.
    pub dir: Option<std::path::PathBuf>,
    /// Size at which the current file is rotated, bytes (default 64 MiB, at least 4 KiB).
    pub max_file_bytes: u64,
    /// Rotated files kept (default 10).
    pub keep_files: usize,
    /// Refuse requests whose audit line cannot be written (default true).
    pub fail_closed: bool,
    /// Seconds between signatures of the chain head by lockbox-kms (default 60; also at
    /// shutdown). 0: only at shutdown.
    pub sign_interval: u64,
}

impl Default for TrailConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_file_bytes: 64 << 20,
            keep_files: 10,
            fail_closed: true,
            sign_interval: DEFAULT_SIGN_INTERVAL,
        }
    }
}

/// Seconds between signatures of a trail's chain head unless configured.
pub const DEFAULT_SIGN_INTERVAL: u64 = 60;

impl TrailConfig {
    /// A started, chained trail into `dir/file_name`, or `None` without a `dir`. The chain
    /// goes on from where the files left it, so a restart does not break it; lines a crash
    /// left after the last chain line are chained first.
    pub fn open(&self, file_name: &str) -> std::io::Result<Option<Arc<Sink>>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let mut out = RotatingFile::open(
            dir,
            file_name,
            self.max_file_bytes.max(4096),
            self.keep_files,
        )?;
        let current = std::fs::read(dir.join(file_name))?;
        let (head, append) = chain::resume(&current, || match std::fs::read(out.numbered(1)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })?;
        if !append.is_empty() {
            tracing::warn!(
                file = %dir.join(file_name).display(),
                "the audit trail ended in lines no chain line covered (a write cut short); \
                 chaining them now"
            );
            out.append_unrotated(&append)?;
        }
        let sink = Sink::chained_after(Duration::from_secs(1), head);
        sink.spawn_writer(out);
        Ok(Some(sink))
    }

    /// How often to sign the chain head; `None`: only at shutdown.
    pub fn sign_interval(&self) -> Option<Duration> {
        (self.sign_interval > 0).then(|| Duration::from_secs(self.sign_interval))
    }
}

/// An audit file that rotates by size: `DIR/NAME` is written until the next write would take
/// it past `max_bytes`; then it becomes `NAME.1` (older ones move up one number, and those
/// past `keep` are removed) and a new `NAME` is started. Files are created mode 0600.
/// Written lines reach the kernel at once (so they survive the process) and the disk at
/// the first flush a [`SYNC_EVERY`] after the last `fdatasync`, and at every rotation: a
/// sync per write would cost a busy server more than the rest of its trail.
#[derive(Debug)]
pub struct RotatingFile {
    dir: std::path::PathBuf,
    name: String,
    max_bytes: u64,
    keep: usize,
    file: std::fs::File,
    size: u64,
    synced: Instant,
}

/// How long written audit lines may wait in the page cache before `fdatasync`.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

impl RotatingFile {
    /// Opens (appending) or creates `dir/name`, creating `dir` (mode 0700) if needed.
    pub fn open(
        dir: &std::path::Path,
        name: &str,
        max_bytes: u64,
        keep: usize,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let file = Self::open_file(&dir.join(name))?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            max_bytes,
            keep,
            file,
            size,
            synced: Instant::now(),
        })
    }

    fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
    }

    /// Appends `bytes` to the current file whatever its size, synced.
    fn append_unrotated(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn numbered(&self, n: usize) -> std::path::PathBuf {
        self.dir.join(format!("{}.{n}", self.name))
    }

    /// A file gone already (removed by hand, or with its directory) is no reason to fail:
    /// the new current file is what matters, and opening it says whether it can be had.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        let _ = std::fs::remove_file(self.numbered(self.keep));
        let current = self.dir.join(&self.name);
        let moves = (1..self.keep)
            .rev()
            .map(|n| (self.numbered(n), self.numbered(n + 1)))
            .chain((self.keep > 0).then(|| (current.clone(), self.numbered(1))));
        for (from, to) in moves {
            match std::fs::rename(&from, &to) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(at(e, &from));
                }
                _ => {}
            }
        }
        if self.keep == 0 {
            match std::fs::remove_file(&current) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(at(e, &current));
                }
                _ => {}
            }
        }
        self.file = Self::open_file(&current).map_err(|e| at(e, &current))?;
        self.size = 0;
        self.synced = Instant::now();
        Ok(())
    }
}

/// `e`, saying which file it is about.
fn at(e: std::io::Error, path: &std::path::Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.synced.elapsed() >= SYNC_EVERY {
            self.file.sync_data()?;
            self.synced = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_s_audit_table_is_read_as_written() {
        #[derive(serde::Deserialize)]
        struct File {
            audit: TrailConfig,
        }
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Audit trail").unwrap()..];
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        let file: File = toml::from_str(block).unwrap();
        assert_eq!(
            file.audit,
            TrailConfig {
                dir: Some("/var/log/lockboxd".into()),
                ..TrailConfig::default()
            }
        );
    }

    #[test]
    fn a_rotating_file_keeps_the_newest_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(dir.path(), "audit.jsonl", 100, 2).unwrap();
        for i in 0..10 {
            f.write_all(format!("{i:039}\n").as_bytes()).unwrap();
        }
        f.flush().unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        // Two lines of 40 bytes a file; files .1 and .2 kept, older ones gone.
        assert_eq!(read("audit.jsonl.2"), format!("{:039}\n{:039}\n", 4, 5));
        assert_eq!(read("audit.jsonl.1"), format!("{:039}\n{:039}\n", 6, 7));
        assert_eq!(read("audit.jsonl"), format!("{:039}\n{:039}\n", 8, 9));
        assert!(!dir.path().join("audit.jsonl.3").exists());
        // Reopened, it appends.
        let mut again = RotatingFile::open(dir.path(), "audit.jsonl", 100, 2).unwrap();
        again.write_all(b"x\n").unwrap();
        assert!(read("audit.jsonl").ends_with("x\n"));
    }

    #[test]
    fn a_removed_directory_fails_the_rotation_that_needs_it_until_it_is_back() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("trail");
        let mut f = RotatingFile::open(&dir, "audit.jsonl", 100, 2).unwrap();
        f.write_all(&[b'a'; 80]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = f.write_all(&[b'b'; 80]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(
            e.to_string()
                .contains(&*dir.join("audit.jsonl").to_string_lossy()),
            "{e}"
        );
        std::fs::create_dir(&dir).unwrap();
        f.write_all(&[b'c'; 80]).unwrap();
        assert_eq!(std::fs::read(dir.join("audit.jsonl")).unwrap(), [b'c'; 80]);
    }
}
