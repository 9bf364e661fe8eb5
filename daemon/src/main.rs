//! The `lockboxd` binary: opens the data directory, unlocks the service keyring through
//! `lockbox-kms`, and serves Lockbox on a Unix socket.

use anyhow::{Context, Result};
use clap::Parser;
use lockbox_daemon::config::{self, FileConfig};
use lockbox_daemon::crypto::kms_link::KmsLink;
use lockbox_daemon::server::LockboxHandler;
use lockbox_daemon::service::{AuditTrail, Lockbox, bootstrap, collect_state};
use lockbox_daemon::store::backup::Backups;
use lockbox_daemon::store::records::Records;
use lockbox_daemon::store::rocks::RocksStore;
use lockbox_proto::hello::{DEFAULT_KMS_SOCKET, DEFAULT_LOCKBOX_SOCKET};
use lockbox_rpc::clock::TimeSource;
use lockbox_rpc::listen::{self, Endpoint};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// lockboxd stores secrets (versions of key/value payloads) in RocksDB, encrypting every
/// payload with a fresh data key wrapped through lockbox-kms, and serves them on a Unix
/// socket. Its Unix user must be enrolled in the KMS (`lockbox-kms init --daemon user:NAME`).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file; flags override it.
    #[arg(long, env = "LOCKBOXD_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// RocksDB data directory [default: /var/lib/lockboxd].
    #[arg(long, env = "LOCKBOXD_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Unix socket to listen on [default: /run/lockboxd/lockbox.sock].
    #[arg(long, env = "LOCKBOXD_SOCKET")]
    socket: Option<PathBuf>,
    /// Socket of lockbox-kms [default: /run/lockbox-kms/kms.sock].
    #[arg(long, env = "LOCKBOX_KMS_SOCKET")]
    kms_socket: Option<PathBuf>,
    /// DANGER, tests only: run on a manual clock that callers can move forward.
    #[arg(long, hide = true)]
    danger_test_clock: bool,
}

/// Without a command, lockboxd serves.
#[derive(clap::Subcommand)]
enum Command {
    /// Restore the data directory from a backup made by `lockbox admin backup`, while
    /// lockboxd is stopped. The data directory (--data-dir or the configuration's) must not
    /// exist or be empty. Every file is checked against the manifest first; a damaged backup
    /// or one from a newer lockboxd is refused and nothing is written. Restore lockbox-kms's
    /// keystore from the same backup (`lockbox-kms restore`) before starting both.
    Restore {
        /// The backup directory.
        #[arg(long)]
        from: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    listen::init_logging();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Restore { from }) => restore(&cli, from),
        None => run(cli),
    };
    listen::exit_status("lockboxd", result)
}

