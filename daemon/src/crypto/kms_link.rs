//! The daemon's link to `lockbox-kms`: the few calls it makes (encrypt and decrypt data keys
//! on behalf of a caller, manage its own keyring key), over one pipelined connection that
//! opens on first use, reopens after a failure, and turns an unreachable KMS into
//! `Unavailable` without affecting anything that does not need it. Every call has a deadline:
//! a KMS that hangs fails the requests that need it after the link's timeout, and holds
//! nothing else up.

use crate::error::LockboxError;
use lockbox_proto::hello::Service;
use lockbox_proto::kms::{
    CreateAsymmetricSignatureKey, CreateSymmetricKey, DecryptRef, HeldVersion, KmsRequest,
    KmsResponse, SignatureAlgorithm, SymmetricAlgorithm, decrypted_plaintext,
};
use lockbox_proto::{ErrorCode, Principal, SecretBytes, Wiping};
use lockbox_rpc::metrics::histograms::clock;
use lockbox_rpc::metrics::requests::{CODES, code_index, code_label};
use lockbox_rpc::metrics::{Histograms, Metrics};
use lockbox_rpc::{CallError, Channel};
use metrics::Counter;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How lockboxd introduces itself in its hello to the KMS.
const CLIENT_NAME: &str = concat!("lockboxd/", env!("CARGO_PKG_VERSION"));

/// A data key decrypted by `lockbox-kms`, read where it lies in the KMS's answer, which is
/// kept as it came and wiped when this is dropped: a per-read unwrap makes no copy of the key
/// or of the ids around it.
pub struct DecryptedKey {
    /// The answer's frame body.
    body: Wiping,
    /// Where the plaintext lies in `body`.
    plaintext: Range<usize>,
}

impl DecryptedKey {
    /// The decrypted bytes.
    pub fn plaintext(&self) -> &[u8] {
        // The range was found in this body, which does not change.
        self.body.get(self.plaintext.clone()).unwrap_or_default()
    }
}

impl std::fmt::Debug for DecryptedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DecryptedKey([REDACTED; {}])", self.plaintext.len())
    }
}

/// A lazily (re)connected link to the KMS.
#[derive(Debug)]
pub struct KmsLink {
    /// The KMS socket.
    socket: PathBuf,
    /// The open connection, if there is one.
    channel: Mutex<Option<Channel<KmsResponse>>>,
    /// How long a call, or connecting, may wait for the KMS.
    timeout: Duration,
    /// Round trips and failures, when metrics are on.
    meters: Option<LinkMeters>,
}

/// The operations the link performs, as its series name them.
const OPERATIONS: [&str; 8] = [
    "Encrypt",
    "ReEncrypt",
    "Decrypt",
    "ReportHolds",
    "CheckMayActAs",
    "CreateSymmetricKey",
    "CreateAsymmetricSignatureKey",
    "Sign",
];

/// The link's series: each call's round trip, by operation, and its outcome. On the path of
/// every read of a secret under its own KMS key, so kept in fixed tables.
#[derive(Debug)]
struct LinkMeters {
    metrics: Metrics,
    latency: Arc<Histograms>,
    /// By operation and code (`OK` included), registered when first seen.
    calls: Box<[OnceLock<Counter>]>,
    /// Whether the last call reached the KMS (set as `lockbox_kms_client_up` at scrapes).
    up: Arc<AtomicBool>,
}

impl LinkMeters {
    fn record(&self, operation: &'static str, nanos: u64, error: Option<&LockboxError>) {
        use lockbox_rpc::server::AnswerError;
        let op = OPERATIONS
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(OPERATIONS.len());
        let code = code_index(error.map(|e| e.code()));
        let reached = !matches!(error, Some(LockboxError::Unavailable(_)));
        self.up.store(reached, Ordering::Relaxed);
        self.latency.record(op, nanos);
        if let Some(counter) = self.calls.get(op * CODES + code) {
            counter
                .get_or_init(|| {
                    self.metrics.counter(
                        "lockbox_kms_client_calls_total",
                        "Calls from lockboxd to lockbox-kms, by operation and code (UNAVAILABLE: \
                         the KMS could not be reached or did not answer in time).",
                        &[("operation", operation), ("code", code_label(code))],
                    )
                })
                .increment(1);
        }
    }
}

