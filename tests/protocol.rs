//! Bad input on the wire: garbage, oversized and truncated frames, unknown request tags,
//! wrong protocol versions, and ids that are not text. The server answers or closes, never
//! panics, and keeps serving other clients.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::frame;
use lockbox_client::proto::hello::{Hello, HelloPrefix, HelloReply, Service};
use lockbox_client::proto::{ErrorCode, Response};
use lockbox_tests::payload::{secret, set};
use lockbox_tests::wire::{closed, connected_to, raw, read_frame};
use lockbox_tests::{Daemon, Kms, KmsOptions};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A connection to lockbox-kms that has completed the hello.
fn connected(socket: &Path) -> UnixStream {
    connected_to(socket, Service::Kms)
}

async fn still_serves(kms: &Kms) {
    let c = kms.client().await;
    c.list_access_bindings(
        lockbox_client::proto::kms::ResourceRef::Root,
        Default::default(),
    )
    .await
    .unwrap();
}

fn hello_error(stream: &mut UnixStream) -> lockbox_client::proto::Error {
    let reply: HelloReply = frame::decode(&read_frame(stream).unwrap()).unwrap();
    reply.unwrap_err()
}

#[tokio::test]
async fn garbage_instead_of_a_hello_gets_an_error_and_a_close() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let mut s = raw(&kms.socket());
    s.write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x00])
        .unwrap();
    let err = hello_error(&mut s);
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(
        err.message.contains("not a lockbox protocol hello"),
        "{}",
        err.message
    );
    assert!(closed(&mut s));
    still_serves(&kms).await;
}

#[tokio::test]
async fn a_wrong_protocol_version_is_named_in_the_error() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let mut s = raw(&kms.socket());
    let mut hello = Hello::new(Service::Kms, "future-client");
    hello.prefix = HelloPrefix {
        magic: hello.prefix.magic,
        version: 99,
    };
    let mut buf = Vec::new();
    frame::encode(&hello, &mut buf, frame::DEFAULT_MAX_FRAME).unwrap();
    s.write_all(&buf).unwrap();
    let err = hello_error(&mut s);
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(
        err.message.contains("protocol version 99 is not supported"),
        "{}",
        err.message
    );
    assert!(closed(&mut s));

    let mut s = raw(&kms.socket());
    buf.clear();
    frame::encode(
        &Hello::new(Service::Lockbox, "lost"),
        &mut buf,
        frame::DEFAULT_MAX_FRAME,
    )
    .unwrap();
    s.write_all(&buf).unwrap();
    let err = hello_error(&mut s);
    assert_eq!(err.code, ErrorCode::FailedPrecondition);
    assert!(
        err.message.contains("served by lockbox-kms"),
        "{}",
        err.message
    );
    still_serves(&kms).await;
}

#[tokio::test]
async fn a_frame_announcing_4_gib_is_refused_before_allocation() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    // Before the hello…
    let mut s = raw(&kms.socket());
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let err = hello_error(&mut s);
    assert!(err.message.contains("exceeds the limit"), "{}", err.message);
    assert!(closed(&mut s));
    // …and after it.
    let mut s = connected(&kms.socket());
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let response: Response<()> = frame::decode(&read_frame(&mut s).unwrap()).unwrap();
    assert_eq!(response.id, 0);
    assert_eq!(
        response.result.unwrap_err().code,
        ErrorCode::ResourceExhausted
    );
    assert!(closed(&mut s));
    still_serves(&kms).await;
}

#[tokio::test]
async fn a_truncated_frame_does_not_stall_other_clients() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let mut stalled = connected(&kms.socket());
    // Announce 100 bytes, send 3, and keep the connection open.
    stalled.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    still_serves(&kms).await;
    // Then hang up mid-frame.
    drop(stalled);
    still_serves(&kms).await;
}

