//! The Unix-socket front-end of `lockboxd`: identifies each connection, decodes requests,
//! calls the service and encodes its answers. The only part of the daemon that knows the
//! wire (`proto`); it knows nothing about storage.
//!
//! - this module: the connection's session (who it acts as) and the entry point of every
//!   request frame;
//! - [`payload`]: payload reads, the most frequent request, answered with the entries
//!   decrypted and rewritten in place;
//! - `dispatch`: every other request, to its service call;
//! - `convert`: the hand-written conversions between `proto` messages and domain types.

mod convert;
mod dispatch;
pub mod payload;

use crate::error::LockboxError;
use crate::iam::Frontend;
use crate::service::{AccountSession, Caller, Lockbox, RateKind, RateMemo, ReadMemo};
use lockbox_proto::hello::Service;
use lockbox_proto::lockbox::{GetPayloadBytes, LockboxRequest, LockboxResponse};
use lockbox_proto::{Error, Principal, variant};
use lockbox_rpc::metrics::{AlsoCount, Metrics, RequestMeter};
use lockbox_rpc::peer::{self, PeerCred};
use lockbox_rpc::server::{AnswerError, Handler, Next, decode_request, request_id, respond};
use payload::{get_payload_ex, respond_payload};
use std::sync::Arc;

/// Serves a [`Lockbox`] over the lockbox protocol.
#[derive(Debug)]
pub struct LockboxHandler {
    /// The service.
    lockbox: Arc<Lockbox>,
    /// Largest frame sent.
    max_frame: u32,
    /// Request series, when metrics are on.
    meter: Option<RequestMeter>,
}

impl LockboxHandler {
    /// A handler for `lockbox`, keeping request series in `metrics` (if on).
    pub fn new(lockbox: Arc<Lockbox>, max_frame: u32, metrics: &Metrics) -> Self {
        let payload_reads = AlsoCount {
            methods: &["GetPayload", "GetPayloadEx"],
            name: "lockbox_payload_reads_total",
            help: "Payload reads (GetPayload and GetPayloadEx), by code: what Lockbox shows \
                   as payload_operations_rate.",
        };
        let meter = RequestMeter::new(
            metrics,
            "lockbox",
            variant::names::<LockboxRequest>(),
            Some(payload_reads),
        );
        Self {
            lockbox,
            max_frame,
            meter,
        }
    }
}

/// The name of this front-end in audit lines.
const FRONTEND: &str = "unix";

/// A connection: the local user the kernel reported, and the service account it switched
/// to with a token, if it did.
#[derive(Debug)]
pub struct Session {
    /// From SO_PEERCRED and SO_PEERGROUPS.
    local: Caller,
    /// Set once by `Authenticate`.
    service_account: std::sync::OnceLock<AccountSession>,
    /// The last payload read by id, for the next one (forgotten when the caller changes).
    memo: ReadMemo,
    /// The caller's rate limits, as last resolved.
    rate: RateMemo,
}

impl Session {
    /// Who the connection's requests act as: the local user, or the service account while
    /// its token, key and account still hold.
    fn caller(&self, lockbox: &Lockbox) -> Result<&Caller, LockboxError> {
        match self.service_account.get() {
            None => Ok(&self.local),
            Some(account) => lockbox.session_caller(account),
        }
    }
}

impl Handler for LockboxHandler {
    type Session = Session;

    fn service(&self) -> Service {
        Service::Lockbox
    }

    fn open(&self, cred: PeerCred) -> Result<Session, Error> {
        let id = peer::resolve(&cred);
        tracing::debug!(subject = %id.subject, pid = ?cred.pid, "connection opened");
        Ok(Session {
            local: Caller {
                principal: Principal {
                    subject: id.subject,
                    groups: id.groups,
                },
                frontend: Frontend {
                    name: FRONTEND,
                    pid: cred.pid.and_then(|p| u32::try_from(p).ok()),
                },
            },
            service_account: std::sync::OnceLock::new(),
            memo: ReadMemo::default(),
            rate: RateMemo::default(),
        })
    }

    fn subject(&self, session: &Session) -> String {
        session.local.subject().to_owned()
    }

    fn now(&self) -> i64 {
        self.lockbox.now()
    }

    fn meter(&self) -> Option<&RequestMeter> {
        self.meter.as_ref()
    }

