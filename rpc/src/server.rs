//! The accept loop: one task per connection, a hello first, then request frames answered by a
//! [`Handler`]. Responses to everything that arrived in one read go back in one write.
//!
//! A connection's identity lapses: at its maximum age (by the handler's clock), or when the
//! handler says its session ended ([`Next::Close`]). Every request already received from
//! then on is refused with `Unauthenticated`, so none of them runs, and the connection
//! closes; clients open a new one and send them again (`redial`).
//!
//! What one peer can hold is bounded. Connections are capped in all and per Unix user; past
//! either cap a new connection gets an error in place of its hello reply and is closed at
//! once, so a user at the cap cannot keep others waiting in the listen backlog. Answers wait
//! for a write once [`MAX_PENDING_OUTPUT`] bytes are pending, and no more requests are read
//! until the peer has taken them, so a peer that pipelines without reading pins a bounded
//! buffer, not one answer per request. A connection that stays silent, or leaves its answers
//! unread, for the idle timeout is closed; buffers grown by a burst shrink back after it.
//! A connection lets the others run after every [`YIELD_EVERY`] requests of one read, so a
//! peer that pipelines thousands of costly requests (full listing pages) in one write holds a
//! worker thread for a few of them at a time, not for all.
//!
//! The listener and the shutdown signal come from the caller, so tests start a real server on
//! a temp socket and stop it cleanly. On shutdown every connection finishes the requests it
//! has read, flushes its answers and closes, and [`serve`] returns when all have.

use crate::connection::{FrameReader, ReadError};
use crate::peer::PeerCred;
use crate::stream::{Stream, WriteHalf};
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
    /// Connections served at once; further ones are refused with `ResourceExhausted`.
    pub max_connections: usize,
    /// Connections one Unix user may hold at once; further ones are refused with
    /// `ResourceExhausted`.
    pub max_connections_per_user: usize,
    /// How long a new connection may take to send its hello.
    pub hello_timeout: Duration,
    /// Seconds, by the handler's clock, a connection acts as the identity it was opened
    /// with. The first request after that is refused with `Unauthenticated` and the
    /// connection closed; the client reconnects, and the kernel reports its credentials
    /// afresh. Bounds how long a process keeps the roles of a group it has since dropped.
    pub max_connection_age: u64,
    /// How long a connection may send nothing, or leave answers unread, before it is closed.
    /// A silent connection closes between this and a quarter more.
    pub idle_timeout: Duration,
}

/// Connection lifetime unless configured, seconds.
pub const DEFAULT_MAX_CONNECTION_AGE: u64 = 900;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            max_connections_per_user: 256,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
        }
    }
}

/// Answer bytes a connection may hold before it waits for the peer to read them (and so
/// stops reading requests); an answer may take it past this by at most one frame.
pub const MAX_PENDING_OUTPUT: usize = 128 * 1024;

/// Requests a connection answers from one read before it lets other tasks run.
pub const YIELD_EVERY: u32 = 32;

/// Capacity of a connection's answer buffer; after a burst it shrinks back to this.
const OUTPUT_CAPACITY: usize = 64 * 1024;

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

    /// The request series the server keeps for this service; `None` (the default) when
    /// metrics are off, and then calls are not even timed.
    fn meter(&self) -> Option<&crate::metrics::RequestMeter> {
        None
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
    let seats = Arc::new(Seats::new(config.max_connections_per_user));
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
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
        let peer = match PeerCred::of(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read a new connection's credentials");
                continue;
            }
        };
        let name = handler.service().process_name();
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(uid = peer.uid, "connection refused: all connections in use");
            refuse(
                &stream,
                format!(
                    "{name} is serving its limit of {} connections; try again later",
                    config.max_connections
                ),
                config.max_frame,
            );
            continue;
        };
        let Some(seat) = seats.take(peer.uid) else {
            tracing::warn!(
                uid = peer.uid,
                "connection refused: the user's connections are all in use"
            );
            refuse(
                &stream,
                format!(
                    "uid {} already holds {} connections to {name}, its limit; close some",
                    peer.uid, config.max_connections_per_user
                ),
                config.max_frame,
            );
            continue;
        };
        let handler = handler.clone();
        let config = config.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            if let Err(e) = connection(stream, peer, &*handler, &config, stop).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((seat, permit));
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Answers a connection over a cap with `why` in place of its hello reply, without waiting
/// for its hello or for it to read, and closes it. The reply is small and the socket new, so
/// one non-blocking write takes it whole; if not, the peer sees the connection close.
fn refuse(stream: &UnixStream, why: String, max_frame: u32) {
    let reply: HelloReply = Err(Error::new(ErrorCode::ResourceExhausted, why));
    let mut out = Vec::new();
    encode_or_log(&reply, &mut out, max_frame);
    let _ = stream.try_write(&out);
}

