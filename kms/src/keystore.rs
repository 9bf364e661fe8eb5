//! The sealed keystore file: load, and crash-safe save.
//!
//! A save writes the sealed state to `<file>.tmp`, fsyncs it, renames it over the keystore and
//! fsyncs the directory. A crash at any point leaves either the old or the new keystore whole;
//! a leftover temp file is discarded at the next start.

use crate::model::{SCHEMA, State, StateV1};
use crate::seal::{self, SealError, UnsealMaterial};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Test-only fault injection: when this variable is set, a save writes half the new keystore
/// to the temp file and aborts the process, as a power cut mid-write would. Only builds with
/// debug assertions (the tests' dev builds) look at it; release builds do not contain it.
pub const DANGER_CRASH_DURING_SAVE: &str = "LOCKBOX_KMS_DANGER_CRASH_DURING_SAVE";

/// Test-only fault injection (debug builds only): when this variable is set, every save fails
/// just after the rename, as a directory fsync failing would.
pub const DANGER_FAIL_AFTER_RENAME: &str = "LOCKBOX_KMS_DANGER_FAIL_AFTER_RENAME";

/// Why the keystore could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// File system failure.
    #[error("keystore {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// Sealing failure (wrong material, damage, newer format).
    #[error("keystore {path}: {source}")]
    Seal {
        /// The file.
        path: String,
        /// The failure.
        source: SealError,
    },
    /// The new keystore replaced the old one, but making the replacement durable failed:
    /// the file now holds the new state, which a crash might still undo.
    #[error("keystore {path}: saved, but the save may not survive a crash: {source}")]
    Uncertain {
        /// The file.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The sealed contents are not a state this version understands.
    #[error("keystore {path}: {reason}")]
    Contents {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The keystore file and the material that seals it.
#[derive(Debug)]
pub struct Keystore {
    /// The sealed file.
    path: PathBuf,
    /// Unseal material; kept to seal every save.
    material: UnsealMaterial,
}

impl Keystore {
    /// The keystore at `path`, sealed with `material`.
    pub fn new(path: PathBuf, material: UnsealMaterial) -> Self {
        Self { path, material }
    }

    /// Path of the sealed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn temp_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".tmp");
        PathBuf::from(p)
    }

    fn io(&self, source: std::io::Error) -> KeystoreError {
        KeystoreError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Loads and unseals the state, discarding a temp file left by an interrupted save.
    pub fn load(&self) -> Result<State, KeystoreError> {
        let temp = self.temp_path();
        if temp.exists() {
            tracing::warn!(path = %temp.display(), "discarding an incomplete keystore write");
            fs::remove_file(&temp).map_err(|e| self.io(e))?;
        }
        let sealed = fs::read(&self.path).map_err(|e| self.io(e))?;
        let plain =
            seal::unseal(&self.material, &sealed).map_err(|source| KeystoreError::Seal {
                path: self.path.display().to_string(),
                source,
            })?;
        let contents = |reason: String| KeystoreError::Contents {
            path: self.path.display().to_string(),
            reason,
        };
        let schema = postcard::take_from_bytes::<u32>(&plain)
            .map_err(|e| contents(e.to_string()))?
            .0;
        if schema > SCHEMA {
            return Err(contents(format!(
                "schema {schema} is newer than this lockbox-kms understands ({SCHEMA})"
            )));
        }
        if schema == 1 {
            return postcard::from_bytes::<StateV1>(&plain)
                .map(State::from)
                .map_err(|e| contents(e.to_string()));
        }
        postcard::from_bytes(&plain).map_err(|e| contents(e.to_string()))
    }

    /// Writes a new keystore; refuses to overwrite an existing one.
    pub fn create(&self, state: &State) -> Result<(), KeystoreError> {
        if self.path.exists() {
            return Err(self.io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; refusing to overwrite it",
            )));
        }
        self.save(state)
    }

    /// Seals and atomically replaces the keystore with `state`.
    pub fn save(&self, state: &State) -> Result<(), KeystoreError> {
        let contents = |e: postcard::Error| KeystoreError::Contents {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        // Serialised into a buffer of exactly its size, wiped when dropped: no growing vector
        // leaves copies of the keys behind in freed memory.
        let size = postcard::serialize_with_flavor::<_, postcard::ser_flavors::Size, usize>(
            state,
            Default::default(),
        )
        .map_err(contents)?;
        let mut plain = Zeroizing::new(vec![0u8; size]);
        postcard::to_slice(state, &mut plain).map_err(contents)?;
        let sealed = seal::seal(&self.material, &plain);
        let temp = self.temp_path();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.io(e))?;
        #[cfg(debug_assertions)]
        if std::env::var_os(DANGER_CRASH_DURING_SAVE).is_some() {
            let _ = file.write_all(&sealed[..sealed.len() / 2]);
            let _ = file.sync_all();
            tracing::error!("{DANGER_CRASH_DURING_SAVE} is set: aborting mid-save");
            std::process::abort();
        }
        file.write_all(&sealed).map_err(|e| self.io(e))?;
        file.sync_all().map_err(|e| self.io(e))?;
        drop(file);
        fs::rename(&temp, &self.path).map_err(|e| self.io(e))?;
        // From here on the file holds the new state: a failure is not "not saved".
        let uncertain = |source| KeystoreError::Uncertain {
            path: self.path.display().to_string(),
            source,
        };
        #[cfg(debug_assertions)]
        if std::env::var_os(DANGER_FAIL_AFTER_RENAME).is_some() {
            return Err(uncertain(std::io::Error::other(format!(
                "{DANGER_FAIL_AFTER_RENAME} is set"
            ))));
        }
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty());
        File::open(dir.unwrap_or(Path::new(".")))
            .and_then(|d| d.sync_all())
            .map_err(uncertain)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Keystore {
        let m = UnsealMaterial::from_bytes(&[9u8; 32]).unwrap();
        Keystore::new(dir.join("keystore"), m)
    }

    #[test]
    fn save_load_round_trip_and_create_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let ks = store(dir.path());
        let state = State::new(&["user:alice".into()], &["user:lockbox".into()]);
        ks.create(&state).unwrap();
        let loaded = ks.load().unwrap();
        assert_eq!(loaded.bindings, state.bindings);
        assert_eq!(loaded.relays, state.relays);
        assert!(ks.create(&state).is_err());
    }

    #[test]
    fn leftover_temp_file_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let ks = store(dir.path());
        ks.create(&State::new(&[], &[])).unwrap();
        fs::write(ks.temp_path(), b"half a keystore").unwrap();
        ks.load().unwrap();
        assert!(!ks.temp_path().exists());
    }

    #[test]
    fn wrong_material_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path()).create(&State::new(&[], &[])).unwrap();
        let other = Keystore::new(
            dir.path().join("keystore"),
            UnsealMaterial::from_bytes(&[1u8; 32]).unwrap(),
        );
        assert!(matches!(
            other.load(),
            Err(KeystoreError::Seal {
                source: SealError::WrongMaterial,
                ..
            })
        ));
    }
}
