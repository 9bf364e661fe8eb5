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
use std::time::Duration;
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

/// The listening settings both servers' configuration files share, as read: each left out
/// keeps its default.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// Permission bits of the socket, as an octal string (default "0660").
    pub socket_mode: Option<String>,
    /// Largest frame body, bytes (default 1 MiB).
    pub max_frame: Option<u32>,
    /// Connections served at once (default 1,024).
    pub max_connections: Option<usize>,
    /// Connections one Unix user may hold at once (default 256).
    pub max_connections_per_user: Option<usize>,
    /// Seconds a connection acts as the identity it was opened with (default 900).
    pub max_connection_age: Option<u64>,
    /// Seconds a connection may stay silent, or leave its answers unread, before it is
    /// closed (default 300).
    pub idle_timeout: Option<u64>,
}

/// Largest `max_frame` accepted: every connection may buffer a frame this large.
pub const MAX_FRAME_LIMIT: u32 = 16 << 20;

/// File descriptors a connection may hold at once: its socket, and a duplicate of it while
/// a write waits for the peer to read.
const FILES_PER_CONNECTION: u64 = 2;

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
    /// The endpoint `settings` describe, checked: a frame limit of at least `min_frame` (the
    /// largest answer the service must be able to send) and at most [`MAX_FRAME_LIMIT`], at
    /// least one connection, a per-user cap within the global one, and timeouts of at least
    /// a second. The message of an error names the setting.
    pub fn new(socket: PathBuf, settings: &Settings, min_frame: u32) -> Result<Self, String> {
        let defaults = ServerConfig::default();
        let max_frame = settings.max_frame.unwrap_or(defaults.max_frame);
        if !(min_frame..=MAX_FRAME_LIMIT).contains(&max_frame) {
            return Err(format!(
                "max_frame: {max_frame} is outside {min_frame}..={MAX_FRAME_LIMIT} bytes (the \
                 largest answer this service sends must fit in a frame, and every connection \
                 may buffer one)"
            ));
        }
        let max_connections = settings.max_connections.unwrap_or(defaults.max_connections);
        if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&max_connections) {
            return Err(format!(
                "max_connections: must be at least 1, not {max_connections}"
            ));
        }
        let per_user = settings
            .max_connections_per_user
            .unwrap_or(defaults.max_connections_per_user.min(max_connections));
        if !(1..=max_connections).contains(&per_user) {
            return Err(format!(
                "max_connections_per_user: {per_user} is outside 1..={max_connections} (at \
                 least one, and no more than max_connections)"
            ));
        }
        let seconds = |name: &str, value: Option<u64>, default: u64| match value {
            Some(0) => Err(format!("{name}: must be at least 1 (seconds)")),
            Some(s) => Ok(s),
            None => Ok(default),
        };
        let max_connection_age = seconds(
            "max_connection_age",
            settings.max_connection_age,
            defaults.max_connection_age,
        )?;
        let idle_timeout = seconds(
            "idle_timeout",
            settings.idle_timeout,
            defaults.idle_timeout.as_secs(),
        )?;
        Ok(Self {
            socket,
            mode: parse_socket_mode(settings.socket_mode.as_deref().unwrap_or("0660"))?,
            config: ServerConfig {
                max_frame,
                max_connections,
                max_connections_per_user: per_user,
                max_connection_age,
                idle_timeout: Duration::from_secs(idle_timeout),
                ..defaults
            },
        })
    }

    /// Makes sure the process may open the files its connections need, plus `reserve` for
    /// everything else it opens: raises the soft limit on open files to the hard one, and
    /// refuses a `max_connections` the limit cannot serve, with the numbers and the fix.
    pub fn reserve_files(&self, reserve: u64) -> Result<(), String> {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let raised = rustix::process::Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                limit = raised;
            }
        }
        let needed = (self.config.max_connections as u64)
            .saturating_mul(FILES_PER_CONNECTION)
            .saturating_add(reserve);
        match limit.current {
            Some(have) if have < needed => Err(format!(
                "max_connections: {} connections need up to {needed} open files ({} each and \
                 {reserve} for the rest of the process), but this process may open {have}; \
                 lower max_connections or raise the limit (LimitNOFILE= in the unit, ulimit -n)",
                self.config.max_connections, FILES_PER_CONNECTION
            )),
            _ => Ok(()),
        }
    }

    /// Binds the socket, tells the service manager that `name` is ready, serves `handler`
    /// until SIGTERM or SIGINT and every connection has finished, then removes the socket.
    pub async fn serve_until_signal<H: Handler>(
        &self,
        name: &str,
        handler: Arc<H>,
    ) -> io::Result<()> {
        self.serve_until(name, handler, std::future::pending())
            .await
    }

    /// As [`serve_until_signal`](Self::serve_until_signal), stopping the same way (each
    /// connection answers what it has read) also when `stop` completes.
    pub async fn serve_until<H: Handler>(
        &self,
        name: &str,
        handler: Arc<H>,
        stop: impl std::future::Future<Output = ()>,
    ) -> io::Result<()> {
        let listener = bind(&self.socket, self.mode)?;
        // Caught from before the service manager hears "ready", which is when it may send
        // SIGTERM; a signal installed later could arrive first and kill the process outright.
        let signals = ShutdownSignals::install();
        tracing::info!(socket = %self.socket.display(), "{name} serving");
        crate::notify::ready();
        let shutdown = async {
            tokio::select! {
                () = signals.received() => {}
                () = stop => {}
            }
        };
        serve(listener, handler, self.config.clone(), shutdown).await;
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
    ShutdownSignals::install().received().await;
}

