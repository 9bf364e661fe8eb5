//! Criterion benches of the wire codec: encoding, splitting and decoding one request frame
//! (a KMS Decrypt of a 32-byte data key's ciphertext, relayed for a caller: the hot request),
//! both by the full decoder and read in place as `lockbox-kms` reads it; reading a payload
//! answer (the hot answer) decoded into owned values and in place, as the client reads it;
//! and dropping a plaintext, which wipes it.
#![allow(clippy::unwrap_used)] // a bench that cannot set up should abort
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
use lockbox_proto::frame::{self, DEFAULT_MAX_FRAME};
use lockbox_proto::kms::{DecryptCall, KmsRequest};
use lockbox_proto::lockbox::{LockboxResponse, PayloadEntry, PayloadHead, PayloadValue};
use lockbox_proto::payload::PayloadLayout;
use lockbox_proto::{Principal, Request, Response, SecretBytes, Wiping};

fn request() -> Request<KmsRequest> {
    Request {
        id: 123_456,
        on_behalf_of: Some(Principal {
            subject: "user:alice".into(),
            groups: vec!["group:alice".into()],
        }),
        body: KmsRequest::Decrypt {
            key_id: "abj01k82q5kevjajpei9".into(),
            aad_context: b"lockbox dek e6q01k82q5kevjajpei9".to_vec(),
            ciphertext: vec![7u8; 82],
        },
    }
}

fn bench(c: &mut Criterion) {
    let req = request();
    let mut buf = Vec::with_capacity(256);
    frame::encode(&req, &mut buf, DEFAULT_MAX_FRAME).unwrap();
    let encoded = buf.clone();
    let mut group = c.benchmark_group("frame_kms_decrypt_request");
    group.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            frame::encode(black_box(&req), &mut buf, DEFAULT_MAX_FRAME).unwrap();
        })
    });
    group.bench_function("split_and_decode", |b| {
        b.iter(|| {
            let (_, body) = frame::split(black_box(&encoded), DEFAULT_MAX_FRAME)
                .unwrap()
                .unwrap();
            frame::decode::<Request<KmsRequest>>(body).unwrap()
        })
    });
    group.bench_function("split_and_read_in_place", |b| {
        b.iter(|| {
            let (_, body) = frame::split(black_box(&encoded), DEFAULT_MAX_FRAME)
                .unwrap()
                .unwrap();
            DecryptCall::parse(body).unwrap()
        })
    });
    group.finish();
}

/// A payload answer's frame body: one 64-byte text entry, as the load generator writes.
fn payload_answer() -> Vec<u8> {
    postcard::to_allocvec(&Response {
        id: 123_456,
        result: Ok::<_, lockbox_proto::Error>(LockboxResponse::Payload {
            secret_id: "e6q01k82q5kevjajpei9".into(),
            version_id: "e6q01k82q5kevjajpeia".into(),
            entries: vec![PayloadEntry {
                key: "k0".into(),
                value: PayloadValue::Text(SecretBytes::new(vec![b'v'; 64])),
            }],
        }),
    })
    .unwrap()
}

/// The client's side of a payload read, and the head of the answer the daemon writes.
fn payload(c: &mut Criterion) {
    let body = payload_answer();
    let mut group = c.benchmark_group("payload_answer");
    group.bench_function("decode_owned", |b| {
        b.iter(|| frame::decode::<Response<LockboxResponse>>(black_box(&body)).unwrap())
    });
    group.bench_function("copy_and_read_in_place", |b| {
        b.iter(|| {
            let mut copy = Wiping::new(Vec::with_capacity(body.len()));
            copy.extend_wiped(black_box(&body));
            let layout = PayloadLayout::parse(&copy).unwrap();
            (copy, layout)
        })
    });
    let mut out = Vec::with_capacity(256);
    group.bench_function("append_head", |b| {
        b.iter(|| {
            out.clear();
            PayloadHead {
                secret_id: black_box("e6q01k82q5kevjajpei9"),
                version_id: black_box("e6q01k82q5kevjajpeia"),
            }
            .append_response(black_box(123_456), &mut out);
        })
    });
    group.finish();
}

/// Every value of a new version reaches lockboxd as `SecretBytes` and ends dropped: the wipe
/// and the free.
fn wipe(c: &mut Criterion) {
    let mut group = c.benchmark_group("secret_bytes_drop");
    for len in [64, 4096] {
        group.bench_function(len.to_string(), |b| {
            b.iter_batched(
                || SecretBytes::new(vec![7; len]),
                drop,
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench, payload, wipe);
criterion_main!(benches);
