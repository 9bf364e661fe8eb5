//! The client side of a connection: many requests in flight, responses matched by id.
//!
//! [`Channel::call`] encodes a request, hands it to a writer task that batches whatever is
//! queued into one write, and waits for the reader task to route the matching response back.
//! The reader decodes each response where it lies in its read buffer, so no copy of the frame
//! (which may hold plaintext) is made on the way; [`Channel::call_raw`] instead hands the
//! caller a wiped copy of the body, for answers it reads in place itself. When the connection
//! fails every waiting call gets [`CallError::Disconnected`].
//!
//! Nothing waits for ever on a server that stopped answering: connecting, hello included,
//! gives up after [`CONNECT_TIMEOUT`], and a channel opened with a call deadline fails calls
//! left unanswered that long with [`CallError::TimedOut`]. The deadline costs a call no timer:
//! a watchdog task counts ticks of a quarter of it, each call notes the tick it was sent in,
//! and calls four ticks old are failed, so one waits between the deadline and a quarter more.

use crate::connection::FrameReader;
use crate::stream::{ReadHalf, Stream, WriteHalf};
use lockbox_proto::frame;
use lockbox_proto::hello::{Hello, HelloReply, ServerInfo, Service};
use lockbox_proto::ids::IdHashing;
use lockbox_proto::{Error, Principal, Response, Wiping};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server answered with an error.
    #[error("{0}")]
    Server(Error),
    /// The socket could not be reached.
    #[error("cannot connect to {service} at {path}: {reason}")]
    Connect {
        /// The process expected there.
        service: &'static str,
        /// Socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The connection broke before the answer arrived.
    #[error("connection to {0} lost")]
    Disconnected(&'static str),
    /// The server did not answer within the channel's call deadline. The request may still
    /// run.
    #[error("{0} did not answer within {1:?}")]
    TimedOut(&'static str, std::time::Duration),
    /// The server sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl CallError {
    /// Whether the server refused the request because the connection's identity lapsed
    /// (its maximum age, an expired or revoked token): the request did not run, and may be
    /// sent again on a new connection that proves its identity afresh.
    pub fn is_lapsed(&self) -> bool {
        matches!(self, CallError::Server(e) if e.code == lockbox_proto::ErrorCode::Unauthenticated)
    }

    /// The failure an answer's frame body carries when it is not the one a caller reads in
    /// place (see [`Channel::call_raw`]): the server's error, or a protocol error for any
    /// other answer and for a body that does not decode.
    pub fn from_answer<R: DeserializeOwned + std::fmt::Debug>(body: &[u8]) -> Self {
        match frame::decode::<Response<R>>(body) {
            Ok(Response { result: Err(e), .. }) => CallError::Server(e),
            Ok(Response {
                result: Ok(other), ..
            }) => CallError::Protocol(format!("unexpected response {other:?}")),
            Err(e) => CallError::Protocol(e.to_string()),
        }
    }
}

/// Encodes exactly like [`lockbox_proto::Request`] without taking ownership of the body.
#[derive(Serialize)]
struct RequestRef<'a, B> {
    id: u64,
    on_behalf_of: Option<&'a Principal>,
    body: &'a B,
}

/// A call waiting for its response.
enum Waiter<Resp> {
    /// Wants the response decoded.
    Decoded(oneshot::Sender<Result<Resp, CallError>>),
    /// Wants the response's frame body as it came.
    Raw(oneshot::Sender<Result<Wiping, CallError>>),
}

impl<Resp> Waiter<Resp> {
    /// Ends the call with `error`.
    fn fail(self, error: CallError) {
        // The caller may have given up waiting; that is fine.
        match self {
            Waiter::Decoded(tx) => {
                let _ = tx.send(Err(error));
            }
            Waiter::Raw(tx) => {
                let _ = tx.send(Err(error));
            }
        }
    }
}

/// A call waiting for its response, and the watchdog tick it was sent in.
struct Waiting<Resp> {
    sent: u32,
    waiter: Waiter<Resp>,
}

/// Calls waiting for their response, by request id.
type PendingMap<Resp> = HashMap<u64, Waiting<Resp>, IdHashing>;
type Pending<Resp> = Mutex<PendingMap<Resp>>;

/// A pipelined connection to a lockbox server whose responses are `Resp`. Cheap to clone;
/// clones share the connection, which closes when the last clone is dropped.
pub struct Channel<Resp> {
    /// State shared with the reader and writer tasks.
    inner: Arc<Inner<Resp>>,
    /// Encoded request frames for the writer task, wiped when dropped (a request may carry
    /// a new version's payload). Only channels hold it: once the last is dropped, the writer
    /// task sees the queue end and closes the connection.
    outgoing: mpsc::UnboundedSender<Wiping>,
}

impl<Resp> Clone for Channel<Resp> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            outgoing: self.outgoing.clone(),
        }
    }
}

