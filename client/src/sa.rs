//! Service-account key files and the tokens signed with them.
//!
//! A key file is the JSON `lockbox iam key create` writes once: the key id, the service
//! account, and the PEM private key. The server never stores the private key.

use lockbox_proto::token::{self, Claims, Header};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lifetime of the tokens the client signs for itself.
pub const TOKEN_LIFETIME: i64 = 300;

/// A service account's authorized key, as written to a key file.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key id.
    pub id: String,
    /// The service account.
    pub service_account_id: String,
    /// Always `ECDSA_P256`.
    pub key_algorithm: String,
    /// PEM SubjectPublicKeyInfo.
    pub public_key: String,
    /// PEM PKCS#8 private key.
    pub private_key: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("id", &self.id)
            .field("service_account_id", &self.service_account_id)
            .finish_non_exhaustive()
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Unreadable file.
    #[error("key file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The private key is not a P-256 PKCS#8 PEM key.
    #[error("key file: the private key is not a P-256 key: {0}")]
    Key(String),
}

impl KeyFile {
    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        let err = |reason: String| KeyFileError::Read {
            path: path.display().to_string(),
            reason,
        };
        let text =
            zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// A token for `audience`, issued at `now` and valid for `lifetime` seconds.
    pub fn sign_token(
        &self,
        audience: &str,
        now: i64,
        lifetime: i64,
    ) -> Result<String, KeyFileError> {
        let key = SigningKey::from_pkcs8_pem(&self.private_key)
            .map_err(|e| KeyFileError::Key(e.to_string()))?;
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti).map_err(|e| KeyFileError::Key(e.to_string()))?;
        let header = Header {
            alg: token::ALGORITHM.into(),
            typ: "JWT".into(),
            kid: self.id.clone(),
        };
        let claims = Claims {
            iss: self.service_account_id.clone(),
            aud: audience.into(),
            iat: now,
            exp: now + lifetime,
            jti: lockbox_proto::bytes::hex(&jti),
        };
        let input = token::signing_input(&header, &claims);
        let signature: Signature = key.sign(input.as_bytes());
        Ok(token::assemble(&input, &signature.to_bytes()))
    }
}

/// The current Unix time.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
