//! The audit trail of relayed decisions: one line for every decision the KMS makes on behalf
//! of a relayed subject, naming the relay, the subject, the permission, the resource and the
//! outcome.
//!
//! A relayed decrypt happens on every payload read of a KMS-keyed secret, so this is on the
//! hot path: recording formats one line into the trail's buffer, and a background thread
//! writes it (`lockbox_rpc::audit`). The trail fails closed: a decision that cannot be
//! recorded is refused, and no line is dropped.
//!
//! Until [`start`] is called (unit tests, embedding) decisions go to `tracing` at info level.

use lockbox_rpc::audit::{
    AuditError, Sink, end_json_line, now_micros, push_json_escaped, push_json_field, push_rfc3339,
    start_json_line,
};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long the writer waits before trying a failed write again.
const RETRY: Duration = Duration::from_secs(1);

/// The trail of this process, once started.
static SINK: OnceLock<Trail> = OnceLock::new();

/// Where decisions go and as what.
struct Trail {
    sink: Arc<Sink>,
    /// JSON lines into a trail of its own (else `AUDIT` lines into the log).
    json: bool,
    /// Refuse a decision whose line cannot be written (else log the loss).
    fail_closed: bool,
}

/// One relayed decision.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// The enrolled identity that relayed the request.
    pub relay: &'a str,
    /// The subject the decision was made for.
    pub subject: &'a str,
    /// Permission checked.
    pub permission: &'a str,
    /// `key` or `folder`.
    pub resource_kind: &'a str,
    /// The resource id.
    pub resource_id: &'a str,
    /// Whether it was allowed.
    pub allowed: bool,
}

/// Starts the background writer; every later decision is written to `out` as an `AUDIT`
/// line. Only the first start has an effect.
pub fn start(out: impl Write + Send + 'static) {
    if SINK.get().is_some() {
        return;
    }
    let sink = Sink::new(RETRY);
    let trail = Trail {
        sink: sink.clone(),
        json: false,
        fail_closed: true,
    };
    if SINK.set(trail).is_ok() {
        sink.spawn_writer(out);
    }
}

/// Sends every later decision, as a JSON line, to `sink`, a trail of its own
/// (`lockbox_rpc::audit::TrailConfig::open`). Only the first start has an effect.
pub fn start_trail(sink: Arc<Sink>, fail_closed: bool) {
    let _ = SINK.set(Trail {
        sink,
        json: true,
        fail_closed,
    });
}

/// Records a relayed decision; an error when it cannot be (see the module documentation).
pub fn record(decision: Decision<'_>) -> Result<(), AuditError> {
    match SINK.get() {
        Some(trail) => {
            let micros = now_micros();
            let recorded = if trail.json {
                trail.sink.record(|out| format_json(out, micros, &decision))
            } else {
                trail.sink.record(|out| format_line(out, micros, &decision))
            };
            match recorded {
                Err(e) if !trail.fail_closed => {
                    tracing::error!(error = %e, "an audit line was lost (audit.fail_closed is off)");
                    Ok(())
                }
                recorded => recorded,
            }
        }
        None => {
            tracing::info!(
                relay = decision.relay,
                subject = decision.subject,
                permission = decision.permission,
                resource = format!("{} {}", decision.resource_kind, decision.resource_id),
                allowed = decision.allowed,
                "relayed request"
            );
            Ok(())
        }
    }
}

/// The subject of changes the KMS makes by itself (automatic rotation, destruction when
/// its time comes).
pub const SELF_SUBJECT: &str = "lockbox-kms";

/// A request a subject made of the KMS directly (not relayed): a change, or a
/// cryptographic operation.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who asked.
    pub subject: &'a str,
    /// The request, by its name (`Encrypt`, `RotateSymmetricKey`, …).
    pub request: &'a str,
    /// What it was about: `key ID`, `folder ID` or `root`.
    pub resource: &'a str,
    /// `OK` or the error code.
    pub status: &'a str,
}

/// Whether a request may run: refused (fail-closed trail) when its line could not be
/// recorded now. Its line is recorded afterwards by [`record_request`].
pub fn admit() -> Result<(), AuditError> {
    match SINK.get() {
        Some(trail) if trail.fail_closed => trail.sink.admit(),
        _ => Ok(()),
    }
}

/// Records a request [`admit`] let run, with its outcome.
pub fn record_request(request: Request<'_>) {
    let Some(trail) = SINK.get() else {
        tracing::info!(
            subject = request.subject,
            request = request.request,
            resource = request.resource,
            status = request.status,
            "request"
        );
        return;
    };
    let micros = now_micros();
    let recorded = if trail.json {
        trail.sink.record_outcome(|out| {
            start_json_line(out, micros);
            push_json_field(out, "event", request.request);
            push_json_field(out, "subject", request.subject);
            push_json_field(out, "resource", request.resource);
            push_json_field(out, "status", request.status);
            end_json_line(out);
        })
    } else {
        trail.sink.record_outcome(|out| {
            push_rfc3339(out, micros);
            out.push_str(" AUDIT lockbox-kms request: subject=");
            quoted(out, request.subject);
            out.push_str(" request=");
            out.push_str(request.request);
            out.push_str(" resource=");
            quoted(out, request.resource);
            out.push_str(" status=");
            out.push_str(request.status);
            out.push('\n');
        })
    };
    if let Err(e) = recorded {
        tracing::error!(error = %e, request = request.request, subject = request.subject,
                        "an audit line was lost");
    }
}

/// Waits until every decision recorded so far has been written (at shutdown), or the writer
/// cannot write them.
pub fn flush() {
    if let Some(trail) = SINK.get() {
        trail.sink.flush();
    }
}