impl KmsLink {
    /// A link to the KMS at `socket` whose calls wait at most `timeout` (to within a quarter
    /// of it); nothing connects until the first call.
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self {
            socket,
            channel: Mutex::new(None),
            timeout,
            meters: None,
        }
    }

    /// Keeps the link's series in `metrics` (nothing while it is off).
    pub fn instrument(&mut self, metrics: &Metrics) {
        if metrics.is_on() {
            // Up until a call fails to reach it: lockboxd calls the KMS as it starts.
            let up = Arc::new(AtomicBool::new(true));
            let gauge = metrics.gauge(
                "lockbox_kms_client_up",
                "1 while lockboxd's last call reached lockbox-kms, 0 once one could not.",
                &[],
            );
            let reached = up.clone();
            metrics
                .on_scrape(move || gauge.set(f64::from(u8::from(reached.load(Ordering::Relaxed)))));
            let latency = Histograms::new(
                metrics,
                "lockbox_kms_client_duration_seconds".into(),
                "Round trips from lockboxd to lockbox-kms, by operation (a retry after a lost \
                 connection included).",
                "operation",
                OPERATIONS.to_vec(),
            );
            self.meters = latency.map(|latency| LinkMeters {
                metrics: metrics.clone(),
                latency,
                calls: (0..OPERATIONS.len() * CODES)
                    .map(|_| OnceLock::new())
                    .collect(),
                up,
            });
        }
    }

    fn cached(&self) -> Option<Channel<KmsResponse>> {
        let guard = self.channel.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    async fn connection(&self) -> Result<Channel<KmsResponse>, CallError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let connecting = Channel::connect_with_deadline(
            &self.socket,
            Service::Kms,
            CLIENT_NAME,
            Some(self.timeout),
        );
        let fresh = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| CallError::TimedOut(Service::Kms.process_name(), self.timeout))??;
        *self.channel.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        tracing::info!(socket = %self.socket.display(), "connected to lockbox-kms");
        Ok(fresh)
    }

    fn forget(&self) {
        *self.channel.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs `call`, reconnecting and retrying once if the connection was lost or the KMS
    /// ended it at its maximum age (all KMS calls the daemon makes are safe to repeat). A
    /// call past the deadline is not repeated: the KMS is hung or overloaded.
    async fn with_channel<T, F, Fut>(
        &self,
        operation: &'static str,
        call: F,
    ) -> Result<T, LockboxError>
    where
        F: Fn(Channel<KmsResponse>) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let Some(meters) = &self.meters else {
            return self.with_channel_unmeasured(call).await;
        };
        let started = clock().raw();
        let result = self.with_channel_unmeasured(call).await;
        let nanos = clock().delta_as_nanos(started, clock().raw());
        meters.record(operation, nanos, result.as_ref().err());
        result
    }

    async fn with_channel_unmeasured<T, F, Fut>(&self, call: F) -> Result<T, LockboxError>
    where
        F: Fn(Channel<KmsResponse>) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        for attempt in 0..2 {
            let result = match self.connection().await {
                Ok(channel) => call(channel).await,
                Err(e) => Err(e),
            };
            match result {
                Err(CallError::Disconnected(_) | CallError::Connect { .. }) if attempt == 0 => {
                    self.forget();
                }
                Err(e) if attempt == 0 && e.is_lapsed() => self.forget(),
                Err(e) => {
                    // A hung KMS is not helped by more connections waiting in its backlog.
                    if !matches!(e, CallError::Server(_) | CallError::TimedOut(..)) {
                        self.forget();
                    }
                    return Err(e.into());
                }
                Ok(v) => return Ok(v),
            }
        }
        Err(LockboxError::Unavailable(
            "lockbox-kms is unavailable".into(),
        ))
    }

    /// Encrypts with `key_id`'s primary version, authorized as `on_behalf_of` (or as the
    /// daemon itself).
    pub async fn encrypt(
        &self,
        on_behalf_of: Option<&Principal>,
        key_id: &str,
        aad_context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, LockboxError> {
        let (_, ciphertext) = self
            .encrypt_versioned(on_behalf_of, key_id, aad_context, plaintext)
            .await?;
        Ok(ciphertext)
    }

    /// As [`encrypt`](Self::encrypt), with the id of the version that encrypted: the key's
    /// primary version when the KMS answered.
    pub async fn encrypt_versioned(
        &self,
        on_behalf_of: Option<&Principal>,
        key_id: &str,
        aad_context: &[u8],
        plaintext: &[u8],
    ) -> Result<(String, Vec<u8>), LockboxError> {
        self.with_channel("Encrypt", |channel| async move {
            let request = KmsRequest::Encrypt {
                key_id: key_id.into(),
                version_id: None,
                aad_context: aad_context.to_vec(),
                plaintext: SecretBytes::new(plaintext.to_vec()),
            };
            match channel.call(on_behalf_of, &request).await? {
                KmsResponse::Encrypted {
                    version_id,
                    ciphertext,
                    ..
                } => Ok((version_id, ciphertext)),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    /// Re-encrypts a ciphertext of `key_id` under its primary version, on behalf of
    /// `caller`, keeping `aad_context`: the plaintext never leaves lockbox-kms. Returns the
    /// version that had encrypted it, the version that encrypts it now, and the ciphertext.
    pub async fn re_encrypt(
        &self,
        caller: &Principal,
        key_id: &str,
        aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<ReEncrypted, LockboxError> {
        self.with_channel("ReEncrypt", |channel| async move {
            let request = KmsRequest::ReEncrypt {
                key_id: key_id.into(),
                version_id: None,
                aad_context: aad_context.to_vec(),
                source_key_id: key_id.into(),
                source_aad_context: aad_context.to_vec(),
                ciphertext: ciphertext.to_vec(),
            };
            match channel.call(Some(caller), &request).await? {
                KmsResponse::ReEncrypted {
                    version_id,
                    source_version_id,
                    ciphertext,
                    ..
                } => Ok(ReEncrypted {
                    from_version_id: source_version_id,
                    version_id,
                    ciphertext,
                }),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    /// Decrypts as the daemon itself, with the id of the version that had encrypted; for the
    /// rare unwraps that need it (the keyring's), as it decodes the whole answer.
    pub async fn decrypt_versioned(
        &self,
        key_id: &str,
        aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<(String, SecretBytes), LockboxError> {
        self.with_channel("Decrypt", |channel| async move {
            let request = KmsRequest::Decrypt {
                key_id: key_id.into(),
                aad_context: aad_context.to_vec(),
                ciphertext: ciphertext.to_vec(),
            };
            match channel.call(None, &request).await? {
                KmsResponse::Decrypted {
                    version_id,
                    plaintext,
                    ..
                } => Ok((version_id, plaintext)),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    /// Decrypts with `key_id`, authorized as `on_behalf_of` (or as the daemon itself). The
    /// plaintext is read where it lies in the KMS's answer and wiped with it.
    pub async fn decrypt(
        &self,
        on_behalf_of: Option<&Principal>,
        key_id: &str,
        aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<DecryptedKey, LockboxError> {
        self.with_channel("Decrypt", |channel| async move {
            let request = DecryptRef {
                key_id,
                aad_context,
                ciphertext,
            };
            let body = channel.call_raw(on_behalf_of, &request).await?;
            match decrypted_plaintext(&body) {
                Some((_, plaintext)) => Ok(DecryptedKey { body, plaintext }),
                None => Err(CallError::from_answer::<KmsResponse>(&body)),
            }
        })
        .await
    }

    /// Tells lockbox-kms how many data keys lockboxd keeps under each version of `key_id`,
    /// releasing the versions it keeps nothing under (but the primary) for destruction.
    pub async fn report_holds(
        &self,
        key_id: &str,
        held: &BTreeMap<String, u64>,
    ) -> Result<(), LockboxError> {
        self.with_channel("ReportHolds", |channel| async move {
            let request = KmsRequest::ReportHolds {
                key_id: key_id.into(),
                held: held
                    .iter()
                    .map(|(version_id, &data_keys)| HeldVersion {
                        version_id: version_id.clone(),
                        data_keys,
                    })
                    .collect(),
            };
            match channel.call(None, &request).await? {
                KmsResponse::Done => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    /// `PermissionDenied` (from lockbox-kms) unless `caller` could grant every KMS role
    /// `subject` holds.
    pub async fn check_may_act_as(
        &self,
        caller: &Principal,
        subject: &str,
    ) -> Result<(), LockboxError> {
        self.with_channel("CheckMayActAs", |channel| async move {
            let request = KmsRequest::CheckMayActAs {
                subject: subject.into(),
            };
            match channel.call(Some(caller), &request).await? {
                KmsResponse::Done => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    /// Creates a symmetric key for the daemon's own use, in `folder_id`, rotated by
    /// lockbox-kms every `rotation_period` seconds (`None`: only by hand).
    pub async fn create_own_key(
        &self,
        folder_id: &str,
        name: &str,
        rotation_period: Option<u64>,
    ) -> Result<String, LockboxError> {
        self.with_channel("CreateSymmetricKey", |channel| async move {
            let request = KmsRequest::CreateSymmetricKey(CreateSymmetricKey {
                folder_id: folder_id.into(),
                name: name.into(),
                description: "wraps lockboxd's service keyring".into(),
                labels: Default::default(),
                default_algorithm: SymmetricAlgorithm::Aes256,
                rotation_period,
                deletion_protection: true,
            });
            match channel.call(None, &request).await? {
                KmsResponse::SymmetricKey(key) => Ok(key.id),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    /// Creates an ECDSA P-256 signature key of the daemon's own in `folder_id`: it signs
    /// the audit trail's chain head.
    pub async fn create_own_signature_key(
        &self,
        folder_id: &str,
        name: &str,
    ) -> Result<String, LockboxError> {
        self.with_channel("CreateAsymmetricSignatureKey", |channel| async move {
            let request = KmsRequest::CreateAsymmetricSignatureKey(CreateAsymmetricSignatureKey {
                folder_id: folder_id.into(),
                name: name.into(),
                description: "signs lockboxd's audit trail".into(),
                labels: Default::default(),
                signature_algorithm: SignatureAlgorithm::EcdsaNistP256Sha256,
                deletion_protection: true,
            });
            match channel.call(None, &request).await? {
                KmsResponse::AsymmetricSignatureKey(key) => Ok(key.id),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }

    /// Signs `message` with `key_id`, as the daemon itself; a DER ECDSA signature.
    pub async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, LockboxError> {
        self.with_channel("Sign", |channel| async move {
            let request = KmsRequest::Sign {
                key_id: key_id.into(),
                message: message.to_vec(),
            };
            match channel.call(None, &request).await? {
                KmsResponse::Signature { signature, .. } => Ok(signature),
                other => Err(unexpected(&other)),
            }
        })
        .await
    }
}

/// The id of the KMS key version a ciphertext of lockbox-kms was made with, if it is shaped
/// like one.
pub fn kms_version_of(ciphertext: &[u8]) -> Option<&str> {
    lockbox_proto::kms::ciphertext_version(ciphertext)
}

/// A ciphertext re-encrypted by [`KmsLink::re_encrypt`].
#[derive(Debug)]
pub struct ReEncrypted {
    /// The version that had encrypted it.
    pub from_version_id: String,
    /// The version that encrypts it now.
    pub version_id: String,
    /// The new ciphertext.
    pub ciphertext: Vec<u8>,
}

fn unexpected(answer: &KmsResponse) -> CallError {
    CallError::Protocol(format!("unexpected response {answer:?}"))
}

impl From<CallError> for LockboxError {
    /// A failed call to `lockbox-kms`: its verdicts keep their code; a lost or missing
    /// connection is `Unavailable`.
    fn from(e: CallError) -> Self {
        match e {
            CallError::Server(err) => {
                let message = format!("lockbox-kms: {}", err.message);
                match err.code {
                    ErrorCode::InvalidArgument => LockboxError::InvalidArgument(message),
                    ErrorCode::NotFound => LockboxError::NotFound(message),
                    ErrorCode::PermissionDenied | ErrorCode::Unauthenticated => {
                        LockboxError::PermissionDenied(message)
                    }
                    ErrorCode::FailedPrecondition => LockboxError::FailedPrecondition(message),
                    ErrorCode::ResourceExhausted => LockboxError::ResourceExhausted(message),
                    ErrorCode::Unavailable => LockboxError::Unavailable(message),
                    _ => LockboxError::Internal(message),
                }
            }
            other => LockboxError::Unavailable(format!("lockbox-kms is unavailable: {other}")),
        }
    }
}
