//! Service-account keys and tokens, without storage: making a key pair, showing a public
//! key, and checking a presented ES256 token against the key it names and the time. What a
//! token alone cannot tell (that its key and account still exist, that it was not used
//! before) the service checks (`service::accounts`), with the [`ReplayCache`] kept here.

use crate::error::LockboxError;
use crate::model::ids::looks_like_id;
use crate::random::fill_random;
use lockbox_proto::token::{self, LOCKBOXD_AUDIENCE, MAX_LIFETIME};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use std::collections::HashMap;
use zeroize::Zeroizing;

/// Clock skew tolerated between the signer and the daemon, seconds.
const SKEW: i64 = 60;

fn unauthenticated(reason: &str) -> LockboxError {
    LockboxError::Unauthenticated(format!("service account token refused: {reason}"))
}

/// A new P-256 key pair: the SEC1 public key to store, and the PKCS#8 PEM private key to
/// hand out once.
pub fn new_key_pair() -> Result<(Vec<u8>, Zeroizing<String>), LockboxError> {
    let signing = loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        // Fails only for scalars outside the group order, with probability about 2^-32.
        if let Ok(k) = SigningKey::from_slice(bytes.as_ref()) {
            break k;
        }
    };
    let private_key_pem = signing
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| LockboxError::Internal(format!("key encoding failed: {e}")))?;
    Ok((
        signing.verifying_key().to_sec1_bytes().to_vec(),
        Zeroizing::new(private_key_pem.to_string()),
    ))
}

/// The PEM form of a stored SEC1 public key (empty if it does not decode).
pub fn public_key_pem(sec1: &[u8]) -> String {
    VerifyingKey::from_sec1_bytes(sec1)
        .ok()
        .and_then(|v| v.to_public_key_pem(LineEnding::LF).ok())
        .unwrap_or_default()
}

/// A token whose shape was checked: an ES256 compact JWS naming an account and a key.
#[derive(Debug)]
pub struct Presented(token::Parsed);

impl Presented {
    /// Parses `token`, refusing anything but an ES256 compact JWS with well-formed ids.
    pub fn parse(token: &str) -> Result<Self, LockboxError> {
        let parsed = token::parse(token).ok_or_else(|| unauthenticated("not a compact JWS"))?;
        if parsed.header.alg != token::ALGORITHM {
            return Err(unauthenticated("only ES256 is accepted"));
        }
        if !looks_like_id(&parsed.claims.iss) || !looks_like_id(&parsed.header.kid) {
            return Err(unauthenticated("unknown key"));
        }
        Ok(Self(parsed))
    }

    /// The service account the token claims to act as.
    pub fn account_id(&self) -> &str {
        &self.0.claims.iss
    }

    /// The id of the key that signed it.
    pub fn key_id(&self) -> &str {
        &self.0.header.kid
    }

    /// The last second the token is accepted: its expiry plus the tolerated clock skew. A
    /// connection it authenticated acts as its account until then, and no longer.
    pub fn valid_until(&self) -> i64 {
        self.0.claims.exp.saturating_add(SKEW)
    }

    /// Checks the signature against the account's stored public key, the audience, the
    /// lifetime and the time window at `now`.
    pub fn verify(&self, public_key: &[u8], now: i64) -> Result<(), LockboxError> {
        let (parsed, claims) = (&self.0, &self.0.claims);
        let verifying = VerifyingKey::from_sec1_bytes(public_key)
            .map_err(|_| LockboxError::Internal("a stored public key is unreadable".into()))?;
        let signature = Signature::from_slice(&parsed.signature)
            .map_err(|_| unauthenticated("bad signature"))?;
        verifying
            .verify(parsed.signing_input.as_bytes(), &signature)
            .map_err(|_| unauthenticated("bad signature"))?;
        if claims.aud != LOCKBOXD_AUDIENCE {
            return Err(unauthenticated("the token is for another audience"));
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_LIFETIME {
            return Err(unauthenticated(
                "the token's lifetime is not between 1 s and 1 h",
            ));
        }
        if claims.iat > now + SKEW {
            return Err(unauthenticated("the token is issued in the future"));
        }
        if claims.exp + SKEW < now {
            return Err(unauthenticated("the token has expired"));
        }
        Ok(())
    }

    /// Records the token's id in `replays` at `now`; refused if it was used before.
    pub fn use_once(&self, replays: &mut ReplayCache, now: i64) -> Result<(), LockboxError> {
        let claims = &self.0.claims;
        if !replays.first_use(&claims.jti, claims.exp, now) {
            return Err(unauthenticated("the token was already used"));
        }
        Ok(())
    }
}

/// Token ids seen and when they expire, so a token is accepted once.
#[derive(Debug, Default)]
pub struct ReplayCache(HashMap<String, i64>);

impl ReplayCache {
    /// Records `jti` (valid until `exp`); false if it was already used.
    fn first_use(&mut self, jti: &str, exp: i64, now: i64) -> bool {
        self.0.retain(|_, e| *e + SKEW >= now);
        if self.0.contains_key(jti) {
            return false;
        }
        self.0.insert(jti.to_owned(), exp);
        true
    }
}

/// The refusal of a request on a connection whose token has expired since it authenticated.
pub fn session_expired() -> LockboxError {
    LockboxError::Unauthenticated(
        "the service account token of this connection has expired; authenticate again on a new connection"
            .into(),
    )
}

/// The refusal of a token whose service account no longer exists.
pub fn account_gone() -> LockboxError {
    unauthenticated("the service account no longer exists")
}

/// A token naming a key the account does not have (any more).
pub fn unknown_key() -> LockboxError {
    unauthenticated("unknown or deleted key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_accepts_once_and_forgets_expired_ids() {
        let mut cache = ReplayCache::default();
        assert!(cache.first_use("a", 100, 50));
        assert!(!cache.first_use("a", 100, 60));
        assert!(cache.first_use("b", 100, 60));
        // Long after expiry the entry is dropped (the token itself is refused as expired).
        assert!(cache.first_use("a", 100, 1000));
    }

    #[test]
    fn a_new_key_pair_shows_its_public_half() {
        let (public, private) = new_key_pair().unwrap();
        assert!(public_key_pem(&public).starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(public_key_pem(b"not a key"), "");
    }
}
