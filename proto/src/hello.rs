//! The first frame on every connection: magic, protocol version, and the service the client
//! expects to reach.
//!
//! The layout of [`HelloPrefix`] (magic, then version) is frozen for all protocol versions, so
//! a server can always read it and answer a version mismatch with a clear error rather than a
//! decoding failure.

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// Identifies a lockbox connection; anything else is not speaking this protocol.
pub const MAGIC: [u8; 8] = *b"LOCKBOX\0";

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The frozen start of every hello, readable by any protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloPrefix {
    /// Must equal [`MAGIC`].
    pub magic: [u8; 8],
    /// The client's protocol version.
    pub version: u32,
}

/// The processes a client may mean to reach; a client pointed at the wrong socket gets a
/// clear error instead of confusing replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Service {
    /// `lockbox-kms`.
    Kms,
    /// `lockboxd`.
    Lockbox,
}

/// Where `lockbox-kms` listens unless configured otherwise.
pub const DEFAULT_KMS_SOCKET: &str = "/run/lockbox-kms/kms.sock";

/// Where `lockboxd` listens unless configured otherwise.
pub const DEFAULT_LOCKBOX_SOCKET: &str = "/run/lockboxd/lockbox.sock";

impl Service {
    /// The name of the process that serves it.
    pub fn process_name(self) -> &'static str {
        match self {
            Service::Kms => "lockbox-kms",
            Service::Lockbox => "lockboxd",
        }
    }
}

/// The client's opening frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Magic and version, in the frozen layout.
    pub prefix: HelloPrefix,
    /// The service the client expects.
    pub service: Service,
    /// Free-form client name and version, for the server's log.
    pub client: String,
}

impl Hello {
    /// A hello for this protocol version.
    pub fn new(service: Service, client: impl Into<String>) -> Self {
        Self {
            prefix: HelloPrefix {
                magic: MAGIC,
                version: PROTOCOL_VERSION,
            },
            service,
            client: client.into(),
        }
    }
}

/// What the server says back about itself once the hello is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The protocol version the server speaks.
    pub version: u32,
    /// The service the server provides.
    pub service: Service,
    /// Largest frame body the server accepts.
    pub max_frame: u32,
    /// The subject the server identified the connection as, e.g. `user:alice`.
    pub subject: String,
}

/// The server's answer to a hello. On error the server closes the connection after sending it.
pub type HelloReply = Result<ServerInfo, Error>;