fn restore(cli: &Cli, from: &std::path::Path) -> Result<()> {
    let file: FileConfig =
        listen::read_config(cli.config.as_deref()).map_err(anyhow::Error::msg)?;
    let data_dir = cli
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| config::DEFAULT_DATA_DIR.into());
    let restored =
        lockbox_daemon::store::backup::restore(from, &data_dir).map_err(anyhow::Error::msg)?;
    println!(
        "restored backup {} into {}: {} files, {} bytes",
        restored.backup_id,
        data_dir.display(),
        restored.files,
        restored.bytes
    );
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    lockbox_rpc::hardening::harden("lockboxd").context("disabling core dumps")?;
    let file: FileConfig =
        listen::read_config(cli.config.as_deref()).map_err(anyhow::Error::msg)?;
    let settings = file.listen_settings();
    let rotation_period = file.keyring_rotation_period().map_err(anyhow::Error::msg)?;
    let rewrap_interval = file.keyring_rewrap_interval().map_err(anyhow::Error::msg)?;
    file.rate_limits.validate().map_err(anyhow::Error::msg)?;
    let data_dir = cli
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| config::DEFAULT_DATA_DIR.into());
    let endpoint = Endpoint::new(
        cli.socket
            .or(file.socket)
            .unwrap_or_else(|| DEFAULT_LOCKBOX_SOCKET.into()),
        &settings,
        file.limits.largest_answer(),
    )
    .map_err(anyhow::Error::msg)?;
    endpoint
        .reserve_files(RocksStore::MAX_OPEN_FILES + OTHER_FILES)
        .map_err(anyhow::Error::msg)?;
    let (metrics, metrics_listener) = file.metrics.endpoint().open().map_err(anyhow::Error::msg)?;
    let kms_timeout = match file.kms_timeout {
        Some(0) => anyhow::bail!("kms_timeout: must be at least 1 (seconds)"),
        Some(s) => Duration::from_secs(s),
        None => config::DEFAULT_KMS_TIMEOUT,
    };
    let kms_socket = cli
        .kms_socket
        .or(file.kms_socket)
        .unwrap_or_else(|| DEFAULT_KMS_SOCKET.into());
    let kms_folder = file
        .kms_folder
        .unwrap_or_else(|| config::DEFAULT_KMS_FOLDER.into());
    if cli.danger_test_clock {
        tracing::warn!("DANGER: running on a manual test clock");
    }
    let time = TimeSource::for_tests_if(cli.danger_test_clock);

    lockbox_rpc::hardening::private_directory(&data_dir).map_err(anyhow::Error::msg)?;
    let store = RocksStore::open(&data_dir)?;
    // Checkpoints live beside the data, on its filesystem; one a crash left is removed.
    let backups = Backups::new(data_dir.join(BACKUPS_DIR));
    backups.clear()?;
    let records = Records::new(Arc::new(store))?;
    let admins = file.admins.unwrap_or_else(default_admins);
    let defaults = bootstrap(&records, time.clock().now(), &admins)?;
    let audit = match file
        .audit
        .open(AUDIT_FILE)
        .with_context(|| format!("opening the audit trail in {:?}", file.audit.dir))?
    {
        Some(sink) => Some(AuditTrail::new(sink, file.audit.fail_closed)),
        None => {
            tracing::warn!("no audit.dir configured: payload reads and changes are not audited");
            None
        }
    };
    let lockbox = Lockbox::new(
        records,
        KmsLink::new(kms_socket, kms_timeout),
        time,
        file.limits,
        defaults,
        file.read_cache_entries
            .unwrap_or(config::DEFAULT_READ_CACHE_ENTRIES),
        backups,
    )?;
    // Before serving: nothing changes the counters meanwhile.
    let drift = lockbox
        .check_usage()
        .context("checking the quota usage counters against the records")?;
    let lockbox = lockbox
        .with_rate_limits(file.rate_limits.clone())
        .with_metrics(&metrics);
    let lockbox = Arc::new(match audit.clone() {
        Some(trail) => lockbox.with_audit(trail),
        None => lockbox,
    });
    collect_state(&lockbox, &metrics, file.metrics.secret_series(), drift);

    let kms_folder_for_audit = kms_folder.clone();
    let runtime = listen::runtime(file.worker_threads)?;
    runtime.block_on(async move {
        match lockbox.unlock_keyring(&kms_folder, rotation_period).await {
            Ok(()) => {
                lockbox.prepare_audit_signer(&kms_folder).await;
                let reconciling = lockbox.clone();
                tokio::spawn(async move { reconciling.reconcile_holds_logged().await });
            }
            Err(e) => {
                tracing::warn!(error = %e, "service keyring locked until lockbox-kms answers");
                tokio::spawn(
                    lockbox
                        .clone()
                        .unlock_keyring_until_done(kms_folder, rotation_period),
                );
            }
        }
        let signer = tokio::spawn(
            lockbox
                .clone()
                .keep_audit_trail_signed(kms_folder_for_audit, file.audit.sign_interval()),
        );
        let destroyer = tokio::spawn(destruction_loop(lockbox.clone()));
        let rewrapper = tokio::spawn(
            lockbox
                .clone()
                .keep_keyring_wrapped_under_primary(rewrap_interval),
        );
        let store = lockbox.clone();
        let closing = lockbox.clone();
        let exporter = lockbox_rpc::metrics::http::spawn(&metrics, metrics_listener);
        let handler = Arc::new(LockboxHandler::new(
            lockbox,
            endpoint.config.max_frame,
            &metrics,
        ));
        // A store that can no longer make writes durable stops the server as a signal would
        // (every connection answers what it has read, so writers learn their outcome), and
        // lockboxd exits for its supervisor to restart it on what the disk holds.
        let failed = std::sync::Mutex::new(None);
        let store_failed = async {
            let why = store.store_failed().await;
            tracing::error!("{why}; stopping for a restart");
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        };
        let served = endpoint
            .serve_until("lockboxd", handler, store_failed)
            .await;
        exporter.inspect(|e| e.abort());
        destroyer.abort();
        rewrapper.abort();
        signer.abort();
        closing.close_audit_trail().await;
        served?;
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(why) => anyhow::bail!("storage failed, exiting for a restart: {why}"),
            None => Ok(()),
        }
    })
}

/// The current file of the audit trail, in `audit.dir`.
const AUDIT_FILE: &str = "audit.jsonl";

/// The directory, in the data directory, where backup checkpoints are taken.
const BACKUPS_DIR: &str = "backups";

/// Files lockboxd opens besides its connections and RocksDB's tables: the KMS link, the
/// database's logs and locks, the runtime's own descriptors, libraries.
const OTHER_FILES: u64 = 64;

/// The administrators of a fresh install: root and the user lockboxd runs as.
fn default_admins() -> Vec<String> {
    let mut admins = vec!["user:root".to_owned()];
    let me = lockbox_rpc::peer::user_subject(rustix::process::getuid().as_raw());
    if !admins.contains(&me) {
        admins.push(me);
    }
    admins
}

/// Destroys due versions, waking at the next scheduled destruction (at least once a minute).
async fn destruction_loop(lockbox: Arc<Lockbox>) {
    loop {
        if let Err(e) = lockbox.destroy_due_versions().await {
            tracing::error!(error = %e, "destroying due versions failed; will retry");
        }
        let wait = match lockbox.next_destruction() {
            Ok(Some(at)) => at.saturating_sub(lockbox.now()).clamp(1, 60),
            _ => 60,
        };
        tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())).await;
    }
}
