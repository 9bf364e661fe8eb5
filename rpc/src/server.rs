//! The accept loop: one task per connection, a hello first, then request frames answered by a
//! [`Handler`]. Responses to everything that arrived in one read go back in one write.
//!
//! A connection's identity lapses: at its maximum age (by the handler's clock), or when the
//! handler says its session ended ([`Next::Close`]). Every request already received from
//! then on is refused with `Unauthenticated`, so none of them runs, and the connection
//! closes; clients open a new one and send them again (`redial`).
//!
//! The listener and the shutdown signal come from the caller, so tests start a real server on
//! a temp socket and stop it cleanly. A semaphore caps connections; on shutdown every
//! connection finishes the requests it has read, flushes its answers and closes, and
//! [`serve`] returns when all have.

use crate::connection::{FrameReader, ReadError};
use crate::peer::PeerCred;
use crate::stream::Stream;
use lockbox_proto::frame::{self, FrameError, FrameWriter};
use lockbox_proto::hello::{self, Hello, HelloPrefix, HelloReply, ServerInfo, Service};
use lockbox_proto::{Error, ErrorCode, Request, Response, Wiping};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Limits of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest frame body accepted or sent.
    pub max_frame: u32,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a new connection may take to send its hello.
    pub hello_timeout: Duration,
    /// Seconds, by the handler's clock, a connection acts as the identity it was opened
    /// with. The first request after that is refused with `Unauthenticated` and the
    /// connection closed; the client reconnects, and the kernel reports its credentials
    /// afresh. Bounds how long a process keeps the roles of a group it has since dropped.
    pub max_connection_age: u64,
}

/// Connection lifetime unless configured, seconds.
pub const DEFAULT_MAX_CONNECTION_AGE: u64 = 900;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            hello_timeout: Duration::from_secs(10),
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
        }
    }
}

/// A service behind the accept loop.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state: who the peer is.
    type Session: Send + Sync + 'static;

    /// The service this server provides; a hello naming another is refused.
    fn service(&self) -> Service;

    /// Identifies a peer whose hello was accepted. An error is sent back and the connection
    /// closed.
    fn open(&self, peer: PeerCred) -> Result<Self::Session, Error>;

    /// The subject a session acts as, reported back in the hello reply.
    fn subject(&self, session: &Self::Session) -> String;

    /// Now, in Unix seconds, by the service's clock (a test clock moves connection ages
    /// too).
    fn now(&self) -> i64 {
        crate::clock::Clock::now(&crate::clock::SystemClock)
    }

    /// Answers one request frame body by appending exactly one response frame to `out`
    /// (see [`respond`] and [`decode_request`]), and says whether the connection goes on.
    fn call(
        &self,
        session: &Self::Session,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> impl Future<Output = Next> + Send;
}

/// What becomes of a connection after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Next {
    /// Read the next request.
    Continue,
    /// Send the answers so far and close: the session may no longer act (its identity was
    /// revoked, its token expired or its lifetime ended). Requests already received after
    /// this one are dropped unanswered and never run.
    Close,
}

/// A service's error, as its server answers it: a stable code, and the error's own message.
/// Each service implements it once for its error type, in its front-end.
pub trait AnswerError: std::fmt::Display {
    /// The code clients branch on.
    fn code(&self) -> ErrorCode;

    /// The error as the wire carries it.
    fn answer(&self) -> Error {
        Error::new(self.code(), self.to_string())
    }
}

/// The id of a request frame (0 when even that is unreadable), to answer it without decoding
/// the rest.
pub fn request_id(body: &[u8]) -> u64 {
    postcard::take_from_bytes::<u64>(body).map_or(0, |(id, _)| id)
}

/// Decodes a request frame. When that fails, returns the id (0 when even that is unreadable)
/// and an `InvalidArgument` error to answer with.
pub fn decode_request<B: DeserializeOwned>(body: &[u8]) -> Result<Request<B>, (u64, Error)> {
    frame::decode::<Request<B>>(body).map_err(|e| {
        (
            request_id(body),
            Error::new(
                ErrorCode::InvalidArgument,
                format!("unreadable request: {e}"),
            ),
        )
    })
}

/// Appends the response frame for request `id`. A response too large for a frame is replaced
/// by a `ResourceExhausted` error.
pub fn respond<B: Serialize>(out: &mut Vec<u8>, id: u64, result: Result<B, Error>, max: u32) {
    let response = Response { id, result };
    if let Err(e) = frame::encode(&response, out, max) {
        respond_too_large(out, id, &e, max);
    }
}

/// Appends the response frame for request `id` whose body is what `head` appends (the
/// encoding of `Response { id, result: Ok(..) }` up to some field) followed by what `tail`
/// appends (the encoding of the answer's remaining fields); see [`FrameWriter`]. Both must
/// grow the buffer with `reserve_wiped`. If `tail` fails, nothing is appended and its error is
/// returned, to be answered instead. A response too large for a frame is replaced by a
/// `ResourceExhausted` error.
pub fn respond_with<E>(
    out: &mut Vec<u8>,
    id: u64,
    max: u32,
    head: impl FnOnce(&mut Vec<u8>),
    tail: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let written = {
        let mut frame = FrameWriter::begin(out);
        head(frame.body());
        tail(frame.body())?;
        frame.finish(max)
    };
    if let Err(e) = written {
        respond_too_large(out, id, &e, max);
    }
    Ok(())
}

fn respond_too_large(out: &mut Vec<u8>, id: u64, e: &FrameError, max: u32) {
    let fallback: Response<()> = Response {
        id,
        result: Err(Error::new(
            ErrorCode::ResourceExhausted,
            format!("response could not be sent: {e}"),
        )),
    };
    // A short error always fits in a frame and always encodes.
    if let Err(e) = frame::encode(&fallback, out, max) {
        tracing::error!(error = %e, "could not encode an error response");
    }
}