    async fn call(&self, session: &Session, body: &[u8], out: &mut Vec<u8>) -> Next {
        let caller = match session.caller(&self.lockbox) {
            Ok(caller) => caller,
            Err(e) => {
                // The identity is gone: nothing more runs on this connection.
                respond::<()>(out, request_id(body), Err(e.answer()), self.max_frame);
                return Next::Close;
            }
        };
        // The most frequent request is read in place, its ids borrowed from the frame; the
        // connection's last read is recognised before they are checked as text.
        let mut rated = false;
        if let Some((id, get)) = GetPayloadBytes::parse(body) {
            if let Err(e) = self
                .lockbox
                .check_rate(caller, RateKind::PayloadRead, &session.rate)
            {
                respond::<()>(out, id, Err(e.answer()), self.max_frame);
                return Next::Continue;
            }
            rated = true;
            let memo = &session.memo;
            let read = match self
                .lockbox
                .recall_payload(caller, get.secret_id, get.version_id, memo)
                .await
            {
                Some(read) => Some(read),
                None => match get.as_text() {
                    Some(text) => Some(
                        self.lockbox
                            .get_payload_remembered(caller, text.secret_id, text.version_id, memo)
                            .await,
                    ),
                    // Ids that are not text: the full decoder answers.
                    None => None,
                },
            };
            if let Some(read) = read {
                respond_payload(out, id, read, self.max_frame);
                return Next::Continue;
            }
        }
        let request = match decode_request::<LockboxRequest>(body) {
            Ok(r) => r,
            Err((id, e)) => {
                respond::<()>(out, id, Err(e), self.max_frame);
                return Next::Continue;
            }
        };
        if let Some(kind) = rate_kind(&request.body).filter(|_| !rated)
            && let Err(e) = self.lockbox.check_rate(caller, kind, &session.rate)
        {
            respond::<()>(out, request.id, Err(e.answer()), self.max_frame);
            return Next::Continue;
        }
        let result = match request.body {
            _ if request.on_behalf_of.is_some() => Err(LockboxError::PermissionDenied(
                "lockboxd does not accept requests on behalf of other subjects".into(),
            )),
            LockboxRequest::Authenticate { token } => {
                let answer = authenticate(&self.lockbox, session, token.expose());
                // A refused token ends the connection: a caller does not get to try again
                // and again on one socket.
                let next = if answer.is_ok() {
                    Next::Continue
                } else {
                    Next::Close
                };
                respond(
                    out,
                    request.id,
                    answer.map_err(|e| e.answer()),
                    self.max_frame,
                );
                return next;
            }
            LockboxRequest::GetPayload {
                secret_id,
                version_id,
            } => {
                let read = self
                    .lockbox
                    .get_payload(caller, &secret_id, version_id.as_deref())
                    .await;
                respond_payload(out, request.id, read, self.max_frame);
                return Next::Continue;
            }
            LockboxRequest::GetPayloadEx { secret, version_id } => {
                let read = get_payload_ex(&self.lockbox, caller, secret, version_id).await;
                respond_payload(out, request.id, read, self.max_frame);
                return Next::Continue;
            }
            body => dispatch::dispatch(&self.lockbox, caller, body).await,
        };
        respond(
            out,
            request.id,
            result.map_err(|e| e.answer()),
            self.max_frame,
        );
        Next::Continue
    }
}

/// Which rate limit a request counts against, if any: payload reads, and requests that
/// change something.
fn rate_kind(request: &LockboxRequest) -> Option<RateKind> {
    use LockboxRequest as R;
    match request {
        R::GetPayload { .. } | R::GetPayloadEx { .. } => Some(RateKind::PayloadRead),
        R::CreateSecret(_)
        | R::UpdateSecret(_)
        | R::DeleteSecret { .. }
        | R::ActivateSecret { .. }
        | R::DeactivateSecret { .. }
        | R::AddVersion(_)
        | R::SetCurrentVersion { .. }
        | R::ScheduleVersionDestruction { .. }
        | R::CancelVersionDestruction { .. }
        | R::CreateCloud { .. }
        | R::DeleteCloud { .. }
        | R::CreateFolder { .. }
        | R::DeleteFolder { .. }
        | R::SetAccessBindings { .. }
        | R::UpdateAccessBindings { .. }
        | R::CreateServiceAccount { .. }
        | R::DeleteServiceAccount { .. }
        | R::CreateServiceAccountKey { .. }
        | R::DeleteServiceAccountKey { .. } => Some(RateKind::Mutation),
        _ => None,
    }
}

/// Switches the connection to the service account a token names, once.
fn authenticate(
    lockbox: &Lockbox,
    session: &Session,
    token: &str,
) -> Result<LockboxResponse, LockboxError> {
    if session.service_account.get().is_some() {
        return Err(LockboxError::FailedPrecondition(
            "this connection already acts as a service account".into(),
        ));
    }
    let account = lockbox.authenticate(token, session.local.frontend)?;
    let subject = account.subject().to_owned();
    session
        .service_account
        .set(account)
        .map_err(|_| LockboxError::FailedPrecondition("authenticated concurrently".into()))?;
    // What the local user was allowed to read says nothing about the account.
    session.memo.forget();
    Ok(LockboxResponse::Authenticated { subject })
}
