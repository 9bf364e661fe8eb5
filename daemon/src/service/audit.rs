//! lockboxd's audit trail: one JSON object a line for every payload read (allowed or not)
//! and every mutation, written to its own files by `lockbox_rpc::audit` (off the request
//! path, hash-chained, rotated by size). Fail-closed by default: a request whose line cannot
//! be recorded is refused with `Unavailable`.
//!
//! The schema (README, "Audit trail") is flat, with short names, since a busy daemon writes
//! a line per read: `time`, `event` (`GetPayload`, or the operation's description),
//! `subject`, `secret` (an id, or `folder/name` as the request named it), `version`,
//! `frontend` and `pid` (where the request came from), `resource` and `operation`
//! (mutations), `permission` (`Denied`: a refused permission check other than a payload
//! read's), `status` (`OK` or the error code), and `count` and `last` (a run of reads).
//!
//! A connection repeating one read (answered by its [`ReadMemo`](super::ReadMemo)) pays a
//! count for each, not a line: its [`ReadRun`] becomes one line with the first read's time,
//! `count` and the last one's time, when the trail next writes or the run ends (the
//! connection reads something else, or a read fails). Reads slower than the trail's writes
//! still get a line each.

use super::{Caller, Lockbox, PayloadRead, ReadMemo};
use crate::error::LockboxError;
use crate::model::OperationRecord;
use crate::store::Batch;
use lockbox_rpc::audit::{
    AuditError, HeadSignature, HeldLines, Sink, end_json_line, now_micros, push_json_field,
    push_json_number, push_rfc3339, start_json_line,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Name of lockboxd's key in lockbox-kms that signs its trail's chain head.
const SIGNER_NAME: &str = "lockboxd-audit";

/// How long lockboxd waits before asking lockbox-kms for its signature key again.
const SIGNER_RETRY: Duration = Duration::from_secs(10);

/// Where lockboxd's audit lines go, and what happens when they cannot.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    sink: Arc<Sink>,
    /// Refuse a request whose line cannot be recorded (else log and go on).
    fail_closed: bool,
}

impl AuditTrail {
    /// A trail into `sink` (started).
    pub fn new(sink: Arc<Sink>, fail_closed: bool) -> Self {
        Self { sink, fail_closed }
    }

    /// Waits until every line so far is written (at shutdown).
    pub fn flush(&self) {
        self.sink.flush();
    }

    /// What becomes of a request the trail could not take a line for: refused
    /// (`Unavailable`) when it fails closed, else logged and served.
    fn require(&self, taken: Result<(), AuditError>) -> Result<(), LockboxError> {
        match taken {
            Ok(()) => Ok(()),
            Err(e) if self.fail_closed => Err(LockboxError::Unavailable(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "an audited request is served without its line \
                                             (audit.fail_closed is off)");
                Ok(())
            }
        }
    }
}

/// A connection's run of allowed reads of the secret version its memo remembers, counted
/// until the trail's writer asks for its line (or the run ends).
#[derive(Debug, Default)]
pub(super) struct ReadRun(Mutex<Run>);

#[derive(Debug, Default)]
struct Run {
    /// The line's fields after its time (empty until the run's first read): the caller,
    /// secret and version never change within a run.
    fields: String,
    /// Reads not yet recorded.
    count: u64,
    /// Times of the first and the last of them.
    first: i64,
    last: i64,
    /// Whether the trail holds the run, to ask for its line at its next write.
    held: bool,
}

impl ReadRun {
    fn lock(&self) -> MutexGuard<'_, Run> {
        // Every update leaves the run whole.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Run {
    /// Appends the line of the reads counted so far, if any, and starts counting again.
    fn take_line(&mut self, out: &mut String) {
        if self.count == 0 {
            return;
        }
        start_json_line(out, self.first);
        out.push_str(&self.fields);
        if self.count > 1 {
            push_json_number(out, "count", self.count);
            out.push_str(",\"last\":\"");
            push_rfc3339(out, self.last);
            out.push('"');
        }
        end_json_line(out);
        self.count = 0;
    }
}

impl HeldLines for ReadRun {
    fn drain(&self, out: &mut String) {
        let mut run = self.lock();
        run.held = false;
        run.take_line(out);
    }
}

