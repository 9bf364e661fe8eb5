//! Request and response messages: the id that matches them, and the subject a trusted relay
//! acts for.

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// A request. The `id` is the first field so a server can still read it, and answer with an
/// error, when the rest of the frame does not decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request<B> {
    /// Chosen by the client, echoed in the response; unique among its requests in flight.
    pub id: u64,
    /// Set only by a trusted relay (the secrets daemon) acting for one of its callers; the
    /// server refuses it from anyone not configured as a relay.
    pub on_behalf_of: Option<Principal>,
    /// The operation.
    pub body: B,
}

/// A response to the request with the same `id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response<B> {
    /// The id of the request this answers. Id 0 answers a frame whose id could not be read.
    pub id: u64,
    /// The outcome.
    pub result: Result<B, Error>,
}

/// An authenticated caller as a relay presents it: the subject and the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// `user:<name>`, `serviceAccount:<id>`, …
    pub subject: String,
    /// `group:<name>` entries the subject belongs to.
    pub groups: Vec<String>,
}

/// The tag of the operation a request frame body carries (the position of its variant in
/// the request enum, see [`crate::variant::names`]), read without decoding the operation;
/// `None` when the frame is too damaged to tell.
pub fn request_tag(body: &[u8]) -> Option<u32> {
    let (_id, rest) = postcard::take_from_bytes::<u64>(body).ok()?;
    // `on_behalf_of: None` is one zero byte; a relay's principal is read to be skipped.
    let rest = match rest.strip_prefix(&[0]) {
        Some(rest) => rest,
        None => postcard::take_from_bytes::<Option<Principal>>(rest).ok()?.1,
    };
    postcard::take_from_bytes::<u32>(rest)
        .ok()
        .map(|(tag, _)| tag)
}

/// The outcome a response frame body carries: `Some(None)` for success, `Some(Some(code))`
/// for an error; `None` when the body is not a response.
pub fn response_code(body: &[u8]) -> Option<Option<crate::ErrorCode>> {
    let (_id, rest) = postcard::take_from_bytes::<u64>(body).ok()?;
    match rest.split_first()? {
        (0, _) => Some(None),
        (1, error) => postcard::take_from_bytes::<crate::ErrorCode>(error)
            .ok()
            .map(|(code, _)| Some(code)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockbox::LockboxRequest;
    use crate::{ErrorCode, frame, variant};

    fn body<T: Serialize>(message: &T) -> Vec<u8> {
        postcard::to_allocvec(message).unwrap()
    }

    #[test]
    fn the_tag_of_a_request_is_read_with_or_without_a_relayed_principal() {
        let names = variant::names::<LockboxRequest>();
        let request = |on_behalf_of| Request {
            id: 300,
            on_behalf_of,
            body: LockboxRequest::GetSecret {
                secret_id: "e6q1".into(),
            },
        };
        for on_behalf_of in [
            None,
            Some(Principal {
                subject: "user:alice".into(),
                groups: vec!["group:ops".into()],
            }),
        ] {
            let tag = request_tag(&body(&request(on_behalf_of))).unwrap();
            assert_eq!(names[tag as usize], "GetSecret");
        }
        assert_eq!(request_tag(&[]), None);
        // A principal that claims more groups than the frame holds is no request.
        assert_eq!(request_tag(&[9, 1, 1, b'u', 200, 1]), None);
        assert_eq!(request_tag(&[5, 7]), None);
    }

    #[test]
    fn the_code_of_a_response_is_read_without_its_answer() {
        let ok: Response<String> = Response {
            id: 1,
            result: Ok("x".into()),
        };
        assert_eq!(response_code(&body(&ok)), Some(None));
        let refused: Response<String> = Response {
            id: 1 << 40,
            result: Err(Error::new(ErrorCode::ResourceExhausted, "quota")),
        };
        assert_eq!(
            response_code(&body(&refused)),
            Some(Some(ErrorCode::ResourceExhausted))
        );
        assert_eq!(response_code(&[1, 9]), None);
        // A whole frame is the prefix and the body.
        let mut framed = Vec::new();
        frame::encode(&refused, &mut framed, 1 << 20).unwrap();
        assert_eq!(
            response_code(&framed[frame::LENGTH_PREFIX..]),
            Some(Some(ErrorCode::ResourceExhausted))
        );
    }
}
