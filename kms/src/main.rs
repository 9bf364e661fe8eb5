//! The `lockbox-kms` binary: `init` creates unseal material and an empty sealed keystore;
//! `serve` unseals it and serves the KMS on a Unix socket.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use lockbox_kms::config::{self, FileConfig};
use lockbox_kms::keystore::Keystore;
use lockbox_kms::model::State;
use lockbox_kms::seal::UnsealMaterial;
use lockbox_kms::server::KmsHandler;
use lockbox_kms::service::Kms;
use lockbox_proto::hello::DEFAULT_KMS_SOCKET;
use lockbox_rpc::audit::HeadSignature;
use lockbox_rpc::clock::TimeSource;
use lockbox_rpc::listen::{self, Endpoint};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// lockbox-kms holds lockbox's root keys, sealed at rest, and offers key management,
/// encryption, decryption and signing over a Unix socket. Access is controlled by its own
/// kms.* role bindings; callers are identified by their Unix user.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create fresh unseal material and an empty sealed keystore.
    ///
    /// The user running init (or each --admin) becomes kms.admin of the whole KMS. Keep the
    /// unseal material safe: without it the keystore, and every key in it, is unrecoverable.
    Init(InitArgs),
    /// Unseal the keystore and serve the KMS on its socket until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Restore the keystore from a backup made by `lockbox admin backup`, while lockbox-kms
    /// is stopped. The unseal material is not in the backup: put the installation's
    /// material in place first (--unseal-file, or unseal.key in the state directory). The
    /// keystore is checked against the manifest, unsealed with that material, and checked
    /// to hold the key that wraps lockboxd's keyring in the same backup; a damaged backup,
    /// a newer one or a mismatched pair is refused and nothing is written.
    Restore(RestoreArgs),
}

#[derive(Args)]
struct RestoreArgs {
    /// The backup directory.
    #[arg(long)]
    from: PathBuf,
    /// Directory to restore the keystore into; it must not hold one already.
    #[arg(long, env = "LOCKBOX_KMS_STATE_DIR", default_value = config::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Unseal material file [default: $CREDENTIALS_DIRECTORY/unseal.key, else
    /// <state-dir>/unseal.key].
    #[arg(long, env = "LOCKBOX_KMS_UNSEAL_FILE")]
    unseal_file: Option<PathBuf>,
}

#[derive(Args)]
struct InitArgs {
    /// Directory for the sealed keystore (created with mode 0700 if missing).
    #[arg(long, env = "LOCKBOX_KMS_STATE_DIR", default_value = config::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Where to write the 32 bytes of unseal material (mode 0600). Defaults to
    /// $CREDENTIALS_DIRECTORY/unseal.key under systemd, else unseal.key in the state directory.
    #[arg(long, env = "LOCKBOX_KMS_UNSEAL_FILE")]
    unseal_file: Option<PathBuf>,
    /// Subject to make kms.admin, e.g. user:alice (repeatable). Default: the user running init.
    #[arg(long = "admin", value_name = "SUBJECT")]
    admins: Vec<String>,
    /// Unix user allowed to send crypto requests on behalf of others, as user:<name>
    /// (repeatable).
    #[arg(long = "relay", value_name = "SUBJECT")]
    relays: Vec<String>,
    /// The secrets daemon's subject, e.g. user:lockbox: a relay that may also create and use
    /// keys in the reserved folder "lockboxd" for its service keyring.
    #[arg(long, value_name = "SUBJECT")]
    daemon: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file; flags override it.
    #[arg(long, env = "LOCKBOX_KMS_CONFIG")]
    config: Option<PathBuf>,
    /// Directory holding the sealed keystore [default: /var/lib/lockbox-kms].
    #[arg(long, env = "LOCKBOX_KMS_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Unseal material file [default: $CREDENTIALS_DIRECTORY/unseal.key, else
    /// <state-dir>/unseal.key].
    #[arg(long, env = "LOCKBOX_KMS_UNSEAL_FILE")]
    unseal_file: Option<PathBuf>,
    /// Unix socket to listen on [default: /run/lockbox-kms/kms.sock].
    #[arg(long, env = "LOCKBOX_KMS_SOCKET")]
    socket: Option<PathBuf>,
    /// DANGER, tests only: run on a manual clock that admins can move forward over the socket.
    #[arg(long, hide = true)]
    danger_test_clock: bool,
}

fn main() -> std::process::ExitCode {
    listen::init_logging();
    let result = match Cli::parse().command {
        Command::Init(args) => init(args),
        Command::Serve(args) => run_serve(args),
        Command::Restore(args) => restore(args),
    };
    listen::exit_status("lockbox-kms", result)
}

