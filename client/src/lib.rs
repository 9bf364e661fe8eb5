//! Async client for lockbox's servers.
//!
//! [`KmsClient`] speaks to `lockbox-kms`, [`LockboxClient`] to `lockboxd`. A client holds one pipelined connection: clone it
//! freely and issue calls concurrently from many tasks; responses are matched by request id.
#![forbid(unsafe_code)]

/// Matches a response against the variant a call expects, turning any other into a
/// protocol error.
macro_rules! expect {
    ($resp:expr, $pat:pat => $out:expr) => {
        match $resp {
            $pat => Ok($out),
            other => Err($crate::CallError::Protocol(format!(
                "unexpected response {other:?}"
            ))),
        }
    };
}

pub mod kms;
pub mod lockbox;
pub mod payload_json;
pub mod sa;

pub use kms::KmsClient;
pub use lockbox::LockboxClient;
pub use lockbox_proto as proto;
pub use lockbox_rpc::CallError;

pub use lockbox_proto::hello::{DEFAULT_KMS_SOCKET, DEFAULT_LOCKBOX_SOCKET};

/// Error code of a failed call, for callers that branch on it: the server's code, or
/// `Unavailable` when the server could not be reached.
pub fn error_code(e: &CallError) -> proto::ErrorCode {
    match e {
        CallError::Server(e) => e.code,
        CallError::Connect { .. } | CallError::Disconnected(_) => proto::ErrorCode::Unavailable,
        _ => proto::ErrorCode::Internal,
    }
}