/// Appends a payload read's fields after the time.
fn push_read(out: &mut String, caller: &Caller, secret: &str, version: Option<&str>, status: &str) {
    push_json_field(out, "event", "GetPayload");
    push_caller(out, caller);
    push_json_field(out, "secret", secret);
    if let Some(v) = version {
        push_json_field(out, "version", v);
    }
    push_json_field(out, "status", status);
}

/// Appends who called and through what: `subject`, `frontend`, and `pid` when known.
fn push_caller(out: &mut String, caller: &Caller) {
    push_json_field(out, "subject", caller.subject());
    push_json_field(out, "frontend", caller.frontend.name);
    if let Some(pid) = caller.frontend.pid {
        push_json_number(out, "pid", pid.into());
    }
}

impl Lockbox {
    /// The KMS key that signs the trail's chain head: the one recorded, or, at the first
    /// start with a trail, a new ECDSA key of lockboxd's own in `kms_folder`.
    async fn audit_signer(&self, kms_folder: &str) -> Result<String, LockboxError> {
        if let Some(key_id) = self.records.audit_signer()? {
            return Ok(key_id);
        }
        let key_id = self
            .kms
            .create_own_signature_key(kms_folder, SIGNER_NAME)
            .await?;
        let mut batch = Batch::default();
        self.records.put_audit_signer(&mut batch, &key_id);
        let writer = self.write_lock().await;
        self.commit(writer, batch).await?;
        tracing::info!(kms_key_id = %key_id, "created the key that signs the audit trail");
        Ok(key_id)
    }

    /// Finds or creates the key that signs the trail, when there is a trail (at start,
    /// before serving, so even a short run ends signed); a failure is logged and
    /// [`keep_audit_trail_signed`](Self::keep_audit_trail_signed) tries again.
    pub async fn prepare_audit_signer(&self, kms_folder: &str) {
        if self.audit.is_some()
            && let Err(e) = self.audit_signer(kms_folder).await
        {
            tracing::warn!(error = %e, "no key to sign the audit trail with yet");
        }
    }