fn init(args: InitArgs) -> Result<()> {
    let admins = if args.admins.is_empty() {
        vec![lockbox_rpc::peer::user_subject(
            rustix::process::getuid().as_raw(),
        )]
    } else {
        args.admins
    };
    for subject in &admins {
        if !subject.starts_with("user:")
            && !subject.starts_with("group:")
            && !subject.starts_with("serviceAccount:")
        {
            bail!(
                "{subject:?} is not a subject; write user:<name>, group:<name> or serviceAccount:<id>"
            );
        }
    }
    // A relay is the Unix user a daemon runs as: the kernel names it on every connection.
    // A group would make every member a relay, and a service account never connects itself.
    for subject in args.relays.iter().chain(&args.daemon) {
        if subject.strip_prefix("user:").is_none_or(str::is_empty) {
            bail!(
                "{subject:?} cannot be a relay: only a Unix user can, written user:<name> \
                 (the user the secrets daemon runs as)"
            );
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let keystore_path = args.state_dir.join(config::KEYSTORE_FILE);
    if keystore_path.exists() {
        bail!(
            "{} already exists; refusing to overwrite a keystore (its keys would be lost)",
            keystore_path.display()
        );
    }
    let unseal_path = args
        .unseal_file
        .unwrap_or_else(|| config::default_unseal_file(&args.state_dir));
    let material = UnsealMaterial::generate();
    write_new_private_file(&unseal_path, material.expose())?;
    let keystore = Keystore::new(keystore_path.clone(), material);
    let mut state = State::new(&admins, &args.relays);
    if let Some(daemon) = &args.daemon {
        state.enrol_daemon(daemon);
    }
    keystore
        .create(&state)
        .context("writing the new keystore")?;
    println!("created unseal material {}", unseal_path.display());
    println!("created keystore {}", keystore_path.display());
    println!("kms.admin: {}", admins.join(", "));
    if !args.relays.is_empty() {
        println!("relays: {}", args.relays.join(", "));
    }
    if let Some(daemon) = &args.daemon {
        println!("secrets daemon: {daemon}");
    }
    Ok(())
}

fn restore(args: RestoreArgs) -> Result<()> {
    use lockbox_proto::backup::{KMS_DIR, MANIFEST_FILE, Manifest};
    use sha2::{Digest, Sha256};
    let manifest = std::fs::read(args.from.join(MANIFEST_FILE))
        .with_context(|| format!("reading {}", args.from.join(MANIFEST_FILE).display()))?;
    let manifest = Manifest::parse(&manifest).map_err(anyhow::Error::msg)?;
    let entry = &manifest.kms.file;
    let source = args.from.join(KMS_DIR).join(&entry.name);
    let sealed = std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
    let sha256 = lockbox_proto::bytes::hex(&Sha256::digest(&sealed));
    if sealed.len() as u64 != entry.size || sha256 != entry.sha256 {
        bail!(
            "backup file {KMS_DIR}/{} is damaged: its length or SHA-256 differs from the \
             manifest's; nothing was restored",
            entry.name
        );
    }
    let target = args.state_dir.join(config::KEYSTORE_FILE);
    if target.exists() {
        bail!(
            "{} already exists; refusing to overwrite a keystore (move it away first)",
            target.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let unseal_path = args
        .unseal_file
        .unwrap_or_else(|| config::default_unseal_file(&args.state_dir));
    let material = UnsealMaterial::read(&unseal_path)?;
    // Written under a temporary name, checked by loading it as serve would, then renamed.
    let staging = args
        .state_dir
        .join(format!("keystore.restoring-{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    write_new_private_file(&staging, &sealed)?;
    let checked = Keystore::new(staging.clone(), material)
        .load()
        .with_context(|| {
            format!(
                "the backup's keystore does not open with {} (is it this installation's \
                 unseal material?); nothing was restored",
                unseal_path.display()
            )
        })
        .and_then(|state| {
            let key = &manifest.lockboxd.keyring_kms_key_id;
            if state.symmetric_keys.contains_key(key) {
                Ok(state)
            } else {
                bail!(
                    "the backup's two parts are not a pair: the keystore does not hold key \
                     {key}, which wraps the keyring of the lockboxd backed up with it; \
                     nothing was restored"
                )
            }
        });
    let state = match checked {
        Ok(state) => state,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    std::fs::rename(&staging, &target)
        .with_context(|| format!("moving the keystore to {}", target.display()))?;
    std::fs::File::open(&args.state_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", args.state_dir.display()))?;
    println!(
        "restored keystore of backup {} into {}: {} symmetric keys, {} signature keys",
        manifest.backup_id,
        target.display(),
        state.symmetric_keys.len(),
        state.signature_keys.len()
    );
    Ok(())
}

fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (remove it first if it is stale)",
                path.display()
            )
        })?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn run_serve(args: ServeArgs) -> Result<()> {
    lockbox_rpc::hardening::harden("lockbox-kms").context("disabling core dumps")?;
    let file: FileConfig =
        listen::read_config(args.config.as_deref()).map_err(anyhow::Error::msg)?;
    let settings = file.listen_settings();
    let state_dir = args
        .state_dir
        .or(file.state_dir)
        .unwrap_or_else(|| config::DEFAULT_STATE_DIR.into());
    let unseal_path = args
        .unseal_file
        .or(file.unseal_file)
        .unwrap_or_else(|| config::default_unseal_file(&state_dir));
    let endpoint = Endpoint::new(
        args.socket
            .or(file.socket)
            .unwrap_or_else(|| DEFAULT_KMS_SOCKET.into()),
        &settings,
        LARGEST_ANSWER,
    )
    .map_err(anyhow::Error::msg)?;
    endpoint
        .reserve_files(OTHER_FILES)
        .map_err(anyhow::Error::msg)?;
    let (metrics, metrics_listener) = file.metrics.open().map_err(anyhow::Error::msg)?;

    let material = UnsealMaterial::read(&unseal_path)?;
    let keystore = Keystore::new(state_dir.join(config::KEYSTORE_FILE), material);
    let state = keystore.load().with_context(|| {
        format!(
            "cannot unseal the keystore (is {} the material `lockbox-kms init` wrote for it?)",
            unseal_path.display()
        )
    })?;
    if args.danger_test_clock {
        tracing::warn!("DANGER: running on a manual test clock");
    }
    let time = TimeSource::for_tests_if(args.danger_test_clock);
    let kms = Arc::new(Kms::new(state, keystore, time, file.quotas)?.with_metrics(&metrics));
    lockbox_kms::service::collect_state(&kms, &metrics);

    match file
        .audit
        .open(AUDIT_FILE)
        .with_context(|| format!("opening the audit trail in {:?}", file.audit.dir))?
    {
        Some(sink) => lockbox_kms::audit::start_trail(sink, file.audit.fail_closed),
        None => lockbox_kms::audit::start(std::io::stderr()),
    }
    let runtime = listen::runtime(file.worker_threads)?;
    runtime.block_on(async move {
        let maintenance = tokio::spawn(maintenance_loop(kms.clone()));
        let signer_key = audit_signer(&kms).await;
        let signer = tokio::spawn(keep_signed(
            kms.clone(),
            signer_key.clone(),
            file.audit.sign_interval(),
        ));
        let exporter = lockbox_rpc::metrics::http::spawn(&metrics, metrics_listener);
        let handler = Arc::new(KmsHandler::new(
            kms.clone(),
            endpoint.config.max_frame,
            &metrics,
        ));
        let served = endpoint.serve_until_signal("lockbox-kms", handler).await;
        exporter.inspect(|e| e.abort());
        maintenance.abort();
        signer.abort();
        close_trail(&kms, signer_key.as_deref()).await;
        Ok(served?)
    })
}

/// Signs `message` with the KMS's own audit key.
fn sign_with(kms: &Kms, key_id: &str, message: &str) -> Result<HeadSignature, String> {
    kms.sign_as_kms(key_id, message.as_bytes())
        .map(|signature| HeadSignature {
            key_id: key_id.to_owned(),
            signature,
        })
        .map_err(|e| e.to_string())
}

/// The KMS's own key that signs the trail of its own (created if needed), when it writes
/// one; call before serving.
async fn audit_signer(kms: &Kms) -> Option<String> {
    lockbox_kms::audit::own_trail()?;
    match kms.audit_signer().await {
        Ok(key_id) => Some(key_id),
        Err(e) => {
            tracing::error!(error = %e, "no key to sign the audit trail with; it stays unsigned");
            None
        }
    }
}

/// Keeps the chain head of the trail of its own signed with `key_id` every `every` (only at
/// shutdown when `None`); runs for ever.
async fn keep_signed(kms: Arc<Kms>, key_id: Option<String>, every: Option<Duration>) {
    let (Some(sink), Some(key_id), Some(every)) = (lockbox_kms::audit::own_trail(), key_id, every)
    else {
        return;
    };
    sink.clone()
        .sign_heads(every, |message| {
            std::future::ready(sign_with(&kms, &key_id, &message))
        })
        .await;
}

/// Writes every decision recorded so far and signs the chain head they end in with
/// `key_id` (at shutdown).
async fn close_trail(kms: &Kms, key_id: Option<&str>) {
    lockbox_kms::audit::flush();
    let (Some(sink), Some(key_id)) = (lockbox_kms::audit::own_trail(), key_id) else {
        return;
    };
    let signed = sink
        .sign_head(|message| std::future::ready(sign_with(kms, key_id, &message)))
        .await;
    if let Err(e) = signed {
        tracing::warn!(error = %e, "the audit trail ends unsigned");
    }
    sink.flush();
}

/// The current file of the audit trail, in `audit.dir`.
const AUDIT_FILE: &str = "audit.jsonl";

/// The largest answer the KMS must be able to send: a ciphertext of the largest plaintext,
/// with the ids and lengths around it (lists that would not fit are refused one by one).
const LARGEST_ANSWER: u32 = (lockbox_proto::kms::MAX_PLAINTEXT + 4096) as u32;

/// Files the KMS opens besides its connections: the keystore and its temporary file, the
/// runtime's own descriptors, libraries.
const OTHER_FILES: u64 = 64;

/// Runs due rotations and destructions, waking at the next due time (at least once a minute).
async fn maintenance_loop(kms: Arc<Kms>) {
    loop {
        if let Err(e) = kms.run_maintenance().await {
            tracing::error!(error = %e, "maintenance failed; will retry");
        }
        let wait = kms
            .next_due()
            .map_or(60, |due| due.saturating_sub(kms.now()).clamp(1, 60));
        tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())).await;
    }
}