/// Serves `listener` until `shutdown` completes, then waits for open connections to finish.
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let handler = handler.clone();
        let config = config.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            if let Err(e) = connection(stream, &*handler, &config, stop).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

async fn connection<H: Handler>(
    stream: UnixStream,
    handler: &H,
    config: &ServerConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), ReadError> {
    let peer = PeerCred::of(&stream)?;
    let (read, mut write) = Stream::new(stream)?.into_split();
    let mut reader = FrameReader::new(read, config.max_frame);
    // Answers may carry plaintexts: wiped once written, and the buffer when it is dropped.
    let mut out = Wiping::new(Vec::with_capacity(64 * 1024));

    let hello = match tokio::time::timeout(config.hello_timeout, reader.next()).await {
        Ok(Ok(Some(body))) => check_hello(body, handler.service()),
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => Err(Error::new(ErrorCode::InvalidArgument, e.to_string())),
        Err(_) => Err(Error::new(
            ErrorCode::InvalidArgument,
            "no hello within the time limit",
        )),
    };
    let session = hello.and_then(|()| handler.open(peer));
    let reply: HelloReply = match &session {
        Ok(s) => Ok(ServerInfo {
            version: hello::PROTOCOL_VERSION,
            service: handler.service(),
            max_frame: config.max_frame,
            subject: handler.subject(s),
        }),
        Err(e) => Err(e.clone()),
    };
    encode_or_log(&reply, &mut out, config.max_frame);
    write.write_all(&out).await?;
    out.clear();
    let Ok(session) = session else {
        return Ok(());
    };
    let expires_at = handler
        .now()
        .saturating_add_unsigned(config.max_connection_age);

    // One wait for the stop signal for the connection's whole life: polling a registered
    // waiter is cheaper than registering and dropping a new one around every read.
    let mut stop_waiter = stop.clone();
    let stopped = stop_waiter.changed();
    tokio::pin!(stopped);
    loop {
        if handler.now() >= expires_at {
            let why = format!(
                "this connection reached its maximum age ({} s); reconnect",
                config.max_connection_age
            );
            return close(&mut reader, &mut write, &mut out, why, config.max_frame).await;
        }
        loop {
            match reader.try_next() {
                Ok(Some(body)) => {
                    if handler.call(&session, body, &mut out).await == Next::Close {
                        let why = "not run: an earlier request on this connection ended its \
                                   session; reconnect";
                        return close(&mut reader, &mut write, &mut out, why, config.max_frame)
                            .await;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be resynchronised after a bad length prefix: answer
                    // and close.
                    let error = frame_error(&e);
                    respond::<()>(&mut out, 0, Err(error), config.max_frame);
                    write.write_all(&out).await?;
                    return Err(e.into());
                }
            }
        }
        if !out.is_empty() {
            write.write_all(&out).await?;
            out.wipe_and_clear();
        }
        if *stop.borrow() {
            return Ok(());
        }
        tokio::select! {
            // Reads first: the stop signal is polled only while no bytes are waiting.
            biased;
            read = reader.fill() => {
                if read? == 0 {
                    return if reader.has_partial_frame() {
                        Err(ReadError::Truncated)
                    } else {
                        Ok(())
                    };
                }
            }
            _ = &mut stopped => return Ok(()),
        }
    }
}

/// Ends a session: answers every request already received with `Unauthenticated` and
/// `why`, so none of them runs and the client knows it may send them again on a new
/// connection, sends what is pending and closes.
async fn close<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    write: &mut crate::stream::WriteHalf,
    out: &mut Wiping,
    why: impl Into<String>,
    max_frame: u32,
) -> Result<(), ReadError> {
    let refusal = Error::new(ErrorCode::Unauthenticated, why);
    while let Ok(Some(body)) = reader.try_next() {
        respond::<()>(out, request_id(body), Err(refusal.clone()), max_frame);
    }
    write.write_all(out).await?;
    out.wipe_and_clear();
    Ok(())
}

fn check_hello(body: &[u8], service: Service) -> Result<(), Error> {
    let invalid = |m: String| Error::new(ErrorCode::InvalidArgument, m);
    let (prefix, _) = postcard::take_from_bytes::<HelloPrefix>(body)
        .map_err(|_| invalid("not a lockbox protocol hello".into()))?;
    if prefix.magic != hello::MAGIC {
        return Err(invalid("not a lockbox protocol hello (bad magic)".into()));
    }
    if prefix.version != hello::PROTOCOL_VERSION {
        return Err(invalid(format!(
            "protocol version {} is not supported; {} speaks version {}",
            prefix.version,
            service.process_name(),
            hello::PROTOCOL_VERSION
        )));
    }
    let hello: Hello = frame::decode(body).map_err(|e| invalid(format!("bad hello: {e}")))?;
    if hello.service != service {
        return Err(Error::new(
            ErrorCode::FailedPrecondition,
            format!(
                "this socket is served by {}, not {}",
                service.process_name(),
                hello.service.process_name()
            ),
        ));
    }
    Ok(())
}

fn frame_error(e: &FrameError) -> Error {
    match e {
        FrameError::TooLarge { .. } => Error::new(ErrorCode::ResourceExhausted, e.to_string()),
        _ => Error::new(ErrorCode::InvalidArgument, e.to_string()),
    }
}

fn encode_or_log<T: Serialize>(message: &T, out: &mut Vec<u8>, max: u32) {
    if let Err(e) = frame::encode(message, out, max) {
        tracing::error!(error = %e, "could not encode a hello reply");
    }
}