    /// Has lockbox-kms sign `message` with `key_id`.
    async fn sign_head(&self, key_id: String, message: String) -> Result<HeadSignature, String> {
        match self.kms.sign(&key_id, message.as_bytes()).await {
            Ok(signature) => Ok(HeadSignature { key_id, signature }),
            Err(LockboxError::PermissionDenied(e)) => Err(format!(
                "{e} (lockboxd needs kms.asymmetricSignatureKeys.signer on its key {key_id}: \
                 `lockbox-kms init --daemon` grants it on its folder)"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Keeps the trail's chain head signed by lockbox-kms: finds or creates the key (trying
    /// again while lockbox-kms cannot answer), then signs every `every` (only at shutdown
    /// when `None`). Runs for ever.
    pub async fn keep_audit_trail_signed(
        self: Arc<Self>,
        kms_folder: String,
        every: Option<Duration>,
    ) {
        let Some(trail) = self.audit.clone() else {
            return;
        };
        let key_id = loop {
            match self.audit_signer(&kms_folder).await {
                Ok(key_id) => break key_id,
                Err(e) => {
                    tracing::warn!(error = %e, "no key to sign the audit trail with yet; \
                                                trying again");
                    tokio::time::sleep(SIGNER_RETRY).await;
                }
            }
        };
        let Some(every) = every else {
            return;
        };
        let lockbox = self.clone();
        trail
            .sink
            .sign_heads(every, move |message| {
                let (lockbox, key_id) = (lockbox.clone(), key_id.clone());
                async move { lockbox.sign_head(key_id, message).await }
            })
            .await;
    }

    /// Writes every line recorded so far and signs the chain head they end in (at
    /// shutdown): a trail that ends in a signature vouches for all of it.
    pub async fn close_audit_trail(&self) {
        let Some(trail) = &self.audit else {
            return;
        };
        trail.flush();
        let signed = match self.records.audit_signer() {
            Ok(Some(key_id)) => {
                trail
                    .sink
                    .sign_head(|message| self.sign_head(key_id, message))
                    .await
            }
            Ok(None) => Err("lockboxd has no key to sign it with yet".into()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = signed {
            tracing::warn!(error = %e, "the audit trail ends unsigned");
        }
        trail.flush();
    }

    /// Records a JSON line whose fields `line` appends after the time, or says why it
    /// cannot be.
    fn audited(&self, line: impl FnOnce(&mut String)) -> Result<(), LockboxError> {
        let Some(trail) = &self.audit else {
            return Ok(());
        };
        let micros = now_micros();
        let recorded = trail.sink.record(|out| {
            start_json_line(out, micros);
            line(out);
            end_json_line(out);
        });
        trail.require(recorded)
    }

    /// Records a payload read of `secret` (an id, or `folder/name`) and passes its result
    /// on; a read that cannot be recorded fails instead, when the trail fails closed.
    pub(super) fn audit_read(
        &self,
        caller: &Caller,
        secret: &str,
        version: Option<&str>,
        read: Result<PayloadRead, LockboxError>,
    ) -> Result<PayloadRead, LockboxError> {
        let version = match &read {
            Ok(r) => Some(r.version_id()),
            Err(_) => version,
        };
        let status = read.as_ref().err().map_or("OK", LockboxError::code_name);
        self.audited(|out| push_read(out, caller, secret, version, status))?;
        read
    }

    /// Records a read `memo` answered: counted in its run when allowed (see [`ReadRun`]),
    /// else a line of its own after the run's. Like [`audit_read`](Self::audit_read)
    /// otherwise.
    pub(super) fn audit_repeated_read(
        &self,
        caller: &Caller,
        memo: &ReadMemo,
        secret: &str,
        read: Result<PayloadRead, LockboxError>,
    ) -> Result<PayloadRead, LockboxError> {
        let Some(trail) = &self.audit else {
            return read;
        };
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                self.end_read_run(memo);
                return self.audit_read(caller, secret, None, Err(e));
            }
        };
        trail.require(trail.sink.admit())?;
        let now = now_micros();
        let hold = {
            let mut run = memo.run.lock();
            if run.fields.is_empty() {
                push_read(
                    &mut run.fields,
                    caller,
                    secret,
                    Some(read.version_id()),
                    "OK",
                );
            }
            if run.count == 0 {
                run.first = now;
            }
            run.count += 1;
            run.last = now;
            !std::mem::replace(&mut run.held, true)
        };
        if hold {
            trail.sink.hold(memo.run.clone());
        }
        Ok(read)
    }

    /// Records the reads `memo`'s run counted, if any, and ends it: the memo is about to
    /// change, or a read it answered failed.
    pub(super) fn end_read_run(&self, memo: &ReadMemo) {
        let Some(trail) = &self.audit else {
            return;
        };
        let mut line = String::new();
        {
            let mut run = memo.run.lock();
            run.take_line(&mut line);
            run.fields.clear();
        }
        if line.is_empty() {
            return;
        }
        // The reads were allowed (admitted) and answered: their line is kept like an
        // outcome's.
        if let Err(e) = trail.sink.record_outcome(|out| out.push_str(&line)) {
            tracing::error!(error = %e, "the line of a run of reads was lost");
        }
    }

    /// Records a mutation by its operation record, before its batch is applied.
    pub(super) fn audit_operation(
        &self,
        caller: &Caller,
        op: &OperationRecord,
    ) -> Result<(), LockboxError> {
        self.audited(|out| {
            push_json_field(out, "event", &op.description);
            push_caller(out, caller);
            push_json_field(out, "resource", &op.resource_id);
            push_json_field(out, "operation", &op.id);
            push_json_field(out, "status", "OK");
        })
    }

    /// Records a refused permission check (payload reads are recorded as reads). The
    /// refusal stands whether or not the line can be written.
    pub(super) fn audit_denial(&self, caller: &Caller, permission: &str, resource: &str) {
        let recorded = self.audited(|out| {
            push_json_field(out, "event", "Denied");
            push_caller(out, caller);
            push_json_field(out, "permission", permission);
            push_json_field(out, "resource", resource);
            push_json_field(out, "status", "PERMISSION_DENIED");
        });
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "a refusal could not be audited");
        }
    }
}
