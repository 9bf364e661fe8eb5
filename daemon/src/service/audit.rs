//! lockboxd's audit trail: one JSON object a line for every payload read (allowed or not)
//! and every mutation, written to its own files by `lockbox_rpc::audit` (off the request
//! path, hash-chained, rotated by size). Fail-closed by default: a request whose line cannot
//! be recorded is refused with `Unavailable`.
//!
//! The schema (README, "Audit trail") is flat, with short names, since a busy daemon writes
//! a line per read: `time`, `event` (`GetPayload`, or the operation's description),
//! `subject`, `secret` (an id, or `folder/name` as the request named it), `version`,
//! `resource` and `operation` (mutations), `permission` (`Denied`: a refused permission
//! check other than a payload read's), `status` (`OK` or the error code).

use super::{Caller, Lockbox, PayloadRead};
use crate::error::LockboxError;
use crate::model::OperationRecord;
use lockbox_rpc::audit::{Sink, end_json_line, now_micros, push_json_field, start_json_line};
use std::sync::Arc;

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
}

impl Lockbox {
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
        match recorded {
            Ok(()) => Ok(()),
            Err(e) if trail.fail_closed => Err(LockboxError::Unavailable(e.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "an audit line was lost (audit.fail_closed is off)");
                Ok(())
            }
        }
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
        self.audited(|out| {
            push_json_field(out, "event", "GetPayload");
            push_json_field(out, "subject", caller.subject());
            push_json_field(out, "secret", secret);
            if let Some(v) = version {
                push_json_field(out, "version", v);
            }
            let status = read.as_ref().err().map_or("OK", LockboxError::code_name);
            push_json_field(out, "status", status);
        })?;
        read
    }

    /// Records a mutation by its operation record, before its batch is applied.
    pub(super) fn audit_operation(
        &self,
        caller: &Caller,
        op: &OperationRecord,
    ) -> Result<(), LockboxError> {
        self.audited(|out| {
            push_json_field(out, "event", &op.description);
            push_json_field(out, "subject", caller.subject());
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
            push_json_field(out, "subject", caller.subject());
            push_json_field(out, "permission", permission);
            push_json_field(out, "resource", resource);
            push_json_field(out, "status", "PERMISSION_DENIED");
        });
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "a refusal could not be audited");
        }
    }
}
