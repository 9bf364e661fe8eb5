//! Stable error codes and the error value every failed request answers with.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What went wrong, in terms a client can branch on. The codes are stable: new ones may be
/// added, existing ones never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed or a field fails validation; the message names the field.
    InvalidArgument,
    /// The named resource does not exist (or the caller may not know it exists).
    NotFound,
    /// A resource with that id or name already exists.
    AlreadyExists,
    /// The caller is known but lacks a permission; the message names it and the resource.
    PermissionDenied,
    /// The caller could not be identified.
    Unauthenticated,
    /// The resource is not in a state that allows the operation.
    FailedPrecondition,
    /// A quota or size limit was reached; the message names it.
    ResourceExhausted,
    /// A dependency is down or the server is shutting down; retrying later may succeed.
    Unavailable,
    /// A bug or an unexpected failure inside the server.
    Internal,
}

impl ErrorCode {
    /// The code's stable name, as the CLI prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// The stable code clients branch on.
    pub code: ErrorCode,
    /// A human-readable explanation; never contains secret material.
    pub message: String,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}
