//! Configuration of `lockbox-kms serve`: a TOML file, overridden by command-line flags.

use crate::service::Quotas;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Default directory of the keystore.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lockbox-kms";
/// Name of the sealed keystore inside the state directory.
pub const KEYSTORE_FILE: &str = "keystore.sealed";
/// Name of the unseal material: inside `$CREDENTIALS_DIRECTORY` under systemd, else inside the
/// state directory.
pub const UNSEAL_FILE: &str = "unseal.key";

/// Settings read from the configuration file. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Directory holding the sealed keystore.
    pub state_dir: Option<PathBuf>,
    /// File holding the 32 bytes of unseal material.
    pub unseal_file: Option<PathBuf>,
    /// Unix socket to listen on.
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket, as an octal string ("0660").
    pub socket_mode: Option<String>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Largest frame body, bytes.
    pub max_frame: Option<u32>,
    /// Seconds a connection acts as the identity it was opened with before the client
    /// must reconnect (default 900).
    pub max_connection_age: Option<u64>,
    /// Runtime worker threads (default: half the CPUs, at least one; the KMS's clients run
    /// on the same machine and need the rest).
    pub worker_threads: Option<usize>,
    /// Quotas.
    #[serde(default)]
    pub quotas: Quotas,
}

/// The unseal material path when none is configured: the systemd credential if running under
/// a unit with `LoadCredential`, otherwise next to the keystore.
pub fn default_unseal_file(state_dir: &Path) -> PathBuf {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => PathBuf::from(dir).join(UNSEAL_FILE),
        None => state_dir.join(UNSEAL_FILE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_rejects_unknown_fields() {
        assert!(toml::from_str::<FileConfig>("sokcet = \"/x\"").is_err());
        let c: FileConfig = toml::from_str("[quotas]\nkeys_per_folder = 5").unwrap();
        assert_eq!(c.quotas.keys_per_folder, 5);
        assert_eq!(c.quotas.versions_per_key, 100);
    }
}
