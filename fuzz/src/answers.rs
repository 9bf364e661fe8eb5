//! Answer frames as the clients read them, lockboxd included (it reads the KMS's answers):
//! the payload answer and the KMS's decrypted plaintext are read in place and must agree with
//! the full decoding of the same frame.

use lockbox_proto::kms::{KmsResponse, decrypted_plaintext};
use lockbox_proto::lockbox::{LockboxResponse, PayloadValue};
use lockbox_proto::payload::{PayloadLayout, PayloadValueRef};
use lockbox_proto::{Response, frame};

/// A frame body answering lockboxd's or lockbox-kms's client.
pub(crate) fn answers(body: &[u8]) {
    payload(body);
    decrypted(body);
}

fn payload(body: &[u8]) {
    let full = frame::decode::<Response<LockboxResponse>>(body).ok();
    let Some((id, layout)) = PayloadLayout::parse(body) else {
        if let Some(
            response @ Response {
                result: Ok(LockboxResponse::Payload { secret_id, .. }),
                ..
            },
        ) = &full
        {
            // The layout may refuse a frame whose varints are not the shortest (the client
            // then decodes it in full), but nothing a server writes.
            assert!(
                !canonical(response, body),
                "payload of {secret_id:?} decoded in full, refused in place"
            );
        }
        return;
    };
    let Some(Response {
        id: full_id,
        result:
            Ok(LockboxResponse::Payload {
                secret_id,
                version_id,
                entries,
            }),
    }) = &full
    else {
        panic!("read in place as a payload, decoded in full as {full:?}");
    };
    assert_eq!(id, *full_id);
    assert_eq!(layout.secret_id(body), secret_id);
    assert_eq!(layout.version_id(body), version_id);
    assert_eq!(layout.len(), entries.len());
    let in_place: Vec<_> = layout.entries(body).collect();
    assert_eq!(in_place.len(), entries.len());
    for (got, want) in in_place.iter().zip(entries) {
        assert_eq!(got.key, want.key);
        match (got.value, &want.value) {
            (PayloadValueRef::Text(a), PayloadValue::Text(b))
            | (PayloadValueRef::Binary(a), PayloadValue::Binary(b)) => {
                assert_eq!(a, b.expose())
            }
            (a, _) => panic!("entry {:?}: kinds differ ({:?})", got.key, a.bytes().len()),
        }
        // A lookup by key finds the first entry of that key.
        let first = entries
            .iter()
            .find(|e| e.key == got.key)
            .map(|e| match &e.value {
                PayloadValue::Text(b) | PayloadValue::Binary(b) => b.expose(),
                _ => &[],
            });
        assert_eq!(layout.get(body, got.key).map(|v| v.bytes()), first);
    }
}

fn decrypted(body: &[u8]) {
    let full = frame::decode::<Response<KmsResponse>>(body).ok();
    match (decrypted_plaintext(body), &full) {
        (
            Some((id, range)),
            Some(Response {
                id: full_id,
                result: Ok(KmsResponse::Decrypted { plaintext, .. }),
            }),
        ) => {
            assert_eq!(id, *full_id);
            assert_eq!(&body[range], plaintext.expose());
        }
        (Some(_), _) => panic!("read in place as a plaintext, decoded in full as {full:?}"),
        (
            None,
            Some(
                response @ Response {
                    result: Ok(KmsResponse::Decrypted { .. }),
                    ..
                },
            ),
        ) => assert!(
            !canonical(response, body),
            "decoded in full as a plaintext, refused in place"
        ),
        (None, _) => {}
    }
}

/// Whether `body` is exactly the encoding of `value`, as a server writes it (postcard also
/// reads varints padded with continuation bytes, which no encoder writes).
fn canonical<T: serde::Serialize>(value: &T, body: &[u8]) -> bool {
    crate::frame_body(value) == body
}
