//! The daemon's error type, and its one conversion to the wire.

use crate::store::StoreError;
use lockbox_client::CallError;
use lockbox_proto::{Error, ErrorCode};

/// Why a Lockbox operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LockboxError {
    /// A field failed validation; the message names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The resource already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller lacks a permission (here or in `lockbox-kms`).
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller could not be identified (a bad, expired or replayed token).
    #[error("{0}")]
    Unauthenticated(String),
    /// The resource's state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A quota or size limit was reached; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency (`lockbox-kms`) is down; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the daemon.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for LockboxError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        LockboxError::Internal(e.to_string())
    }
}

impl From<CallError> for LockboxError {
    /// A failed call to `lockbox-kms`: its verdicts keep their code; a lost or missing
    /// connection is `Unavailable`.
    fn from(e: CallError) -> Self {
        match e {
            CallError::Server(err) => {
                let message = format!("lockbox-kms: {}", err.message);
                match err.code {
                    ErrorCode::InvalidArgument => LockboxError::InvalidArgument(message),
                    ErrorCode::NotFound => LockboxError::NotFound(message),
                    ErrorCode::PermissionDenied | ErrorCode::Unauthenticated => {
                        LockboxError::PermissionDenied(message)
                    }
                    ErrorCode::FailedPrecondition => LockboxError::FailedPrecondition(message),
                    ErrorCode::ResourceExhausted => LockboxError::ResourceExhausted(message),
                    ErrorCode::Unavailable => LockboxError::Unavailable(message),
                    _ => LockboxError::Internal(message),
                }
            }
            other => LockboxError::Unavailable(format!("lockbox-kms is unavailable: {other}")),
        }
    }
}

impl From<&LockboxError> for ErrorCode {
    fn from(e: &LockboxError) -> Self {
        match e {
            LockboxError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            LockboxError::NotFound(_) => ErrorCode::NotFound,
            LockboxError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            LockboxError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            LockboxError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            LockboxError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            LockboxError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            LockboxError::Unavailable(_) => ErrorCode::Unavailable,
            LockboxError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<&LockboxError> for Error {
    fn from(e: &LockboxError) -> Self {
        Error::new(ErrorCode::from(e), e.to_string())
    }
}
