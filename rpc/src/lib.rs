//! Tokio transport for lockbox protocol frames, shared by the servers and the client.
//!
//! - [`connection`]: buffered frame reading over any `AsyncRead`.
//! - [`server`]: the accept loop (hello, connection cap, graceful shutdown) around a
//!   [`server::Handler`] that turns one request frame into one response frame.
//! - [`audit`]: audit trails written off the request path, hash-chained.
//! - [`channel`]: the client side, pipelining many requests over one connection and matching
//!   responses by id.
//! - [`stream`]: a Unix stream registered for read readiness only, which spares each side
//!   a wake-up per message the other reads.
//! - [`redial`]: a client connection opened again when the server ends it.
//! - [`peer`]: who is on the other end of a Unix socket, from `SO_PEERCRED` and
//!   `SO_PEERGROUPS`.
//! - [`metrics`]: Prometheus series, and the loopback HTTP listener that serves them.
//! - [`clock`]: injectable time, so tests move it instead of sleeping.
//! - [`notify`]: systemd readiness notification.
//! - [`listen`]: socket binding, shutdown signal and logging set-up.
// Denied, not forbidden: `peer::peer_groups` is the one audited exception.
#![deny(unsafe_code)]

pub mod audit;
pub mod channel;
pub mod clock;
pub mod connection;
pub mod hardening;
pub mod listen;
pub mod metrics;
pub mod notify;
pub mod peer;
pub mod redial;
pub mod server;
pub mod stream;

pub use channel::{CallError, Channel};
pub use peer::{LocalIdentity, PeerCred};
pub use server::{Handler, ServerConfig, serve};
