//! Well-formed inputs for every target, to start a fuzzer from: one of each kind of frame the
//! targets read, so the fuzzer begins past the shallow checks. `lockbox-fuzz-seeds DIR` writes
//! them as `DIR/<target>/seed-<n>`.

use lockbox_proto::hello::{Hello, HelloReply, ServerInfo, Service};
use lockbox_proto::kms::{KmsRequest, KmsResponse};
use lockbox_proto::lockbox::{
    AddVersion, GetPayloadRef, LockboxRequest, LockboxResponse, PayloadEntry, PayloadEntryChange,
    PayloadValue,
};
use lockbox_proto::{Principal, Request, Response, SecretBytes, frame};
use serde::Serialize;

/// The seeds of every target, by target name.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("frames", frames()),
        ("lockbox_request", lockbox_requests()),
        ("kms_request", kms_requests()),
        ("answers", answers()),
        ("token", tokens()),
        ("payload_json", payload_json()),
    ]
}

/// A whole frame, prefix included.
fn whole<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = frame::encode(value, &mut out, u32::MAX);
    out
}

fn frames() -> Vec<Vec<u8>> {
    let hello = whole(&Hello::new(Service::Lockbox, "lockbox-cli/0.1.0"));
    let reply: HelloReply = Ok(ServerInfo {
        version: 1,
        service: Service::Kms,
        max_frame: 1 << 20,
        subject: "user:alice".into(),
    });
    let reply = whole(&reply);
    // Limit byte, read-pattern byte, then the stream.
    let mut two = vec![255, 7];
    two.extend_from_slice(&hello);
    two.extend_from_slice(&reply);
    let mut cut = vec![1, 3];
    cut.extend_from_slice(&hello[..hello.len() - 2]);
    vec![two, cut, [vec![0, 0], hello].concat()]
}

fn get_payload(id: u64, version: Option<&str>) -> Vec<u8> {
    crate::frame_body(&Request {
        id,
        on_behalf_of: None,
        body: GetPayloadRef {
            secret_id: "e6q2ad0jd56ip8btrtd7",
            version_id: version,
        },
    })
}

fn lockbox_requests() -> Vec<Vec<u8>> {
    let add = LockboxRequest::AddVersion(AddVersion {
        secret_id: "e6q2ad0jd56ip8btrtd7".into(),
        description: "rotated".into(),
        payload_entries: vec![PayloadEntryChange {
            key: "password".into(),
            value: Some(PayloadValue::Text(SecretBytes::new(b"hunter2".to_vec()))),
        }],
        base_version_id: None,
    });
    vec![
        get_payload(1, None),
        get_payload(u64::MAX, Some("e6qv2bcc1qs1t5lbn4fs")),
        crate::frame_body(&Request {
            id: 7,
            on_behalf_of: None,
            body: add,
        }),
    ]
}

fn kms_requests() -> Vec<Vec<u8>> {
    let decrypt = |on_behalf_of| {
        crate::frame_body(&Request {
            id: 300,
            on_behalf_of,
            body: KmsRequest::Decrypt {
                key_id: "abj1e2mbpfkqamvmsd4e".into(),
                aad_context: b"e6q2ad0jd56ip8btrtd7".to_vec(),
                ciphertext: vec![0x5a; 60],
            },
        })
    };
    vec![
        decrypt(None),
        decrypt(Some(Principal {
            subject: "user:alice".into(),
            groups: vec!["group:ops".into(), "group:dev".into()],
        })),
        crate::frame_body(&Request {
            id: 2,
            on_behalf_of: None,
            body: KmsRequest::GetSymmetricKey {
                key_id: "abj1e2mbpfkqamvmsd4e".into(),
            },
        }),
    ]
}

fn answers() -> Vec<Vec<u8>> {
    let payload = Response {
        id: 9,
        result: Ok(LockboxResponse::Payload {
            secret_id: "e6q2ad0jd56ip8btrtd7".into(),
            version_id: "e6qv2bcc1qs1t5lbn4fs".into(),
            entries: vec![
                PayloadEntry {
                    key: "user".into(),
                    value: PayloadValue::Text(SecretBytes::new(b"admin".to_vec())),
                },
                PayloadEntry {
                    key: "cert.der".into(),
                    value: PayloadValue::Binary(SecretBytes::new(vec![0, 1, 2, 255])),
                },
            ],
        }),
    };
    let decrypted = Response {
        id: 10,
        result: Ok(KmsResponse::Decrypted {
            key_id: "abj1e2mbpfkqamvmsd4e".into(),
            version_id: "abjv6p5oq8gl5ou1o8c5".into(),
            plaintext: SecretBytes::new(vec![7; 32]),
        }),
    };
    let refused: Response<LockboxResponse> = Response {
        id: 11,
        result: Err(lockbox_proto::Error::new(
            lockbox_proto::ErrorCode::PermissionDenied,
            "no",
        )),
    };
    vec![
        crate::frame_body(&payload),
        crate::frame_body(&decrypted),
        crate::frame_body(&refused),
    ]
}

fn tokens() -> Vec<Vec<u8>> {
    // Header and claims as the CLI makes them, base64url without padding, and a signature.
    vec![
        b"eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImFqZWtleSJ9.eyJpc3MiOiJhamVzYSIsImF1ZCI6ImxvY2tib3hkIiwiaWF0IjoxLCJleHAiOjIsImp0aSI6IngifQ.c2lnbmF0dXJl".to_vec(),
        b"a.b.c".to_vec(),
    ]
}

fn payload_json() -> Vec<Vec<u8>> {
    vec![
        br#"[{"key":"user","text_value":"admin"},{"key":"bin","binary_value":"AAEC"}]"#.to_vec(),
        br#"[{"key":"a","text_value":"\u00e9\ud83d\ude00"}]"#.to_vec(),
        b"[]".to_vec(),
    ]
}
