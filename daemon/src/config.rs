//! Configuration of `lockboxd`: a TOML file, overridden by command-line flags.

use crate::service::Limits;
use serde::Deserialize;
use std::path::PathBuf;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/lockboxd";
/// Default KMS folder for the daemon's own key (the one `lockbox-kms init --daemon` grants).
pub const DEFAULT_KMS_FOLDER: &str = "lockboxd";

/// Settings read from the configuration file. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// RocksDB data directory.
    pub data_dir: Option<PathBuf>,
    /// Socket to listen on.
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket, as an octal string.
    pub socket_mode: Option<String>,
    /// Socket of `lockbox-kms`.
    pub kms_socket: Option<PathBuf>,
    /// KMS folder where the daemon keeps the key wrapping its keyring.
    pub kms_folder: Option<String>,
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
    /// Seconds lockboxd waits for an answer from lockbox-kms before the request that needed
    /// it fails with `Unavailable` (default 10).
    pub kms_timeout: Option<u64>,
    /// Rotation period, in seconds, of the KMS key lockboxd creates at its first start to
    /// wrap its keyring (default 90 days, at least one day; 0: rotated only by hand).
    pub keyring_rotation_period: Option<u64>,
    /// Seconds between checks that the keyring is wrapped by its KMS key's primary version,
    /// rewrapping it if not (default 3600).
    pub keyring_rewrap_interval: Option<u64>,
    /// Subjects made `organization-manager.organizations.owner` of the default organization
    /// when no access binding exists yet (default: user:root and the daemon's own user).
    pub admins: Option<Vec<String>>,
    /// Runtime worker threads (default: half the CPUs, at least one; the clients of a
    /// local daemon run on the same machine and need the rest).
    pub worker_threads: Option<usize>,
    /// Secrets (and as many versions) kept decoded in memory for reads (default 65536;
    /// 0 turns the cache off).
    pub read_cache_entries: Option<usize>,
    /// Quotas and size limits.
    #[serde(default)]
    pub limits: Limits,
    /// The audit trail.
    #[serde(default)]
    pub audit: lockbox_rpc::audit::TrailConfig,
    /// Per-subject rate limits.
    #[serde(default)]
    pub rate_limits: crate::service::RateLimits,
    /// The Prometheus endpoint (off unless `listen` is set).
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// lockboxd's `[metrics]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Loopback address and port to serve `/metrics` on; unset: no metrics.
    pub listen: Option<std::net::SocketAddr>,
    /// Secrets with a `lockbox_secret_active_versions` series of their own, the ones with
    /// the most versions (default 100); the rest are summed into `secret="other"`.
    pub secret_series: Option<usize>,
    /// Whether those series carry the secret's name besides its id (default false: names
    /// may say more than an operator wants in a monitoring system).
    #[serde(default)]
    pub secret_names: bool,
}

impl MetricsConfig {
    /// The endpoint's settings.
    pub fn endpoint(&self) -> lockbox_rpc::metrics::MetricsConfig {
        lockbox_rpc::metrics::MetricsConfig {
            listen: self.listen,
        }
    }

    /// Which secrets get series of their own.
    pub fn secret_series(&self) -> crate::service::SecretSeries {
        crate::service::SecretSeries {
            limit: self
                .secret_series
                .unwrap_or(crate::service::DEFAULT_SECRET_SERIES),
            names: self.secret_names,
        }
    }
}

/// How long lockboxd waits for lockbox-kms unless configured.
pub const DEFAULT_KMS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Rotation period of lockboxd's own KMS key unless configured: 90 days.
pub const DEFAULT_KEYRING_ROTATION_PERIOD: u64 = 90 * 86_400;

/// Shortest rotation period lockbox-kms accepts: a day.
const MIN_ROTATION_PERIOD: u64 = 86_400;

/// How often lockboxd checks the keyring's wrapping unless configured.
pub const DEFAULT_KEYRING_REWRAP_INTERVAL: std::time::Duration =
    std::time::Duration::from_secs(3600);

/// Secrets kept in the read cache unless configured.
pub const DEFAULT_READ_CACHE_ENTRIES: usize = 65_536;