/// SIGTERM and SIGINT, caught (instead of ending the process) from the moment this is made.
#[derive(Debug)]
pub struct ShutdownSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl ShutdownSignals {
    /// Installs the handlers; must be called within a Tokio runtime. If they cannot be
    /// installed, says so and [`received`](Self::received) never completes.
    pub fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            _ => {
                tracing::error!("cannot install signal handlers; stop with SIGKILL");
                Self(None)
            }
        }
    }

    /// Completes on the first SIGTERM or SIGINT since [`install`](Self::install).
    pub async fn received(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
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

    /// A SIGTERM that comes between installing and the first wait is caught, not fatal:
    /// were it left to the default action, this test binary would die.
    #[tokio::test]
    async fn a_signal_sent_before_the_first_wait_is_caught() {
        use rustix::process::{Signal, getpid, kill_process};
        let signals = ShutdownSignals::install();
        kill_process(getpid(), Signal::TERM).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), signals.received())
            .await
            .unwrap();
    }

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
        let e = Endpoint::new("/s".into(), &Settings::default(), 4096).unwrap();
        assert_eq!((e.mode, e.config.max_connections), (0o660, 1024));
        assert_eq!(e.config.max_connections_per_user, 256);
        assert_eq!(e.config.max_frame, lockbox_proto::frame::DEFAULT_MAX_FRAME);
        assert_eq!(e.config.max_connection_age, 900);
        assert_eq!(e.config.idle_timeout, Duration::from_secs(300));
        let settings = Settings {
            socket_mode: Some("0600".into()),
            max_frame: Some(4096),
            max_connections: Some(8),
            max_connections_per_user: None,
            max_connection_age: Some(60),
            idle_timeout: Some(5),
        };
        let e = Endpoint::new("/s".into(), &settings, 4096).unwrap();
        assert_eq!(
            (
                e.mode,
                e.config.max_frame,
                e.config.max_connections,
                e.config.max_connections_per_user,
                e.config.max_connection_age,
                e.config.idle_timeout.as_secs(),
            ),
            (0o600, 4096, 8, 8, 60, 5)
        );
    }

    #[test]
    fn endpoint_settings_out_of_range_are_refused_by_name() {
        let refused = |change: fn(&mut Settings), name: &str| {
            let mut settings = Settings::default();
            change(&mut settings);
            let err = Endpoint::new("/s".into(), &settings, 4096).unwrap_err();
            assert!(err.starts_with(&format!("{name}:")), "{err}");
        };
        refused(|s| s.socket_mode = Some("0666".into()), "socket_mode");
        refused(|s| s.max_connection_age = Some(0), "max_connection_age");
        refused(|s| s.idle_timeout = Some(0), "idle_timeout");
        refused(|s| s.max_connections = Some(0), "max_connections");
        refused(
            |s| s.max_connections_per_user = Some(0),
            "max_connections_per_user",
        );
        refused(
            |s| {
                s.max_connections = Some(4);
                s.max_connections_per_user = Some(5);
            },
            "max_connections_per_user",
        );
        refused(|s| s.max_frame = Some(4095), "max_frame");
        refused(|s| s.max_frame = Some(MAX_FRAME_LIMIT + 1), "max_frame");
    }

    #[test]
    fn a_file_limit_too_low_for_the_connections_is_refused() {
        let settings = Settings {
            max_connections: Some(usize::MAX >> 4),
            ..Settings::default()
        };
        let e = Endpoint::new("/s".into(), &settings, 4096).unwrap();
        let err = e.reserve_files(64).unwrap_err();
        assert!(err.contains("LimitNOFILE"), "{err}");
        let one = Settings {
            max_connections: Some(1),
            ..Settings::default()
        };
        let e = Endpoint::new("/s".into(), &one, 4096).unwrap();
        assert_eq!(e.reserve_files(1), Ok(()));
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("600"), Ok(0o600));
        assert!(parse_socket_mode("0666").is_err());
        assert!(parse_socket_mode("rw").is_err());
    }
}