impl<Resp> std::fmt::Debug for Channel<Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("service", &self.inner.service)
            .field("info", &self.inner.info)
            .field("closed", &self.inner.closed)
            .finish_non_exhaustive()
    }
}

/// Bytes set aside for a request's frame before encoding it.
const REQUEST_CAPACITY: usize = 256;

struct Inner<Resp> {
    /// Calls waiting for their response, by request id.
    pending: Pending<Resp>,
    /// Next request id; starts at 1 because id 0 answers unreadable frames.
    next_id: AtomicU64,
    /// What the server said about itself.
    info: ServerInfo,
    /// The process on the other end, for error messages.
    service: &'static str,
    /// Set once the reader or writer task has stopped.
    closed: std::sync::atomic::AtomicBool,
    /// The watchdog's tick count (see the module documentation).
    tick: AtomicU32,
}

/// How long connecting to a server, its hello reply included, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Watchdog ticks after the one it was sent in past which an unanswered call fails.
const DEADLINE_TICKS: u32 = 4;

impl<Resp: DeserializeOwned + Send + 'static> Channel<Resp> {
    /// Connects to the socket at `path`, expecting `service` there; calls wait for their
    /// answer as long as the connection lives.
    pub async fn connect(path: &Path, service: Service, client: &str) -> Result<Self, CallError> {
        Self::connect_with_deadline(path, service, client, None).await
    }

    /// Connects as [`connect`](Self::connect) does; with a `deadline`, a call left
    /// unanswered that long fails with [`CallError::TimedOut`].
    pub async fn connect_with_deadline(
        path: &Path,
        service: Service,
        client: &str,
        deadline: Option<Duration>,
    ) -> Result<Self, CallError> {
        let name = service.process_name();
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, open(path, service, client)).await;
        let (reader, write, info) = opened.unwrap_or_else(|_| {
            Err(CallError::Connect {
                service: name,
                path: path.to_owned(),
                reason: format!("no hello reply within {CONNECT_TIMEOUT:?}"),
            })
        })?;
        let (outgoing, queue) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            info,
            service: name,
            closed: false.into(),
            tick: AtomicU32::new(0),
        });
        tokio::spawn(write_loop(write, queue, inner.clone()));
        tokio::spawn(read_loop(reader, inner.clone()));
        if let Some(deadline) = deadline {
            tokio::spawn(watchdog(Arc::downgrade(&inner), deadline));
        }
        Ok(Self { inner, outgoing })
    }

    /// What the server reported in its hello reply (including who it thinks we are).
    pub fn server_info(&self) -> &ServerInfo {
        &self.inner.info
    }

    /// Sends `body` and waits for its response.
    pub async fn call<Req: Serialize>(
        &self,
        on_behalf_of: Option<&Principal>,
        body: &Req,
    ) -> Result<Resp, CallError> {
        let answer = self.send(on_behalf_of, body, Waiter::Decoded)?;
        answer
            .await
            .unwrap_or(Err(CallError::Disconnected(self.inner.service)))
    }

    /// Sends `body` and returns its response's whole frame body (a `Response<Resp>`) as it
    /// came, for a caller that reads the answer in place; the copy is wiped when dropped.
    /// Anything the caller does not read itself decodes with
    /// [`frame::decode`]`::<Response<Resp>>`.
    pub async fn call_raw<Req: Serialize>(
        &self,
        on_behalf_of: Option<&Principal>,
        body: &Req,
    ) -> Result<Wiping, CallError> {
        let answer = self.send(on_behalf_of, body, Waiter::Raw)?;
        answer
            .await
            .unwrap_or(Err(CallError::Disconnected(self.inner.service)))
    }

    /// Queues `body` for the writer with `waiter` registered for its response, and returns
    /// the receiving end of that waiter.
    fn send<Req: Serialize, T>(
        &self,
        on_behalf_of: Option<&Principal>,
        body: &Req,
        waiter: impl FnOnce(oneshot::Sender<T>) -> Waiter<Resp>,
    ) -> Result<oneshot::Receiver<T>, CallError> {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Most requests fit: one allocation instead of the several a growing vector makes.
        let mut frame_bytes = Wiping::new(Vec::with_capacity(REQUEST_CAPACITY));
        frame::encode(
            &RequestRef {
                id,
                on_behalf_of,
                body,
            },
            &mut frame_bytes,
            inner.info.max_frame,
        )
        .map_err(|e| {
            CallError::Server(Error::new(
                lockbox_proto::ErrorCode::InvalidArgument,
                format!("request too large to send: {e}"),
            ))
        })?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&inner.pending);
            if inner.closed.load(Ordering::Acquire) {
                return Err(CallError::Disconnected(inner.service));
            }
            let sent = inner.tick.load(Ordering::Relaxed);
            pending.insert(
                id,
                Waiting {
                    sent,
                    waiter: waiter(tx),
                },
            );
        }
        if self.outgoing.send(frame_bytes).is_err() {
            lock(&inner.pending).remove(&id);
            return Err(CallError::Disconnected(inner.service));
        }
        Ok(rx)
    }

    /// Whether `self` and `other` are clones of the same connection.
    pub fn same_connection(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

fn lock<Resp>(pending: &Pending<Resp>) -> MutexGuard<'_, PendingMap<Resp>> {
    // A panic while holding this lock cannot leave the map inconsistent (single inserts and
    // removes), so a poisoned lock is still usable.
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

impl<Resp> Inner<Resp> {
    /// Marks the connection closed and fails every waiting call.
    fn close(&self) {
        let mut pending = lock(&self.pending);
        self.closed.store(true, Ordering::Release);
        // Dropping the senders wakes the callers with `Disconnected`.
        pending.clear();
    }
}

async fn write_loop<Resp>(
    mut write: WriteHalf,
    mut queue: mpsc::UnboundedReceiver<Wiping>,
    inner: Arc<Inner<Resp>>,
) {
    // Like the frames it copies, the batch is wiped once written.
    let mut batch = Wiping::new(Vec::with_capacity(64 * 1024));
    while let Some(first) = queue.recv().await {
        batch.extend_wiped(&first);
        // When other calls are in flight the channel is under load: let the tasks that are
        // ready run first, since many of them are about to queue a call, and they then share
        // one write instead of one system call each. A lone call is written at once.
        if lock(&inner.pending).len() > 1 {
            tokio::task::yield_now().await;
        }
        while batch.len() < 256 * 1024 {
            match queue.try_recv() {
                Ok(more) => batch.extend_wiped(&more),
                Err(_) => break,
            }
        }
        if write.write_all(&batch).await.is_err() {
            break;
        }
        batch.wipe_and_clear();
    }
    inner.close();
}

/// Connects and exchanges hellos: the reader (set to the server's frame limit), the writer,
/// and what the server said about itself.
async fn open(
    path: &Path,
    service: Service,
    client: &str,
) -> Result<(FrameReader<ReadHalf>, WriteHalf, ServerInfo), CallError> {
    let name = service.process_name();
    let connect_error = |reason: String| CallError::Connect {
        service: name,
        path: path.to_owned(),
        reason,
    };
    let stream = Stream::connect(path)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let (read, mut write) = stream.into_split();
    let mut hello = Vec::new();
    frame::encode(
        &Hello::new(service, client),
        &mut hello,
        frame::DEFAULT_MAX_FRAME,
    )
    .map_err(|e| CallError::Protocol(e.to_string()))?;
    // A server refusing the connection (at a connection cap) answers without reading the
    // hello and closes, so the hello may not go through: its reply, if any, says why.
    let sent = write.write_all(&hello).await;
    let mut reader = FrameReader::new(read, frame::DEFAULT_MAX_FRAME);
    let body = match reader.next().await {
        Ok(Some(body)) => body,
        Ok(None) | Err(_) if sent.is_err() => {
            return Err(connect_error(
                sent.err().map(|e| e.to_string()).unwrap_or_default(),
            ));
        }
        Ok(None) => return Err(connect_error("the server closed the connection".into())),
        Err(e) => return Err(connect_error(e.to_string())),
    };
    let reply: HelloReply = frame::decode(body).map_err(|e| {
        connect_error(format!(
            "not a {name} socket or an incompatible version ({e})"
        ))
    })?;
    let info = reply.map_err(CallError::Server)?;
    reader.set_max_frame(info.max_frame);
    Ok((reader, write, info))
}

/// Fails calls left unanswered for the deadline, until the channel is gone or closed.
async fn watchdog<Resp>(inner: std::sync::Weak<Inner<Resp>>, deadline: Duration) {
    let mut ticks = tokio::time::interval(deadline / DEADLINE_TICKS);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let now = inner.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let expired: Vec<Waiter<Resp>> = {
            let mut pending = lock(&inner.pending);
            let late: Vec<u64> = pending
                .iter()
                .filter(|(_, w)| now.wrapping_sub(w.sent) > DEADLINE_TICKS)
                .map(|(id, _)| *id)
                .collect();
            late.iter()
                .filter_map(|id| pending.remove(id))
                .map(|w| w.waiter)
                .collect()
        };
        for waiter in expired {
            waiter.fail(CallError::TimedOut(inner.service, deadline));
        }
    }
}

