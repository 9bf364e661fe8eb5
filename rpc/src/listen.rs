//! Process plumbing both servers share: binding the Unix socket safely, the socket mode
//! setting, the runtime, the shutdown signal, and logging.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use tokio::net::UnixListener;

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
/// `block_on`, and a wake-up skips the multi-threaded scheduler's shared queues and parking.
/// Callgrind, instructions per request: lockboxd's keyring payload read -4%, its KMS-keyed
/// read -8% (lockbox-kms's side -5%). Blocking work still goes to `spawn_blocking`'s pool in
/// either kind.
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
    fn socket_modes() {
        assert_eq!(parse_socket_mode("0660"), Ok(0o660));
        assert_eq!(parse_socket_mode("600"), Ok(0o600));
        assert!(parse_socket_mode("0666").is_err());
        assert!(parse_socket_mode("rw").is_err());
    }
}
