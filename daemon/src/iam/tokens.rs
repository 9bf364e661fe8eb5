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
use std::collections::HashSet;
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
        // Claims are the signer's to choose: every bound is checked without arithmetic on
        // them that could overflow, and both ends lie within a lifetime of now.
        let lifetime = claims.exp.checked_sub(claims.iat);
        if !lifetime.is_some_and(|l| (1..=MAX_LIFETIME).contains(&l)) {
            return Err(unauthenticated(
                "the token's lifetime is not between 1 s and 1 h",
            ));
        }
        if claims.iat > now.saturating_add(SKEW) {
            return Err(unauthenticated("the token is issued in the future"));
        }
        if claims.exp < now.saturating_sub(SKEW) {
            return Err(unauthenticated("the token has expired"));
        }
        Ok(())
    }

    /// Records the token in `replays` at `now`; refused if it was used before, and with
    /// `ResourceExhausted` while the cache is full.
    pub fn use_once(&self, replays: &mut ReplayCache, now: i64) -> Result<(), LockboxError> {
        let claims = &self.0.claims;
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI {
            return Err(unauthenticated(&format!(
                "the token's jti must be 1 to {MAX_JTI} bytes"
            )));
        }
        match replays.first_use(&claims.iss, &claims.jti, claims.exp, now) {
            FirstUse::Yes => Ok(()),
            FirstUse::Replayed => Err(unauthenticated("the token was already used")),
            FirstUse::Full => Err(LockboxError::ResourceExhausted(format!(
                "too many service-account tokens are live ({} remembered against replay); \
                 retry in a minute, or sign tokens with shorter lifetimes",
                replays.len()
            ))),
        }
    }
}

/// Longest token id accepted, bytes.
pub const MAX_JTI: usize = 128;

/// Seconds of token expiry one bucket of the replay cache covers.
const BUCKET: i64 = 60;

/// What [`ReplayCache::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstUse {
    /// Not seen before; now remembered.
    Yes,
    /// Seen before.
    Replayed,
    /// Not seen, but the cache holds as many tokens as it may.
    Full,
}

/// The tokens accepted and not yet expired, so each is accepted once.
///
/// Kept by expiry in one-minute buckets: a token is looked up in its own expiry's bucket
/// only (a replay carries the same signed expiry), and whole buckets are dropped once every
/// token in them has expired. Bounded: past `capacity` live tokens, new ones are refused
/// rather than remembered, until old ones expire.
#[derive(Debug)]
pub struct ReplayCache {
    /// (issuer, jti) by the bucket of their expiry.
    buckets: std::collections::BTreeMap<i64, HashSet<(String, String)>>,
    /// Tokens held in all buckets.
    len: usize,
    /// Most tokens held.
    capacity: usize,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            buckets: Default::default(),
            len: 0,
            capacity,
        }
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records the token (`iss`, `jti`) valid until `exp`, unless it was already used or
    /// the cache is full.
    fn first_use(&mut self, iss: &str, jti: &str, exp: i64, now: i64) -> FirstUse {
        // Buckets whose every token is refused as expired anyway.
        let live = now.saturating_sub(SKEW).div_euclid(BUCKET);
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() >= live {
                break;
            }
            self.len -= entry.remove().len();
        }
        let bucket = exp.div_euclid(BUCKET);
        let key = (iss.to_owned(), jti.to_owned());
        if self.buckets.get(&bucket).is_some_and(|b| b.contains(&key)) {
            return FirstUse::Replayed;
        }
        if self.len >= self.capacity {
            return FirstUse::Full;
        }
        self.buckets.entry(bucket).or_default().insert(key);
        self.len += 1;
        FirstUse::Yes
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
    fn replay_cache_accepts_once_per_issuer_and_forgets_expired_buckets() {
        let mut cache = ReplayCache::new(3);
        assert_eq!(cache.first_use("sa1", "a", 100, 50), FirstUse::Yes);
        assert_eq!(cache.first_use("sa1", "a", 100, 60), FirstUse::Replayed);
        // Another account may pick the same id.
        assert_eq!(cache.first_use("sa2", "a", 100, 60), FirstUse::Yes);
        assert_eq!(cache.first_use("sa1", "b", 200, 60), FirstUse::Yes);
        // Full: a new token is refused, a replay is still recognised as one.
        assert_eq!(cache.first_use("sa1", "c", 200, 60), FirstUse::Full);
        assert_eq!(cache.first_use("sa1", "b", 200, 60), FirstUse::Replayed);
        // Once the first bucket's tokens are all past expiry and skew, it is dropped whole.
        assert_eq!(
            cache.first_use("sa1", "c", 300, 100 + SKEW + BUCKET),
            FirstUse::Yes
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn claims_at_the_ends_of_the_integers_are_refused_not_overflowed() {
        for (iat, exp) in [
            (i64::MIN, 100),
            (i64::MIN, i64::MAX),
            (i64::MAX - 10, i64::MAX),
            (-10, i64::MIN),
        ] {
            let claims = token::Claims {
                iss: "aje00000000000000000".into(),
                aud: LOCKBOXD_AUDIENCE.into(),
                iat,
                exp,
                jti: "j".into(),
            };
            let (public, private) = new_key_pair().unwrap();
            let presented = signed(&private, claims);
            assert!(
                matches!(
                    presented.verify(&public, 1_000_000),
                    Err(LockboxError::Unauthenticated(_))
                ),
                "{iat} {exp}"
            );
        }
    }

    fn signed(private_pem: &str, claims: token::Claims) -> Presented {
        use p256::ecdsa::signature::Signer;
        use p256::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_pem(private_pem).unwrap();
        let header = token::Header {
            alg: token::ALGORITHM.into(),
            typ: "JWT".into(),
            kid: "ajk00000000000000000".into(),
        };
        let input = token::signing_input(&header, &claims);
        let signature: Signature = key.sign(input.as_bytes());
        Presented::parse(&token::assemble(&input, &signature.to_bytes())).unwrap()
    }

    #[test]
    fn a_new_key_pair_shows_its_public_half() {
        let (public, private) = new_key_pair().unwrap();
        assert!(public_key_pem(&public).starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(public_key_pem(b"not a key"), "");
    }
}
