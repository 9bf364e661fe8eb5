//! Request frames as the servers read them: the full decoding every request goes through, and
//! the in-place readings of the hottest ones, which must agree with it.

use lockbox_proto::Request;
use lockbox_proto::kms::{DecryptCall, KmsRequest};
use lockbox_proto::lockbox::{GetPayloadBytes, GetPayloadRef, LockboxRequest};
use lockbox_rpc::server::{decode_request, request_id};

/// A frame body sent to lockboxd.
pub(crate) fn lockbox_request(body: &[u8]) {
    let full = decoded::<LockboxRequest>(body);
    if let Some((id, bytes)) = GetPayloadBytes::parse(body) {
        // Ids read as bytes are compared with the connection's last read; ids that are not
        // text are no GetPayload, and the full decoding refuses them too.
        let Some(text) = bytes.as_text() else {
            assert!(full.is_none(), "ids not text, decoded in full as {full:?}");
            assert!(GetPayloadRef::parse(body).is_none());
            return;
        };
        let Some(Request {
            id: full_id,
            on_behalf_of: None,
            body:
                LockboxRequest::GetPayload {
                    secret_id,
                    version_id,
                },
        }) = &full
        else {
            panic!("read in place as GetPayload, decoded in full as {full:?}");
        };
        assert_eq!(id, *full_id);
        assert_eq!(text.secret_id, secret_id);
        assert_eq!(text.version_id, version_id.as_deref());
        assert_eq!(GetPayloadRef::parse(body), Some((id, text)));
    } else if let Some(Request {
        on_behalf_of: None,
        body: LockboxRequest::GetPayload { .. },
        ..
    }) = &full
    {
        panic!("decoded in full as GetPayload, refused in place: {full:?}");
    }
}

/// A frame body sent to lockbox-kms.
pub(crate) fn kms_request(body: &[u8]) {
    let full = decoded::<KmsRequest>(body);
    match (DecryptCall::parse(body), &full) {
        (
            Some(call),
            Some(Request {
                id,
                on_behalf_of,
                body:
                    KmsRequest::Decrypt {
                        key_id,
                        aad_context,
                        ciphertext,
                    },
            }),
        ) => {
            assert_eq!(call.id, *id);
            assert_eq!(call.decrypt.key_id, key_id);
            assert_eq!(call.decrypt.aad_context, aad_context.as_slice());
            assert_eq!(call.decrypt.ciphertext, ciphertext.as_slice());
            match (&call.on_behalf_of, on_behalf_of) {
                (None, None) => {}
                (Some(relayed), Some(principal)) => {
                    assert_eq!(relayed.subject, principal.subject);
                    assert_eq!(relayed.groups, principal.groups);
                }
                (a, b) => panic!("principal read in place {a:?}, in full {b:?}"),
            }
        }
        (Some(call), _) => panic!("read in place as {call:?}, decoded in full as {full:?}"),
        (
            None,
            Some(Request {
                body: KmsRequest::Decrypt { .. },
                ..
            }),
        ) => panic!("decoded in full as Decrypt, refused in place: {full:?}"),
        (None, _) => {}
    }
}

/// The full decoding; a frame that does not decode is answered with the id it starts with.
fn decoded<B: serde::de::DeserializeOwned + serde::Serialize>(body: &[u8]) -> Option<Request<B>> {
    match decode_request::<B>(body) {
        Ok(request) => {
            // What decodes re-encodes to a frame that decodes to the same request.
            let again = decode_request::<B>(&crate::frame_body(&request))
                .unwrap_or_else(|(_, e)| panic!("re-encoded request does not decode: {e:?}"));
            assert_eq!(again.id, request.id);
            Some(request)
        }
        Err((id, error)) => {
            assert_eq!(id, request_id(body));
            assert_eq!(error.code, lockbox_proto::ErrorCode::InvalidArgument);
            None
        }
    }
}