impl FileConfig {
    /// The rotation period to give lockboxd's own key, checked; `None`: no rotation.
    pub fn keyring_rotation_period(&self) -> Result<Option<u64>, String> {
        match self
            .keyring_rotation_period
            .unwrap_or(DEFAULT_KEYRING_ROTATION_PERIOD)
        {
            0 => Ok(None),
            p if p < MIN_ROTATION_PERIOD => Err(format!(
                "keyring_rotation_period: must be 0 (no rotation) or at least \
                 {MIN_ROTATION_PERIOD} seconds (1 day), got {p}"
            )),
            p => Ok(Some(p)),
        }
    }

    /// How often to check the keyring's wrapping, checked.
    pub fn keyring_rewrap_interval(&self) -> Result<std::time::Duration, String> {
        match self.keyring_rewrap_interval {
            Some(0) => Err("keyring_rewrap_interval: must be at least 1 (seconds)".into()),
            Some(s) => Ok(std::time::Duration::from_secs(s)),
            None => Ok(DEFAULT_KEYRING_REWRAP_INTERVAL),
        }
    }

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
    use crate::service::DEFAULT_SECRET_SERIES;

    #[test]
    fn limits_default_and_override() {
        let c: FileConfig = toml::from_str("[limits]\nversions_per_secret = 5").unwrap();
        assert_eq!(c.limits.versions_per_secret, 5);
        assert_eq!(c.limits.secrets_per_cloud, 10_000);
        assert_eq!(c.limits.payload_bytes, 65_536);
        assert!(toml::from_str::<FileConfig>("data_directory = \"/x\"").is_err());
    }

    #[test]
    fn the_shipped_configuration_reads() {
        let c: FileConfig = toml::from_str(include_str!("../../deploy/lockboxd.toml")).unwrap();
        assert_eq!(
            c.audit.dir.as_deref(),
            Some(std::path::Path::new("/var/log/lockboxd"))
        );
        assert!(c.audit.fail_closed);
        // Metrics are opt-in there too.
        assert!(c.metrics.listen.is_none());
    }

    #[test]
    fn the_readme_s_configuration_reads_as_written() {
        // The first TOML block after `heading` in the README.
        let readme_toml = |heading: &str| {
            let readme = include_str!("../../README.md");
            let section = &readme[readme.find(heading).unwrap()..];
            section
                .split("```toml\n")
                .nth(1)
                .and_then(|b| b.split("```").next())
                .unwrap()
        };
        let c: FileConfig = toml::from_str(readme_toml("## lockboxd")).unwrap();
        assert_eq!(c.limits.secrets_per_cloud("b1g3f1p0k2ma8s5hq6rd"), 50_000);
        assert_eq!(c.limits.secrets_per_cloud("b1gother"), 10_000);
        assert_eq!(c.limits.versions_per_secret("b1g3f1p0k2ma8s5hq6rd"), 1_000);
        assert_eq!(c.max_frame, Some(1_048_576));
        // And its rate limits.
        let c: FileConfig = toml::from_str(readme_toml("### Rate limits")).unwrap();
        c.rate_limits.validate().unwrap();
        assert_eq!(c.rate_limits.subjects.len(), 1);
        assert!(c.rate_limits.roles.contains_key("lockbox.payloadViewer"));
        // And its metrics.
        let c: FileConfig = toml::from_str(readme_toml("## Metrics")).unwrap();
        assert_eq!(
            c.metrics.endpoint().address(),
            Ok(Some("127.0.0.1:9464".parse().unwrap()))
        );
        assert_eq!(c.metrics.secret_series().limit, DEFAULT_SECRET_SERIES);
        assert!(!c.metrics.secret_series().names);
    }

    #[test]
    fn the_keyring_key_rotates_by_default_and_periods_are_checked() {
        let period = |toml_text: &str| {
            toml::from_str::<FileConfig>(toml_text)
                .unwrap()
                .keyring_rotation_period()
        };
        assert_eq!(period(""), Ok(Some(DEFAULT_KEYRING_ROTATION_PERIOD)));
        assert_eq!(period("keyring_rotation_period = 0"), Ok(None));
        assert_eq!(period("keyring_rotation_period = 86400"), Ok(Some(86_400)));
        assert!(period("keyring_rotation_period = 3600").is_err());
        let interval = |toml_text: &str| {
            toml::from_str::<FileConfig>(toml_text)
                .unwrap()
                .keyring_rewrap_interval()
        };
        assert_eq!(interval(""), Ok(DEFAULT_KEYRING_REWRAP_INTERVAL));
        assert!(interval("keyring_rewrap_interval = 0").is_err());
    }
}
