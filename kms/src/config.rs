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
    /// Connections served at once (default 1,024).
    pub max_connections: Option<usize>,
    /// Connections one Unix user may hold at once (default 256, at most `max_connections`).
    pub max_connections_per_user: Option<usize>,
    /// Largest frame body, bytes.
    pub max_frame: Option<u32>,
    /// Seconds a connection acts as the identity it was opened with before the client
    /// must reconnect (default 900).
    pub max_connection_age: Option<u64>,
    /// Seconds a connection may send nothing, or leave its answers unread, before it is
    /// closed (default 300).
    pub idle_timeout: Option<u64>,
    /// Runtime worker threads (default: half the CPUs, at least one; the KMS's clients run
    /// on the same machine and need the rest).
    pub worker_threads: Option<usize>,
    /// Quotas.
    #[serde(default)]
    pub quotas: Quotas,
    /// The audit trail of relayed decisions: with `dir` set, JSON lines in files of its own
    /// (chained, rotated); else `AUDIT` lines in the service log.
    #[serde(default)]
    pub audit: lockbox_rpc::audit::TrailConfig,
    /// The Prometheus endpoint (off unless `listen` is set).
    #[serde(default)]
    pub metrics: lockbox_rpc::metrics::MetricsConfig,
}

/// The unseal material path when none is configured: the systemd credential if running under
/// a unit with `LoadCredential`, otherwise next to the keystore.
pub fn default_unseal_file(state_dir: &Path) -> PathBuf {
    match std::env::var_os("CREDENTIALS_DIRECTORY") {
        Some(dir) => PathBuf::from(dir).join(UNSEAL_FILE),
        None => state_dir.join(UNSEAL_FILE),
    }
}

impl FileConfig {
    /// The listening settings among these.
    pub fn listen_settings(&self) -> lockbox_rpc::listen::Settings {
        lockbox_rpc::listen::Settings {
            socket_mode: self.socket_mode.clone(),
            max_frame: self.max_frame,
            max_connections: self.max_connections,
            max_connections_per_user: self.max_connections_per_user,
            max_connection_age: self.max_connection_age,
            idle_timeout: self.idle_timeout,
        }
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

    #[test]
    fn the_readme_s_configuration_reads_as_written() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## lockbox-kms").unwrap()..];
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap();
        let c: FileConfig = toml::from_str(block).unwrap();
        assert_eq!(c.quotas.keys_per_folder("lockboxd"), 10);
        assert_eq!(c.quotas.keys_per_folder("f"), 100);
        assert_eq!(c.quotas.versions_per_key("lockboxd"), 100);
    }

    #[test]
    fn the_shipped_configuration_reads() {
        let c: FileConfig = toml::from_str(include_str!("../../deploy/kms.toml")).unwrap();
        assert_eq!(
            c.audit.dir.as_deref(),
            Some(Path::new("/var/log/lockbox-kms"))
        );
    }
}
