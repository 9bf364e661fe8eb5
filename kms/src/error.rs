//! The KMS's error type, and its one conversion to the wire's code.

use lockbox_proto::ErrorCode;
use lockbox_rpc::server::AnswerError;

/// Why a KMS operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// A field failed validation; the message names it.
    #[error("{0}")]
    InvalidArgument(String),
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The resource already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller lacks a permission.
    #[error("permission {permission} denied on {resource} for {subject}")]
    PermissionDenied {
        /// The missing permission, e.g. `kms.keys.decrypt`.
        permission: &'static str,
        /// The resource it was needed on.
        resource: String,
        /// The subject that lacked it.
        subject: String,
    },
    /// A relayed request came from a caller that is not an enrolled relay.
    #[error("{0} is not an enrolled relay and may not act on behalf of other subjects")]
    NotARelay(String),
    /// A relay sent, on behalf of another subject, a request only the subject itself may
    /// make.
    #[error(
        "{0} may not be relayed: a relay may send Encrypt, Decrypt, ReEncrypt, \
         GenerateDataKey and CheckMayActAs on behalf of others; everything else must come from \
         the caller itself"
    )]
    NotRelayable(&'static str),
    /// The caller may not act as a subject holding roles it could not grant.
    #[error(
        "{caller} may not act as {subject}: {subject} holds roles on {resource} that only a \
         kms.admin there may grant"
    )]
    MayNotActAs {
        /// The subject, e.g. a service account.
        subject: String,
        /// Where it holds a role beyond the caller's reach.
        resource: String,
        /// Who asked.
        caller: String,
    },
    /// The resource's state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A quota or limit was reached; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Decryption failed. Deliberately opaque: wrong key, wrong context and tampering all look
    /// the same to the caller.
    #[error("decryption failed: the ciphertext, key or aad_context do not match")]
    DecryptionFailed,
    /// The KMS cannot serve the request now (e.g. its audit trail cannot be written); it may
    /// succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the KMS (e.g. the keystore could not be written).
    #[error("{0}")]
    Internal(String),
}

impl AnswerError for KmsError {
    fn code(&self) -> ErrorCode {
        match self {
            KmsError::InvalidArgument(_) | KmsError::DecryptionFailed => ErrorCode::InvalidArgument,
            KmsError::NotFound(_) => ErrorCode::NotFound,
            KmsError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            KmsError::PermissionDenied { .. }
            | KmsError::NotARelay(_)
            | KmsError::NotRelayable(_)
            | KmsError::MayNotActAs { .. } => ErrorCode::PermissionDenied,
            KmsError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            KmsError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            KmsError::Unavailable(_) => ErrorCode::Unavailable,
            KmsError::Internal(_) => ErrorCode::Internal,
        }
    }
}