async fn read_loop<Resp: DeserializeOwned>(
    mut reader: FrameReader<ReadHalf>,
    inner: Arc<Inner<Resp>>,
) {
    while let Ok(Some(body)) = reader.next().await {
        let Ok((id, _)) = postcard::take_from_bytes::<u64>(body) else {
            break;
        };
        let Some(Waiting { waiter, .. }) = lock(&inner.pending).remove(&id) else {
            continue;
        };
        // The caller may have given up waiting; that is fine.
        match waiter {
            Waiter::Decoded(tx) => {
                let answer = match frame::decode::<Response<Resp>>(body) {
                    Ok(response) => response.result.map_err(CallError::Server),
                    Err(e) => Err(CallError::Protocol(e.to_string())),
                };
                let _ = tx.send(answer);
            }
            Waiter::Raw(tx) => {
                let mut copy = Wiping::new(Vec::with_capacity(body.len()));
                copy.extend_wiped(body);
                let _ = tx.send(Ok(copy));
            }
        }
    }
    inner.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockbox_proto::Request;
    use lockbox_proto::hello::PROTOCOL_VERSION;
    use tokio::net::UnixListener;

    /// Accepts one connection and exchanges hellos on it.
    async fn greet(listener: &UnixListener) -> (FrameReader<ReadHalf>, WriteHalf) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = Stream::new(stream).unwrap().into_split();
        let mut reader = FrameReader::new(read, frame::DEFAULT_MAX_FRAME);
        reader.next().await.unwrap().unwrap();
        let reply: HelloReply = Ok(ServerInfo {
            version: PROTOCOL_VERSION,
            service: Service::Lockbox,
            max_frame: frame::DEFAULT_MAX_FRAME,
            subject: "user:test".into(),
        });
        let mut out = Vec::new();
        frame::encode(&reply, &mut out, frame::DEFAULT_MAX_FRAME).unwrap();
        write.write_all(&out).await.unwrap();
        (reader, write)
    }

    /// A server that accepts one connection, greets it, answers request 1 with a body the
    /// client cannot decode as a `String` and request 2 with a `String`, then hangs up.
    async fn scripted_server(listener: UnixListener) {
        let (mut reader, mut write) = greet(&listener).await;
        let mut out = Vec::new();
        for _ in 0..2 {
            let body = reader.next().await.unwrap().unwrap();
            let request: Request<u32> = frame::decode(body).unwrap();
            out.clear();
            if request.id == 1 {
                // Ok, then a string whose announced length runs past the frame.
                frame::encode(&(1u64, 0u8, 200u8), &mut out, frame::DEFAULT_MAX_FRAME).unwrap();
            } else {
                let answer = Response {
                    id: request.id,
                    result: Ok::<_, Error>(format!("answer to {}", request.body)),
                };
                frame::encode(&answer, &mut out, frame::DEFAULT_MAX_FRAME).unwrap();
            }
            write.write_all(&out).await.unwrap();
        }
    }

    #[tokio::test]
    async fn responses_are_decoded_for_their_call_and_a_bad_one_fails_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let server = tokio::spawn(scripted_server(UnixListener::bind(&path).unwrap()));
        let channel: Channel<String> = Channel::connect(&path, Service::Lockbox, "test")
            .await
            .unwrap();
        let bad = channel.call(None, &1u32).await;
        assert!(matches!(bad, Err(CallError::Protocol(_))), "{bad:?}");
        assert_eq!(channel.call(None, &2u32).await.unwrap(), "answer to 2");
        server.await.unwrap();
        let gone = channel.call(None, &3u32).await;
        assert!(matches!(gone, Err(CallError::Disconnected(_))), "{gone:?}");
    }

    #[tokio::test]
    async fn a_raw_call_gets_the_body_as_it_came_even_one_that_would_not_decode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let server = tokio::spawn(scripted_server(UnixListener::bind(&path).unwrap()));
        let channel: Channel<String> = Channel::connect(&path, Service::Lockbox, "test")
            .await
            .unwrap();
        let raw = channel.call_raw(None, &1u32).await.unwrap();
        assert_eq!(
            &raw[..],
            postcard::to_allocvec(&(1u64, 0u8, 200u8)).unwrap()
        );
        let raw = channel.call_raw(None, &2u32).await.unwrap();
        let answer: Response<String> = frame::decode(&raw).unwrap();
        assert_eq!(
            (answer.id, answer.result.unwrap()),
            (2, "answer to 2".into())
        );
        server.await.unwrap();
        let gone = channel.call_raw(None, &3u32).await;
        assert!(matches!(gone, Err(CallError::Disconnected(_))), "{gone:?}");
    }

    #[test]
    fn request_ref_encodes_like_request() {
        let principal = Principal {
            subject: "user:alice".into(),
            groups: vec!["group:ops".into()],
        };
        let borrowed = postcard::to_allocvec(&RequestRef {
            id: 42,
            on_behalf_of: Some(&principal),
            body: &("x".to_string(), 7u32),
        })
        .unwrap();
        let owned = postcard::to_allocvec(&Request {
            id: 42,
            on_behalf_of: Some(principal),
            body: ("x".to_string(), 7u32),
        })
        .unwrap();
        assert_eq!(borrowed, owned);
    }

    #[tokio::test(start_paused = true)]
    async fn connecting_to_a_server_that_never_answers_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Bound and listening, so the connection is made, but nobody accepts or answers.
        let _listener = UnixListener::bind(&path).unwrap();
        let started = tokio::time::Instant::now();
        let refused = Channel::<String>::connect(&path, Service::Lockbox, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, CallError::Connect { reason, .. } if reason.contains("no hello reply")),
            "{refused:?}"
        );
        assert_eq!(started.elapsed(), CONNECT_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_left_unanswered_fails_at_the_deadline_and_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // Greets, answers request 2 only once request 3 came, and never answers 1.
        let server = tokio::spawn(async move {
            let (mut reader, mut write) = greet(&listener).await;
            let mut out = Vec::new();
            for _ in 0..3 {
                reader.next().await.unwrap().unwrap();
            }
            out.clear();
            let answer = Response {
                id: 2,
                result: Ok::<_, Error>("late".to_owned()),
            };
            frame::encode(&answer, &mut out, frame::DEFAULT_MAX_FRAME).unwrap();
            write.write_all(&out).await.unwrap();
            std::future::pending::<()>().await;
        });
        let deadline = Duration::from_secs(8);
        let channel: Channel<String> =
            Channel::connect_with_deadline(&path, Service::Lockbox, "test", Some(deadline))
                .await
                .unwrap();
        let started = tokio::time::Instant::now();
        let unanswered = channel.call(None, &1u32).await.unwrap_err();
        assert!(
            matches!(unanswered, CallError::TimedOut(_, d) if d == deadline),
            "{unanswered:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= deadline && waited <= deadline * 5 / 4,
            "{waited:?}"
        );
        let second = channel.call(None, &2u32);
        let third = channel.call_raw(None, &3u32);
        let (second, third) = tokio::join!(second, third);
        assert_eq!(second.unwrap(), "late");
        assert!(matches!(third, Err(CallError::TimedOut(..))), "{third:?}");
        server.abort();
    }
}
