//! Process plumbing both servers share: the configuration file, the endpoint (socket, its
//! mode and the server's limits) and serving it until a signal, binding the Unix socket
//! safely, the runtime, logging, and the exit status.

use crate::server::{Handler, ServerConfig, serve};
use serde::de::DeserializeOwned;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::UnixListener;

/// Reads the TOML configuration file at `path`; with none, every setting keeps its default.
/// The message of an error names the file.
pub fn read_config<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, String> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The exit status of a server's `main`: failure after printing the error, with its causes,
/// as one line after the process's name.
pub fn exit_status(name: &str, result: Result<(), impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where and how a server listens: what `serve` needs beyond its handler.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The socket's path.
    pub socket: PathBuf,
    /// The socket's permission bits.
    pub mode: u32,
    /// Frame size and connection limits.
    pub config: ServerConfig,
}

impl Endpoint {
    /// The endpoint the settings both servers' configuration files share describe, each
    /// left out keeping its default: mode "0660", the protocol's frame limit, 1,024
    /// connections, connections that live 15 minutes.
    pub fn new(
        socket: PathBuf,
        socket_mode: Option<&str>,
        max_frame: Option<u32>,
        max_connections: Option<usize>,
        max_connection_age: Option<u64>,
    ) -> Result<Self, String> {
        let defaults = ServerConfig::default();
        if max_connection_age == Some(0) {
            return Err("max_connection_age: must be at least 1 (seconds)".into());
        }
        Ok(Self {
            socket,
            mode: parse_socket_mode(socket_mode.unwrap_or("0660"))?,
            config: ServerConfig {
                max_frame: max_frame.unwrap_or(defaults.max_frame),
                max_connections: max_connections.unwrap_or(defaults.max_connections),
                max_connection_age: max_connection_age.unwrap_or(defaults.max_connection_age),
                ..defaults
            },
        })
    }

    /// Binds the socket, tells the service manager that `name` is ready, serves `handler`
    /// until SIGTERM or SIGINT and every connection has finished, then removes the socket.
    pub async fn serve_until_signal<H: Handler>(
        &self,
        name: &str,
        handler: Arc<H>,
    ) -> io::Result<()> {
        let listener = bind(&self.socket, self.mode)?;
        tracing::info!(socket = %self.socket.display(), "{name} serving");
        crate::notify::ready();
        serve(listener, handler, self.config.clone(), shutdown_signal()).await;
        let _ = std::fs::remove_file(&self.socket);
        tracing::info!("{name} stopped");
        Ok(())
    }
}

/// Parses an octal socket mode such as "0660"; refuses modes that give others any access.
pub fn parse_socket_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .map_err(|_| format!("socket_mode: {text:?} is not an octal mode like \"0660\""))?;
    if mode & !0o770 != 0 {
        return Err(format!(
            "socket_mode: {text} gives other users access; use 0660 or tighter"
        ));
    }
    Ok(mode)
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Binds a Unix socket at `path` with permission bits `mode`, creating its directory if
/// needed. A stale socket file is replaced; a live one (a server answers) is refused.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| context(e, format!("creating {}", dir.display())))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running server", path.display()),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| context(e, format!("removing stale {}", path.display())))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| context(e, format!("binding {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| context(e, format!("setting the mode of {}", path.display())))?;
    Ok(listener)
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Logs to stderr, filtered by `$LOCKBOX_LOG` (default `info`), coloured only on a terminal.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOCKBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
}

/// The runtime a server runs on, with `worker_threads` workers (`None`: half the CPUs this
/// process may use, at least one). A local server's clients run on the same machine, so by
/// default it leaves them the other half: on a small machine, workers fighting their own
/// clients for cores cost more in wake-ups than they add.
///
/// One worker is a current-thread runtime: every task runs on the thread that called
/// `block_on`, and a wake-up skips the multi-threaded scheduler's shared queues and parking
/// (what that saves is in benches/results). Blocking work still goes to `spawn_blocking`'s
/// pool in either kind.
pub fn runtime(worker_threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let workers = worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)))
        .max(1);
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_is_a_current_thread_runtime() {
        use tokio::runtime::RuntimeFlavor;
        let flavor = |n| runtime(Some(n)).map(|r| r.handle().runtime_flavor());
        assert_eq!(flavor(1).ok(), Some(RuntimeFlavor::CurrentThread));
        assert_eq!(flavor(0).ok(), Some(RuntimeFlavor::CurrentThread));
        assert_eq!(flavor(2).ok(), Some(RuntimeFlavor::MultiThread));
    }

    #[test]
    fn configuration_files_are_optional_and_named_in_errors() {
        #[derive(Debug, Default, PartialEq, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sample {
            size: Option<u32>,
        }
        assert_eq!(read_config::<Sample>(None), Ok(Sample::default()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "size = 3").unwrap();
        assert_eq!(read_config(Some(&path)), Ok(Sample { size: Some(3) }));
        std::fs::write(&path, "sise = 3").unwrap();
        let err = read_config::<Sample>(Some(&path)).unwrap_err();
        assert!(
            err.starts_with(&path.display().to_string()) && err.contains("sise"),
            "{err}"
        );
        let missing = dir.path().join("missing.toml");
        assert!(read_config::<Sample>(Some(&missing)).is_err());
    }

    #[test]
    fn endpoint_settings_default_and_refuse_open_modes() {
        let e = Endpoint::new("/s".into(), None, None, None, None).unwrap();
        assert_eq!((e.mode, e.config.max_connections), (0o660, 1024));
        assert_eq!(e.config.max_frame, lockbox_proto::frame::DEFAULT_MAX_FRAME);
        assert_eq!(e.config.max_connection_age, 900);
        let e = Endpoint::new("/s".into(), Some("0600"), Some(4096), Some(8), Some(60)).unwrap();
        assert_eq!(
            (
                e.mode,
                e.config.max_frame,
                e.config.max_connections,
                e.config.max_connection_age
            ),
            (0o600, 4096, 8, 60)
        );
        assert!(Endpoint::new("/s".into(), Some("0666"), None, None, None).is_err());
        let zero = Endpoint::new("/s".into(), None, None, None, Some(0)).unwrap_err();
        assert!(zero.contains("max_connection_age"), "{zero}");
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("600"), Ok(0o600));
        assert!(parse_socket_mode("0666").is_err());
        assert!(parse_socket_mode("rw").is_err());
    }
}