/// Connections held per Unix user, capped.
struct Seats {
    held: std::sync::Mutex<std::collections::HashMap<u32, usize>>,
    limit: usize,
}

impl Seats {
    fn new(limit: usize) -> Self {
        Self {
            held: Default::default(),
            limit,
        }
    }

    /// A seat for one more connection of `uid`, or `None` at its cap.
    fn take(self: &Arc<Self>, uid: u32) -> Option<Seat> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(uid).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Seat {
            seats: self.clone(),
            uid,
        })
    }
}

/// One connection's place in its user's count, given back when dropped.
struct Seat {
    seats: Arc<Seats>,
    uid: u32,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut held = self.seats.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

/// Writes all of `out` and clears it (wiping what it held), giving up with `TimedOut` when
/// the peer leaves it unread for `timeout`. The common case, a socket with room, is a plain
/// write with no timer.
async fn send(write: &mut WriteHalf, out: &mut Wiping, timeout: Duration) -> std::io::Result<()> {
    let mut written = 0;
    while written < out.len() {
        match write.try_write(&out[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::time::timeout(timeout, write.write_all(&out[written..]))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the peer left its answers unread past the idle timeout",
                        )
                    })??;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    out.wipe_and_clear();
    if out.capacity() > 2 * OUTPUT_CAPACITY {
        // A burst grew the buffer: give the memory back (the old buffer is wiped on drop).
        *out = Wiping::new(Vec::with_capacity(OUTPUT_CAPACITY));
    }
    Ok(())
}

async fn connection<H: Handler>(
    stream: UnixStream,
    peer: PeerCred,
    handler: &H,
    config: &ServerConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), ReadError> {
    let (read, mut write) = Stream::new(stream)?.into_split();
    let mut reader = FrameReader::new(read, config.max_frame);
    // Answers may carry plaintexts: wiped once written, and the buffer when it is dropped.
    let mut out = Wiping::new(Vec::with_capacity(OUTPUT_CAPACITY));

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
    send(&mut write, &mut out, config.idle_timeout).await?;
    let Ok(session) = session else {
        return Ok(());
    };
    let expires_at = handler
        .now()
        .saturating_add_unsigned(config.max_connection_age);
    let meter = handler.meter();
    let _open = meter.map(|m| m.connection());

    // One wait for the stop signal for the connection's whole life: polling a registered
    // waiter is cheaper than registering and dropping a new one around every read.
    let mut stop_waiter = stop.clone();
    let stopped = stop_waiter.changed();
    tokio::pin!(stopped);
    // Likewise one idle timer, firing every quarter of the idle timeout: a request only
    // counts a batch, and the connection closes after four quiet quarters in a row.
    let quarter = config.idle_timeout / 4;
    let idle = tokio::time::sleep(quarter);
    tokio::pin!(idle);
    let (mut batches, mut seen, mut quiet) = (0u64, 0u64, 0u32);
    loop {
        if handler.now() >= expires_at {
            let why = format!(
                "this connection reached its maximum age ({} s); reconnect",
                config.max_connection_age
            );
            return close(&mut reader, &mut write, &mut out, why, config).await;
        }
        // Requests of this read answered since the connection last let other tasks run.
        let mut run = 0u32;
        loop {
            match reader.try_next() {
                Ok(Some(body)) => {
                    let timing = meter.map(|m| (m.start(body), out.len()));
                    let next = handler.call(&session, body, &mut out).await;
                    if let (Some(meter), Some((timing, mark))) = (meter, timing) {
                        meter.finish(timing, &out[mark..]);
                    }
                    if next == Next::Close {
                        let why = "not run: an earlier request on this connection ended its \
                                   session; reconnect";
                        return close(&mut reader, &mut write, &mut out, why, config).await;
                    }
                    if out.len() >= MAX_PENDING_OUTPUT {
                        // Read no further until the peer takes these.
                        send(&mut write, &mut out, config.idle_timeout).await?;
                    }
                    run += 1;
                    if run == YIELD_EVERY {
                        // A handler that answers without waiting never gives the worker
                        // back by itself; a long pipelined batch must not keep it.
                        run = 0;
                        tokio::task::yield_now().await;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be resynchronised after a bad length prefix: answer
                    // and close.
                    let error = frame_error(&e);
                    respond::<()>(&mut out, 0, Err(error), config.max_frame);
                    send(&mut write, &mut out, config.idle_timeout).await?;
                    return Err(e.into());
                }
            }
        }
        if !out.is_empty() {
            send(&mut write, &mut out, config.idle_timeout).await?;
        }
        reader.shrink();
        if *stop.borrow() {
            return Ok(());
        }
        batches += 1;
        loop {
            tokio::select! {
                // Reads first: the stop signal and the timer are polled only while no bytes
                // are waiting.
                biased;
                read = reader.fill() => {
                    if read? == 0 {
                        return if reader.has_partial_frame() {
                            Err(ReadError::Truncated)
                        } else {
                            Ok(())
                        };
                    }
                    break;
                }
                _ = &mut stopped => return Ok(()),
                () = &mut idle => {
                    quiet = if batches == seen { quiet + 1 } else { 0 };
                    seen = batches;
                    if quiet >= 4 {
                        tracing::debug!("closing an idle connection");
                        return Ok(());
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + quarter);
                }
            }
        }
    }
}

/// Ends a session: answers every request already received with `Unauthenticated` and
/// `why`, so none of them runs and the client knows it may send them again on a new
/// connection, sends what is pending and closes.
async fn close<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    write: &mut WriteHalf,
    out: &mut Wiping,
    why: impl Into<String>,
    config: &ServerConfig,
) -> Result<(), ReadError> {
    let refusal = Error::new(ErrorCode::Unauthenticated, why);
    while let Ok(Some(body)) = reader.try_next() {
        respond::<()>(
            out,
            request_id(body),
            Err(refusal.clone()),
            config.max_frame,
        );
        if out.len() >= MAX_PENDING_OUTPUT {
            send(write, out, config.idle_timeout).await?;
        }
    }
    send(write, out, config.idle_timeout).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{CallError, Channel};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    /// Answers a request whose body is a size with that many bytes, counting the calls.
    struct Sized {
        calls: AtomicUsize,
        /// The number of calls before the last request for [`MARKER`] bytes.
        marked: AtomicUsize,
    }

    /// An answer size that notes when its request came.
    const MARKER: u32 = 3;

    impl Handler for Sized {
        type Session = ();

        fn service(&self) -> Service {
            Service::Lockbox
        }

        fn open(&self, _: PeerCred) -> Result<(), Error> {
            Ok(())
        }

        fn subject(&self, (): &()) -> String {
            "user:test".into()
        }

        async fn call(&self, (): &(), body: &[u8], out: &mut Vec<u8>) -> Next {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let request: Request<u32> = decode_request(body).unwrap();
            if request.body == MARKER {
                self.marked
                    .store(self.calls.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
            }
            let answer = vec![7u8; request.body as usize];
            respond(
                out,
                request.id,
                Ok::<_, Error>(answer),
                frame::DEFAULT_MAX_FRAME,
            );
            Next::Continue
        }
    }

    struct Running {
        path: std::path::PathBuf,
        handler: Arc<Sized>,
        _dir: tempfile::TempDir,
    }

    fn start(config: ServerConfig) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handler = Arc::new(Sized {
            calls: AtomicUsize::new(0),
            marked: AtomicUsize::new(0),
        });
        tokio::spawn(serve(
            listener,
            handler.clone(),
            config,
            std::future::pending(),
        ));
        Running {
            path,
            handler,
            _dir: dir,
        }
    }

    /// A raw connection that has exchanged hellos.
    async fn greeted(path: &std::path::Path) -> UnixStream {
        let mut stream = UnixStream::connect(path).await.unwrap();
        let mut hello = Vec::new();
        frame::encode(
            &Hello::new(Service::Lockbox, "test"),
            &mut hello,
            frame::DEFAULT_MAX_FRAME,
        )
        .unwrap();
        stream.write_all(&hello).await.unwrap();
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await.unwrap();
        let mut reply = vec![0; u32::from_be_bytes(prefix) as usize];
        stream.read_exact(&mut reply).await.unwrap();
        frame::decode::<HelloReply>(&reply).unwrap().unwrap();
        stream
    }

    fn requests(count: u64, size: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for id in 1..=count {
            let request = Request {
                id,
                on_behalf_of: None,
                body: size,
            };
            frame::encode(&request, &mut bytes, frame::DEFAULT_MAX_FRAME).unwrap();
        }
        bytes
    }

    /// Reads until the server closes the stream; the bytes read.
    async fn read_to_close(stream: &mut UnixStream) -> usize {
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        all.len()
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_stops_the_server_reading_and_is_closed_when_idle() {
        let server = start(ServerConfig::default());
        let mut stream = greeted(&server.path).await;
        // A thousand pipelined requests for 64 KiB answers, none of them read.
        stream.write_all(&requests(1000, 64 * 1024)).await.unwrap();
        // Paused time moves only once every task waits: the server is stuck writing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let answered = server.handler.calls.load(Ordering::Relaxed);
        assert!(
            (1..50).contains(&answered),
            "{answered} answers were made for a peer that reads none"
        );
        // The write waits at most the idle timeout; then the connection closes with what the
        // socket held.
        tokio::time::sleep(ServerConfig::default().idle_timeout).await;
        let read = read_to_close(&mut stream).await;
        assert!(read < 50 * 64 * 1024, "{read}");
        assert_eq!(server.handler.calls.load(Ordering::Relaxed), answered);
    }

    #[tokio::test]
    async fn a_long_pipelined_batch_lets_other_connections_in() {
        let server = start(ServerConfig::default());
        let mut greedy = greeted(&server.path).await;
        let mut other = greeted(&server.path).await;
        // A thousand requests in one write (empty answers: they fit the socket's buffers).
        greedy.write_all(&requests(1000, 0)).await.unwrap();
        // Once the server is at them, another connection asks once.
        while server.handler.calls.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        other.write_all(&requests(1, MARKER)).await.unwrap();
        let mut prefix = [0u8; 4];
        other.read_exact(&mut prefix).await.unwrap();
        let before = server.handler.marked.load(Ordering::Relaxed);
        // On this single-threaded runtime, a batch that never let go would run all thousand
        // first.
        assert!(
            before < 1000 && before <= 4 * YIELD_EVERY as usize,
            "the other connection waited for {before} requests"
        );
        drop(greedy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
        let idle = ServerConfig::default().idle_timeout;
        let server = start(ServerConfig::default());
        let mut silent = greeted(&server.path).await;
        let opened = tokio::time::Instant::now();
        let closed = tokio::spawn(async move {
            assert_eq!(read_to_close(&mut silent).await, 0);
            opened.elapsed()
        });
        let busy: Channel<Vec<u8>> = Channel::connect(&server.path, Service::Lockbox, "test")
            .await
            .unwrap();
        for _ in 0..6 {
            tokio::time::sleep(idle / 2).await;
            busy.call(None, &1u32).await.unwrap();
        }
        let lived = closed.await.unwrap();
        assert!(lived >= idle && lived <= idle * 5 / 4, "{lived:?}");
        assert_eq!(busy.call(None, &1u32).await.unwrap(), vec![7]);
    }

    #[tokio::test]
    async fn connections_over_a_cap_are_refused_with_the_reason() {
        let server = start(ServerConfig {
            max_connections: 3,
            max_connections_per_user: 2,
            ..ServerConfig::default()
        });
        let connect = || Channel::<Vec<u8>>::connect(&server.path, Service::Lockbox, "test");
        let first = connect().await.unwrap();
        let second = connect().await.unwrap();
        let refused = connect().await.unwrap_err();
        let CallError::Server(e) = &refused else {
            panic!("{refused:?}")
        };
        assert_eq!(e.code, ErrorCode::ResourceExhausted, "{e:?}");
        assert!(e.message.contains("already holds 2 connections"), "{e:?}");
        // Dropping a channel closes its connection, and the server gives its seat back once
        // it sees that.
        drop(first);
        let third = loop {
            match connect().await {
                Ok(c) => break c,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        assert_eq!(third.call(None, &2u32).await.unwrap(), vec![7, 7]);
        assert_eq!(second.call(None, &1u32).await.unwrap(), vec![7]);
    }
}
