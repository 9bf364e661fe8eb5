//! The layout of a backup directory, as `lockbox admin backup` writes it and `lockboxd
//! restore` and `lockbox-kms restore` read it:
//!
//! ```text
//! DIR/manifest.json      this module's [`Manifest`]
//! DIR/lockboxd/<file>    a RocksDB checkpoint of lockboxd's data directory
//! DIR/kms/keystore       lockbox-kms's keystore, sealed as it is on disk
//! ```
//!
//! The unseal material of the keystore is never part of a backup.

use serde::{Deserialize, Serialize};

/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The subdirectory holding lockboxd's checkpoint.
pub const DAEMON_DIR: &str = "lockboxd";
/// The subdirectory holding lockbox-kms's keystore.
pub const KMS_DIR: &str = "kms";
/// The keystore's file name in [`KMS_DIR`].
pub const KEYSTORE_FILE: &str = "keystore";
/// The manifest format this release writes and reads.
pub const FORMAT: u32 = 1;

/// What a backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The id lockboxd gave the backup.
    pub backup_id: String,
    /// When lockboxd took its checkpoint, Unix seconds.
    pub created_at: i64,
    /// lockboxd's checkpoint.
    pub lockboxd: DaemonPart,
    /// lockbox-kms's keystore.
    pub kms: KmsPart,
}

/// lockboxd's part: its checkpoint's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonPart {
    /// The data directory's schema.
    pub schema: u32,
    /// The KMS key that wraps lockboxd's service keyring: the keystore beside it must hold
    /// it, or the two parts are not a pair.
    pub keyring_kms_key_id: String,
    /// Files of the checkpoint, in [`DAEMON_DIR`].
    pub files: Vec<FileEntry>,
}

/// lockbox-kms's part: its sealed keystore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsPart {
    /// The keystore schema of the lockbox-kms that exported it (the file's own may be
    /// older).
    pub schema: u32,
    /// [`KEYSTORE_FILE`] in [`KMS_DIR`].
    pub file: FileEntry,
}

/// One file and what it must contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The file name, without any directory.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// SHA-256 of its contents, lowercase hex.
    pub sha256: String,
}

/// Whether `name` is a plain file name: not empty, no directory part, not `.` or `..`.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 255
}

impl Manifest {
    /// Parses and checks a manifest: a format this release reads, and plain file names.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("{MANIFEST_FILE} is not a lockbox backup manifest: {e}"))?;
        if manifest.format > FORMAT {
            return Err(format!(
                "the backup's format {} is newer than this release reads ({FORMAT}); restore \
                 it with the release that made it or a later one",
                manifest.format
            ));
        }
        let names = manifest.lockboxd.files.iter().chain([&manifest.kms.file]);
        for file in names {
            if !is_plain_file_name(&file.name) {
                return Err(format!(
                    "{MANIFEST_FILE} names a file {:?} that is not a plain file name",
                    file.name
                ));
            }
        }
        Ok(manifest)
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data: serialization cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let file = |name: &str| FileEntry {
            name: name.into(),
            size: 3,
            sha256: "ab".repeat(32),
        };
        Manifest {
            format: FORMAT,
            backup_id: "bk".into(),
            created_at: 1,
            lockboxd: DaemonPart {
                schema: 2,
                keyring_kms_key_id: "abj".into(),
                files: vec![file("CURRENT"), file("000012.sst")],
            },
            kms: KmsPart {
                schema: 2,
                file: file(KEYSTORE_FILE),
            },
        }
    }

    #[test]
    fn a_manifest_reads_back_and_bad_ones_are_refused_with_the_reason() {
        let m = manifest();
        assert_eq!(Manifest::parse(&m.to_json()), Ok(m.clone()));

        let mut newer = m.clone();
        newer.format = FORMAT + 1;
        assert!(
            Manifest::parse(&newer.to_json())
                .unwrap_err()
                .contains("newer")
        );
        for name in ["", ".", "..", "../etc/passwd", "a/b", "a\0b"] {
            let mut bad = m.clone();
            bad.lockboxd.files[0].name = name.into();
            let e = Manifest::parse(&bad.to_json()).unwrap_err();
            assert!(e.contains("not a plain file name"), "{name:?}: {e}");
        }
        assert!(
            Manifest::parse(b"{}")
                .unwrap_err()
                .contains("not a lockbox backup manifest")
        );
    }
}
