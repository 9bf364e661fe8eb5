//! Raw connections, for tests that speak the wire protocol themselves: bad input, peers that
//! never read, connections held open.

use lockbox_client::proto::frame;
use lockbox_client::proto::hello::{Hello, HelloReply, Service};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Reads one frame body from a blocking stream; `None` when the server closed.
pub fn read_frame(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// A connection that has sent nothing yet; reads give up after ten seconds.
pub fn raw(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends a hello for `service` on a new connection and returns the server's reply.
pub fn hello(socket: &Path, service: Service) -> (UnixStream, HelloReply) {
    let mut s = raw(socket);
    let mut buf = Vec::new();
    frame::encode(
        &Hello::new(service, "test"),
        &mut buf,
        frame::DEFAULT_MAX_FRAME,
    )
    .unwrap();
    // A server over its connection cap answers without reading the hello.
    let _ = s.write_all(&buf);
    let reply: HelloReply = frame::decode(&read_frame(&mut s).unwrap()).unwrap();
    (s, reply)
}

/// A connection to `service` that has completed the hello.
pub fn connected_to(socket: &Path, service: Service) -> UnixStream {
    let (s, reply) = hello(socket, service);
    reply.unwrap();
    s
}

/// Whether the server closed `stream` (or it failed).
pub fn closed(stream: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(stream.read(&mut b), Ok(0) | Err(_))
}

/// Sends one request to lockbox-kms on a new connection, as this process or relayed for
/// `on_behalf_of`, and returns its answer.
pub fn kms_call(
    socket: &Path,
    on_behalf_of: Option<lockbox_client::proto::Principal>,
    body: lockbox_client::proto::kms::KmsRequest,
) -> Result<lockbox_client::proto::kms::KmsResponse, lockbox_client::proto::Error> {
    use lockbox_client::proto::{Request, Response};
    let mut s = connected_to(socket, Service::Kms);
    let mut buf = Vec::new();
    let request = Request {
        id: 1,
        on_behalf_of,
        body,
    };
    frame::encode(&request, &mut buf, frame::DEFAULT_MAX_FRAME).unwrap();
    s.write_all(&buf).unwrap();
    let response: Response<lockbox_client::proto::kms::KmsResponse> =
        frame::decode(&read_frame(&mut s).unwrap()).unwrap();
    response.result
}