#[tokio::test]
async fn an_unknown_request_tag_gets_invalid_argument_and_the_connection_lives_on() {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    let mut s = connected(&kms.socket());
    // id 77, no on_behalf_of, then request variant 200 (no such tag).
    let mut body = postcard::to_allocvec(&77u64).unwrap();
    body.push(0); // None
    body.extend_from_slice(&postcard::to_allocvec(&200u32).unwrap());
    let mut buf = (body.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(&body);
    // And a frame whose id cannot even be read (a lone continuation byte).
    buf.extend_from_slice(&[0, 0, 0, 1, 0x80]);
    s.write_all(&buf).unwrap();

    let response: Response<()> = frame::decode(&read_frame(&mut s).unwrap()).unwrap();
    assert_eq!(response.id, 77);
    let err = response.result.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(
        err.message.contains("unreadable request"),
        "{}",
        err.message
    );
    let response: Response<()> = frame::decode(&read_frame(&mut s).unwrap()).unwrap();
    assert_eq!(response.id, 0);
    assert_eq!(
        response.result.unwrap_err().code,
        ErrorCode::InvalidArgument
    );

    // The same connection still answers a well-formed request.
    let request = lockbox_client::proto::Request {
        id: 78,
        on_behalf_of: None,
        body: lockbox_client::proto::kms::KmsRequest::ListAccessBindings {
            resource: lockbox_client::proto::kms::ResourceRef::Root,
            page: Default::default(),
        },
    };
    buf.clear();
    frame::encode(&request, &mut buf, frame::DEFAULT_MAX_FRAME).unwrap();
    s.write_all(&buf).unwrap();
    let response: Response<lockbox_client::proto::kms::KmsResponse> =
        frame::decode(&read_frame(&mut s).unwrap()).unwrap();
    assert_eq!(response.id, 78);
    response.result.unwrap();
}

#[tokio::test]
async fn random_garbage_gets_a_well_formed_answer_from_both_servers_and_panics_neither() {
    let mut kms = Kms::init(KmsOptions {
        enrol_daemon: true,
        ..KmsOptions::default()
    });
    kms.start();
    let mut daemon = Daemon::new(&kms, "");
    daemon.start();
    garbage_rounds(&kms.socket(), Service::Kms);
    garbage_rounds(&daemon.socket(), Service::Lockbox);
    still_serves(&kms).await;
    let c = daemon.client().await;
    c.list_clouds(lockbox_client::proto::common::Page::default())
        .await
        .unwrap();
    for (name, log) in [("lockbox-kms", kms.log()), ("lockboxd", daemon.log())] {
        assert!(!log.contains("panicked"), "{name} panicked:\n{log}");
    }
}

/// Sends random frames to `service` at `socket`, half of them in place of the hello and half
/// after it, and checks each gets one well-formed answer: a hello reply, or a response with
/// an id. A handler that panics leaves its input unanswered.
fn garbage_rounds(socket: &Path, service: Service) {
    // A fixed-seed xorshift keeps this deterministic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..200 {
        let greeted = round % 2 == 1;
        let mut s = if greeted {
            connected_to(socket, service)
        } else {
            raw(socket)
        };
        let len = (next() % 64) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Some rounds start like a request: a small id and a known tag, then garbage.
        if greeted && round % 4 == 1 && body.len() > 2 {
            body[0] = 7;
            body[1] = 0;
            body[2] %= 40;
        }
        let mut frame_bytes = (body.len() as u32).to_be_bytes().to_vec();
        frame_bytes.extend_from_slice(&body);
        s.write_all(&frame_bytes).unwrap();
        let answer = read_frame(&mut s)
            .unwrap_or_else(|| panic!("{service:?} left round {round} ({body:?}) unanswered"));
        if greeted {
            let id = postcard::take_from_bytes::<u64>(&answer).map(|(id, _)| id);
            assert!(
                id.is_ok(),
                "round {round}: an answer without an id: {answer:?}"
            );
        } else {
            let reply = frame::decode::<HelloReply>(&answer);
            assert!(
                matches!(reply, Ok(Err(_))),
                "round {round}: garbage in place of a hello got {reply:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_payload_read_whose_ids_are_not_text_is_refused_like_any_unreadable_request() {
    let (_kms, daemon) = Daemon::with_kms("");
    let op = daemon
        .client()
        .await
        .create_secret(secret("s", vec![set("k", "v")]))
        .await
        .unwrap();
    let mut s = connected_to(&daemon.socket(), Service::Lockbox);
    let request = |id: u64, secret_id: &str| {
        let mut bytes = Vec::new();
        let body = lockbox_client::proto::lockbox::GetPayloadRef {
            secret_id,
            version_id: None,
        };
        let request = lockbox_client::proto::Request {
            id,
            on_behalf_of: None,
            body,
        };
        frame::encode(&request, &mut bytes, frame::DEFAULT_MAX_FRAME).unwrap();
        bytes
    };
    let answer = |s: &mut UnixStream| -> Response<lockbox_client::proto::lockbox::LockboxResponse> {
        frame::decode(&read_frame(s).unwrap()).unwrap()
    };
    // A read the connection then remembers, the same id with its last byte not text, and the
    // first read again.
    let good = request(1, &op.resource_id);
    let mut bad = request(2, &op.resource_id);
    let last = bad.len() - 2; // the id's last byte, before `version_id: None`
    bad[last] = 0xff;
    s.write_all(&[good.clone(), bad, request(3, &op.resource_id)].concat())
        .unwrap();
    let first = answer(&mut s);
    assert_eq!(first.id, 1);
    assert!(first.result.is_ok(), "{:?}", first.result);
    let refused = answer(&mut s);
    assert_eq!(refused.id, 2);
    let err = refused.result.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(
        err.message.contains("unreadable request"),
        "{}",
        err.message
    );
    let again = answer(&mut s);
    assert_eq!(again.id, 3);
    assert!(again.result.is_ok(), "{:?}", again.result);
}
