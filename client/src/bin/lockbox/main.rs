//! `lockbox`: the command-line tool for lockboxd and lockbox-kms.

mod access;
mod admin;
mod audit;
mod iam;
mod io;
mod kms;
mod pages;
mod quota;
mod render;
mod resource;
mod secret;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Command-line tool for lockbox: secrets with versions, backed by lockbox-kms.
///
/// Errors print one line, "lockbox: CODE: message", and exit with status 1.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Socket of lockboxd.
    #[arg(long, global = true, env = "LOCKBOX_SOCKET", default_value = lockbox_client::DEFAULT_LOCKBOX_SOCKET)]
    socket: PathBuf,
    /// Act as a service account: its key file from `lockbox iam key create`. Each
    /// connection to lockboxd then signs a short-lived token with it.
    #[arg(long, global = true, env = "LOCKBOX_SA_KEY")]
    sa_key: Option<PathBuf>,
    /// Socket of lockbox-kms.
    #[arg(long, global = true, env = "LOCKBOX_KMS_SOCKET", default_value = lockbox_client::DEFAULT_KMS_SOCKET)]
    kms_socket: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Aligned `field: value` lines, like `yc` prints.
    Text,
    /// One JSON document.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Manage secrets and their versions.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Read secret payloads.
    #[command(subcommand)]
    Payload(secret::PayloadCommand),
    /// Manage clouds and folders.
    #[command(subcommand)]
    ResourceManager(resource::ResourceCommand),
    /// Manage service accounts and their keys.
    #[command(subcommand)]
    Iam(iam::IamCommand),
    /// Manage lockbox-kms: keys, crypto operations and KMS access bindings.
    Kms {
        #[command(subcommand)]
        command: kms::KmsCommand,
    },
    /// Maintain lockboxd itself: backups, its keyring.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Work with audit trails.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// See a cloud's quotas and how much of them is used.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
}

/// Connects to lockboxd, as a service account when a key file is given.
async fn connect(
    socket: &std::path::Path,
    sa_key: Option<&std::path::Path>,
) -> anyhow::Result<lockbox_client::LockboxClient> {
    Ok(match sa_key {
        Some(path) => {
            let key =
                lockbox_client::sa::KeyFile::read(path).map_err(|e| io::invalid(e.to_string()))?;
            lockbox_client::LockboxClient::connect_as(socket, &key).await?
        }
        None => lockbox_client::LockboxClient::connect(socket).await?,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lockbox: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Kms {
                command: kms::KmsCommand::SymmetricKey(kms::SymmetricKeyCommand::Rewrap(args)),
            } => {
                let client = connect(&cli.socket, cli.sa_key.as_deref()).await?;
                kms::rewrap(&client, cli.format, args).await
            }
            Command::Kms { command } => kms::run(&cli.kms_socket, cli.format, command).await,
            Command::Audit(command) => audit::run(&cli.kms_socket, cli.format, command).await,
            Command::Admin(command) => {
                let client = connect(&cli.socket, cli.sa_key.as_deref()).await?;
                admin::run(&client, &cli.kms_socket, cli.format, command).await
            }
            Command::Secret(command) => {
                let client = connect(&cli.socket, cli.sa_key.as_deref()).await?;
                secret::run(&client, cli.format, command).await
            }
            Command::Payload(command) => {
                let client = connect(&cli.socket, cli.sa_key.as_deref()).await?;
                secret::payload(&client, cli.format, command).await
            }
            Command::ResourceManager(command) => {
                let client = connect(&cli.socket, cli.sa_key.as_deref()).await?;
                resource::run(&client, cli.format, command).await
            }
            Command::Quota(command) => {
                let client = connect(&cli.socket, cli.sa_key.as_deref()).await?;
                quota::run(&client, cli.format, command).await
            }
            Command::Iam(command) => {
                let client = connect(&cli.socket, cli.sa_key.as_deref()).await?;
                iam::run(&client, cli.format, command).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<lockbox_client::CallError>() {
                Some(lockbox_client::CallError::Server(err)) => {
                    eprintln!("lockbox: {}: {}", err.code, err.message)
                }
                Some(other) => eprintln!("lockbox: {}: {other}", lockbox_client::error_code(other)),
                None => eprintln!("lockbox: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