/// The trail of its own this process writes, if it has one.
pub fn own_trail() -> Option<&'static Arc<Sink>> {
    SINK.get().filter(|t| t.json).map(|t| &t.sink)
}

/// Appends one decision as a JSON object on a line of its own:
/// `{"time","event":"KmsDecision","relay","subject","permission","resource","status"}`.
fn format_json(out: &mut String, micros: i64, d: &Decision<'_>) {
    start_json_line(out, micros);
    push_json_field(out, "event", "KmsDecision");
    push_json_field(out, "relay", d.relay);
    push_json_field(out, "subject", d.subject);
    push_json_field(out, "permission", d.permission);
    out.push_str(",\"resource\":\"");
    out.push_str(d.resource_kind);
    out.push(' ');
    // Ids are the KMS's own, but a refused request may name anything.
    push_json_escaped(out, d.resource_id);
    out.push('"');
    push_json_field(
        out,
        "status",
        if d.allowed { "OK" } else { "PERMISSION_DENIED" },
    );
    end_json_line(out);
}

/// Appends one audit line: an RFC 3339 UTC timestamp, then `name=value` fields with the
/// free-form ones quoted and escaped.
fn format_line(out: &mut String, micros: i64, d: &Decision<'_>) {
    push_rfc3339(out, micros);
    out.push_str(" AUDIT lockbox-kms relayed decision: relay=");
    quoted(out, d.relay);
    out.push_str(" subject=");
    quoted(out, d.subject);
    out.push_str(" permission=");
    out.push_str(d.permission);
    out.push(' ');
    out.push_str(d.resource_kind);
    out.push('=');
    quoted(out, d.resource_id);
    out.push_str(if d.allowed {
        " allowed=true\n"
    } else {
        " allowed=false\n"
    });
}

/// The bytes `{:?}` writes as they are: printable ASCII but the quote and the backslash.
const WRITTEN_AS_IS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        table[b as usize] = b != b'"' && b != b'\\';
        b += 1;
    }
    table
};

/// `s` as `{:?}` writes it: in quotes, with quotes, backslashes and anything unprintable
/// escaped, so a subject cannot forge a line or a field.
fn quoted(out: &mut String, s: &str) {
    if s.bytes().all(|b| WRITTEN_AS_IS[usize::from(b)]) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{s:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockbox_rpc::audit::civil_from_days;

    #[test]
    fn a_json_line_names_everything_and_escapes_what_it_must() {
        let mut line = String::new();
        let decision = Decision {
            relay: "user:lockbox",
            subject: "user:\"odd\"\n",
            permission: "kms.keys.decrypt",
            resource_kind: "key",
            resource_id: "abj\"0123",
            allowed: false,
        };
        format_json(&mut line, 1_763_861_840_471_645, &decision);
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2025-11-23T01:37:20.471645Z");
        assert_eq!(v["event"], "KmsDecision");
        assert_eq!(v["subject"], "user:\"odd\"\n");
        assert_eq!(v["resource"], "key abj\"0123");
        assert_eq!(v["status"], "PERMISSION_DENIED");
    }

    #[test]
    fn a_line_names_everything() {
        let mut line = String::new();
        let decision = Decision {
            relay: "user:lockbox",
            subject: "serviceAccount:aje0123",
            permission: "kms.keys.decrypt",
            resource_kind: "key",
            resource_id: "abj0123",
            allowed: false,
        };
        format_line(&mut line, 1_763_861_840_471_645, &decision);
        assert_eq!(
            line,
            "2025-11-23T01:37:20.471645Z AUDIT lockbox-kms relayed decision: \
             relay=\"user:lockbox\" subject=\"serviceAccount:aje0123\" \
             permission=kms.keys.decrypt key=\"abj0123\" allowed=false\n"
        );
    }

    /// The line as the formatting machinery writes it.
    fn formatted(micros: i64, d: &Decision<'_>) -> String {
        let (days, rem) = (
            micros.div_euclid(86_400_000_000),
            micros.rem_euclid(86_400_000_000),
        );
        let (year, month, day) = civil_from_days(days);
        let secs = rem / 1_000_000;
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z AUDIT lockbox-kms relayed \
             decision: relay={:?} subject={:?} permission={} {}={:?} allowed={}\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            rem % 1_000_000,
            d.relay,
            d.subject,
            d.permission,
            d.resource_kind,
            d.resource_id,
            d.allowed,
        )
    }

    #[test]
    fn lines_are_written_as_the_formatting_machinery_writes_them() {
        let odd = [
            "user:lockbox",
            "",
            "say \"hi\"",
            "back\\slash",
            "new\nline AUDIT forged",
            "tab\there",
            "caf\u{e9} \u{1f512}",
            "nul\0 del\u{7f} bidi\u{202e}",
        ];
        let times = [
            0,
            1_763_861_840_471_645,
            -1,
            -62_167_219_200_000_001,
            253_402_300_800_000_000,
            86_399_999_999,
        ];
        for (i, text) in odd.iter().enumerate() {
            for micros in times {
                let d = Decision {
                    relay: text,
                    subject: odd[(i + 1) % odd.len()],
                    permission: "kms.keys.decrypt",
                    resource_kind: "key",
                    resource_id: odd[(i + 2) % odd.len()],
                    allowed: i % 2 == 0,
                };
                let mut line = String::new();
                format_line(&mut line, micros, &d);
                assert_eq!(line, formatted(micros, &d), "{text:?} at {micros}");
            }
        }
    }
}
