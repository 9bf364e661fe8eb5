//! The daemon's error type. Each layer below converts its own failures into it where they
//! meet (the store's in `service`, the KMS link's in `crypto::kms_link`), and the socket
//! front-end converts it to the wire's error code in one place (`server::convert`).

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

impl LockboxError {
    /// The name of the error's code as the wire spells it (`NOT_FOUND`, …), for records
    /// kept below the front-end, such as the audit trail. The front-end's conversion
    /// (`server::convert`) gives the same code; a test there holds the two together.
    pub fn code_name(&self) -> &'static str {
        match self {
            LockboxError::InvalidArgument(_) => "INVALID_ARGUMENT",
            LockboxError::NotFound(_) => "NOT_FOUND",
            LockboxError::AlreadyExists(_) => "ALREADY_EXISTS",
            LockboxError::PermissionDenied(_) => "PERMISSION_DENIED",
            LockboxError::Unauthenticated(_) => "UNAUTHENTICATED",
            LockboxError::FailedPrecondition(_) => "FAILED_PRECONDITION",
            LockboxError::ResourceExhausted(_) => "RESOURCE_EXHAUSTED",
            LockboxError::Unavailable(_) => "UNAVAILABLE",
            LockboxError::Internal(_) => "INTERNAL",
        }
    }
}
