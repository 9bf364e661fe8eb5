//! systemd readiness notification (`sd_notify`): tells the service manager, or a test harness
//! that set `NOTIFY_SOCKET`, that the server is accepting connections.

use std::os::unix::net::UnixDatagram;

/// Sends `READY=1` to `$NOTIFY_SOCKET` if it is set. Errors are logged, not fatal: a server
/// that cannot notify still serves.
pub fn ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(b"READY=1", &addr)
            }
            None => socket.send_to(b"READY=1", &path),
        }
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not notify readiness to $NOTIFY_SOCKET");
    }
}
