//! A stand-in between lockboxd and lockbox-kms that holds one subject's requests until the
//! test lets them through, so a test can act while lockboxd waits for a KMS round trip.
//!
//! It speaks the KMS protocol on its own socket and forwards every request, relayed
//! principal included, to the real KMS as the test's user (which the test KMS enrols as
//! the secrets daemon). Each request is forwarded on its own task and answered when its
//! answer comes, so a held request does not hold up the others on lockboxd's one
//! connection. Requests on behalf of the held subject wait for a pass each.

use lockbox_client::proto::hello::{self, HelloReply, ServerInfo, Service};
use lockbox_client::proto::kms::{KmsRequest, KmsResponse};
use lockbox_client::proto::{Error, ErrorCode, Response, frame};
use lockbox_rpc::Channel;
use lockbox_rpc::connection::FrameReader;
use lockbox_rpc::server::{decode_request, respond};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{Semaphore, mpsc};

/// The gate: a socket to point lockboxd at, and the controls.
pub struct KmsGate {
    /// Where lockboxd connects.
    socket: PathBuf,
    /// What the forwarding tasks share.
    shared: Arc<Shared>,
    /// One message per held request that has arrived and waits for a pass.
    arrived: mpsc::UnboundedReceiver<()>,
    /// The accept loop, stopped with the gate.
    accepting: tokio::task::JoinHandle<()>,
}

struct Shared {
    /// The real KMS.
    kms: Channel<KmsResponse>,
    /// The subject whose relayed requests wait, once set.
    held: Mutex<Option<String>>,
    /// Passes for held requests.
    passes: Semaphore,
    /// Tells the test a held request arrived.
    arrived: mpsc::UnboundedSender<()>,
}

impl Drop for KmsGate {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl KmsGate {
    /// A gate at `socket` in front of the KMS at `kms`, holding nothing yet.
    pub async fn start(socket: &Path, kms: &Path) -> Self {
        let channel = Channel::connect(kms, Service::Kms, "gate").await.unwrap();
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            kms: channel,
            held: Mutex::new(None),
            passes: Semaphore::new(0),
            arrived: arrived_tx,
        });
        let listener = lockbox_rpc::listen::bind(socket, 0o600).unwrap();
        let accepting = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, shared.clone()));
                }
            }
        });
        Self {
            socket: socket.to_owned(),
            shared,
            arrived,
            accepting,
        }
    }

    /// Where lockboxd should connect.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Holds the requests relayed on behalf of `subject` from now on; none passes until
    /// [`allow`](Self::allow).
    pub fn hold(&self, subject: &str) {
        *self.shared.held.lock().unwrap() = Some(subject.to_owned());
    }

    /// Waits until the next held request has arrived.
    pub async fn arrival(&mut self) {
        self.arrived.recv().await.unwrap();
    }

    /// Lets `n` more held requests through.
    pub fn allow(&self, n: usize) {
        self.shared.passes.add_permits(n);
    }
}

/// One connection: the hello, then each request forwarded on its own task, the answers
/// written as they come.
async fn serve(stream: UnixStream, shared: Arc<Shared>) {
    let max = frame::DEFAULT_MAX_FRAME;
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read, max);
    if !matches!(reader.next().await, Ok(Some(_))) {
        return;
    }
    let reply: HelloReply = Ok(ServerInfo {
        version: hello::PROTOCOL_VERSION,
        service: Service::Kms,
        max_frame: max,
        subject: "gate".into(),
    });
    let mut bytes = Vec::new();
    frame::encode(&reply, &mut bytes, max).unwrap();
    if write.write_all(&bytes).await.is_err() {
        return;
    }
    let (answers, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = to_write.recv().await {
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    while let Ok(Some(body)) = reader.next().await {
        let body = body.to_vec();
        let (shared, answers) = (shared.clone(), answers.clone());
        tokio::spawn(async move {
            let mut out = Vec::new();
            forward(&shared, &body, &mut out).await;
            let _ = answers.send(out);
        });
    }
}

/// Forwards one request to the KMS, after its pass if it is held, and appends the answer.
async fn forward(shared: &Shared, body: &[u8], out: &mut Vec<u8>) {
    let max = frame::DEFAULT_MAX_FRAME;
    let request = match decode_request::<KmsRequest>(body) {
        Ok(r) => r,
        Err((id, e)) => return respond::<()>(out, id, Err(e), max),
    };
    let held = request
        .on_behalf_of
        .as_ref()
        .is_some_and(|p| shared.held.lock().unwrap().as_deref() == Some(p.subject.as_str()));
    if held {
        let _ = shared.arrived.send(());
        shared.passes.acquire().await.unwrap().forget();
    }
    let result = match shared
        .kms
        .call_raw(request.on_behalf_of.as_ref(), &request.body)
        .await
    {
        Ok(body) => match frame::decode::<Response<KmsResponse>>(&body) {
            Ok(response) => response.result,
            Err(e) => Err(Error::new(ErrorCode::Internal, e.to_string())),
        },
        Err(e) => Err(Error::new(ErrorCode::Unavailable, e.to_string())),
    };
    respond(out, request.id, result, max);
}
