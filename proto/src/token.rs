//! Service-account tokens: compact JWS (`header.claims.signature`, base64url without
//! padding) with ES256 signatures. This module defines the layout both sides agree on; the
//! client signs and the daemon verifies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// A signed token as it travels in `Authenticate`: encoded exactly as its text, redacted in
/// `Debug` (a request may be logged) and wiped when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bearer(String);

impl Bearer {
    /// Wraps a token's text.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Bearer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bearer([REDACTED; {}])", self.0.len())
    }
}

/// The only algorithm accepted.
pub const ALGORITHM: &str = "ES256";
/// Audience of tokens for `lockboxd`.
pub const LOCKBOXD_AUDIENCE: &str = "lockboxd";
/// Longest lifetime a token may claim, seconds.
pub const MAX_LIFETIME: i64 = 3600;

/// The JWS header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Must be `ES256`.
    pub alg: String,
    /// `JWT`.
    pub typ: String,
    /// Id of the service-account key that signed.
    pub kid: String,
}

/// The claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The service account.
    pub iss: String,
    /// Who the token is for (`lockboxd`).
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Unique id; a token is accepted once.
    pub jti: String,
}

/// A token split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Header.
    pub header: Header,
    /// Claims.
    pub claims: Claims,
    /// `base64(header).base64(claims)`, the signed bytes.
    pub signing_input: String,
    /// The raw signature (r || s for ES256).
    pub signature: Vec<u8>,
}

/// The signing input for `header` and `claims`.
pub fn signing_input(header: &Header, claims: &Claims) -> String {
    let enc = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
    // Plain structs of strings and integers always serialise.
    let h = serde_json::to_vec(header).unwrap_or_default();
    let c = serde_json::to_vec(claims).unwrap_or_default();
    format!("{}.{}", enc(&h), enc(&c))
}

/// `signing_input.base64(signature)`.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Splits and decodes a token; `None` if it is not shaped like one.
pub fn parse(token: &str) -> Option<Parsed> {
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || token.len() > 8192 {
        return None;
    }
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let signature = URL_SAFE_NO_PAD.decode(s).ok()?;
    Some(Parsed {
        header,
        claims,
        signing_input: format!("{h}.{c}"),
        signature,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_bearer_token_is_encoded_as_its_text_and_never_shown() {
        let token = Bearer::new("eyJhbGciOi.secret-claims.signature".into());
        assert_eq!(
            postcard::to_allocvec(&token).unwrap(),
            postcard::to_allocvec("eyJhbGciOi.secret-claims.signature").unwrap()
        );
        let request = crate::lockbox::LockboxRequest::Authenticate { token };
        let shown = format!("{request:?}");
        assert!(!shown.contains("secret-claims"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }

    use super::*;

    #[test]
    fn assemble_then_parse() {
        let header = Header {
            alg: ALGORITHM.into(),
            typ: "JWT".into(),
            kid: "k".into(),
        };
        let claims = Claims {
            iss: "sa".into(),
            aud: LOCKBOXD_AUDIENCE.into(),
            iat: 1,
            exp: 2,
            jti: "j".into(),
        };
        let input = signing_input(&header, &claims);
        let token = assemble(&input, &[1, 2, 3]);
        let parsed = parse(&token).unwrap();
        assert_eq!((parsed.header, parsed.claims), (header, claims));
        assert_eq!(parsed.signing_input, input);
        assert_eq!(parsed.signature, vec![1, 2, 3]);
        assert!(parse("a.b").is_none());
        assert!(parse(&format!("{token}.x")).is_none());
        assert!(parse("!!.??.##").is_none());
    }
}
