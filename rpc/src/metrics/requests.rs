//! The series every server keeps about its requests: how many by method and code, how long
//! they took, how many are running and how many connections are open.
//!
//! The server loop times each call and reads the method from the request frame and the code
//! from the response frame the handler appended, so no handler counts anything itself and
//! no answer goes uncounted.
//!
//! They do not use `metrics` handles: they are updated on every request, and fixed tables
//! of atomics (a counter per method and code, [`Histograms`] by method) cost a third of a
//! counter and a histogram of the exporter (whose histogram keeps every sample, with a
//! timestamp, until it is rendered); `benches/metrics.rs` measures both. The clock is the
//! CPU's time-stamp counter where it is reliable, read twice per request. The tables render
//! themselves in the text format after the exporter's series.

use super::Metrics;
use super::histograms::{Histograms, clock, zeros};
use lockbox_proto::ErrorCode;
use lockbox_proto::frame::LENGTH_PREFIX;
use lockbox_proto::message::{request_tag, response_code};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Codes counted: `OK`, then every [`ErrorCode`] in its order.
pub const CODES: usize = 1 + ErrorCode::Internal as usize + 1;

/// The index among [`CODES`] of an outcome: 0 for success, then the error codes.
pub fn code_index(error: Option<ErrorCode>) -> usize {
    error.map_or(0, |code| 1 + code as usize)
}

/// The label of code index `i`.
pub fn code_label(i: usize) -> &'static str {
    const ALL: [ErrorCode; CODES - 1] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::PermissionDenied,
        ErrorCode::Unauthenticated,
        ErrorCode::FailedPrecondition,
        ErrorCode::ResourceExhausted,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];
    match i.checked_sub(1) {
        None => "OK",
        Some(e) => ALL.get(e).map_or("INTERNAL", |c| c.as_str()),
    }
}

/// A server's request series.
pub struct RequestMeter {
    tables: Arc<Tables>,
}

/// The counts, shared with the renderer.
struct Tables {
    /// `lockbox` or `lockbox_kms`.
    prefix: &'static str,
    /// The request enum's variant names, by tag; a tag past them is `unknown`.
    methods: &'static [&'static str],
    /// By method then code.
    requests: Box<[AtomicU64]>,
    /// By method.
    latency: Arc<Histograms>,
    /// Calls started; those answered are the sum of `requests`.
    started: AtomicU64,
    connections: AtomicI64,
    /// A series that also counts some of the methods, by code.
    also: Option<Also>,
}

/// The tables of an [`AlsoCount`].
struct Also {
    name: &'static str,
    help: &'static str,
    /// Whether each method (by tag, `unknown` last) is counted.
    counted: Box<[bool]>,
    by_code: Box<[AtomicU64]>,
}

impl std::fmt::Debug for RequestMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMeter")
            .field("prefix", &self.tables.prefix)
            .finish_non_exhaustive()
    }
}

/// A call being timed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    method: usize,
    started: u64,
}

/// One open connection, counted until dropped.
pub struct OpenConnection(Arc<Tables>);

impl std::fmt::Debug for OpenConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenConnection")
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A counter, by code, of the requests of some methods: a series of its own for what a
/// dashboard shows apart (payload reads).
#[derive(Debug, Clone, Copy)]
pub struct AlsoCount {
    /// The methods counted.
    pub methods: &'static [&'static str],
    /// The counter's name.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
}

impl RequestMeter {
    /// The request series of a server whose series start with `prefix` and whose requests
    /// are the variants `methods` (see `lockbox_proto::variant::names`), with `also` if
    /// given; `None` when `metrics` is off, so the server does not even time its calls. The
    /// series render with `metrics`'s.
    pub fn new(
        metrics: &Metrics,
        prefix: &'static str,
        methods: &'static [&'static str],
        also: Option<AlsoCount>,
    ) -> Option<Self> {
        let methods_and_unknown = methods.len() + 1;
        let label = |m: usize| methods.get(m).copied().unwrap_or("unknown");
        let tables = Arc::new(Tables {
            prefix,
            methods,
            requests: zeros(methods_and_unknown * CODES),
            latency: Histograms::new(
                metrics,
                format!("{prefix}_request_duration_seconds"),
                "Time from a request's frame read to its answer written, by method.",
                "method",
                (0..methods_and_unknown).map(label).collect(),
            )?,
            started: AtomicU64::new(0),
            connections: AtomicI64::new(0),
            also: also.map(|a| Also {
                name: a.name,
                help: a.help,
                counted: (0..methods_and_unknown)
                    .map(|m| a.methods.contains(&label(m)))
                    .collect(),
                by_code: zeros(CODES),
            }),
        });
        let rendered = tables.clone();
        metrics
            .render_also(move |out| rendered.render(out))
            .then_some(Self { tables })
    }

    /// Counts a connection open until the result is dropped.
    pub fn connection(&self) -> OpenConnection {
        self.tables.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.tables.clone())
    }

    /// Starts timing the request in frame `body`.
    #[inline]
    pub fn start(&self, body: &[u8]) -> Timing {
        let t = &self.tables;
        t.started.fetch_add(1, Ordering::Relaxed);
        let method = request_tag(body)
            .and_then(|tag| usize::try_from(tag).ok())
            .filter(|tag| *tag < t.methods.len())
            .unwrap_or(t.methods.len());
        Timing {
            method,
            started: clock().raw(),
        }
    }

    /// Counts the call `timing` started, answered by the response frame `answer` (prefix
    /// and body).
    #[inline]
    pub fn finish(&self, timing: Timing, answer: &[u8]) {
        let nanos = clock().delta_as_nanos(timing.started, clock().raw());
        let t = &self.tables;
        let code = match answer.get(LENGTH_PREFIX..).and_then(response_code) {
            Some(outcome) => code_index(outcome),
            // Not a response: a bug, counted as one.
            None => CODES - 1,
        };
        let method = timing.method;
        t.requests[method * CODES + code].fetch_add(1, Ordering::Relaxed);
        t.latency.record(method, nanos);
        if let Some(also) = &t.also
            && also.counted[method]
        {
            also.by_code[code].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Tables {
    fn method_label(&self, method: usize) -> &'static str {
        self.methods.get(method).copied().unwrap_or("unknown")
    }

    /// The tables in the text format: counters and histograms of the methods seen.
    fn render(&self, out: &mut String) {
        let p = self.prefix;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let answered: u64 = self.requests.iter().map(load).sum();
        let _ = write!(
            out,
            "# HELP {p}_requests_in_flight Requests being answered.\n\
             # TYPE {p}_requests_in_flight gauge\n\
             {p}_requests_in_flight {}\n\
             # HELP {p}_connections Open client connections on the Unix socket.\n\
             # TYPE {p}_connections gauge\n\
             {p}_connections {}\n\
             # HELP {p}_requests_total Requests answered, by method and code.\n\
             # TYPE {p}_requests_total counter\n",
            load(&self.started).saturating_sub(answered),
            self.connections.load(Ordering::Relaxed),
        );
        for method in 0..=self.methods.len() {
            for code in 0..CODES {
                let n = load(&self.requests[method * CODES + code]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "{p}_requests_total{{method=\"{}\",code=\"{}\"}} {n}",
                        self.method_label(method),
                        code_label(code)
                    );
                }
            }
        }
        if let Some(also) = &self.also {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n",
                name = also.name,
                help = also.help
            );
            for (code, n) in also.by_code.iter().enumerate() {
                let n = load(n);
                if n > 0 {
                    let _ = writeln!(out, "{}{{code=\"{}\"}} {n}", also.name, code_label(code));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockbox_proto::lockbox::LockboxRequest;
    use lockbox_proto::{Error, Request, Response, frame, variant};

    #[test]
    fn every_code_has_its_own_label() {
        let labels: std::collections::BTreeSet<_> = (0..CODES).map(code_label).collect();
        assert_eq!(labels.len(), CODES);
        assert_eq!(code_label(1 + ErrorCode::NotFound as usize), "NOT_FOUND");
    }

    #[test]
    fn calls_are_counted_by_method_and_code() {
        let metrics = Metrics::on();
        let also = AlsoCount {
            methods: &["GetSecret"],
            name: "lockbox_gets_total",
            help: "Gets.",
        };
        let meter = RequestMeter::new(
            &metrics,
            "lockbox",
            variant::names::<LockboxRequest>(),
            Some(also),
        )
        .unwrap();
        let request = postcard::to_allocvec(&Request {
            id: 9,
            on_behalf_of: None,
            body: LockboxRequest::GetSecret {
                secret_id: "e6q1".into(),
            },
        })
        .unwrap();
        let mut answer = Vec::new();
        let refused: Response<()> = Response {
            id: 9,
            result: Err(Error::new(ErrorCode::NotFound, "no such secret")),
        };
        frame::encode(&refused, &mut answer, 1 << 20).unwrap();
        for _ in 0..2 {
            let timing = meter.start(&request);
            meter.finish(timing, &answer);
        }
        let timing = meter.start(b"\xff");
        meter.finish(timing, b"");
        let _open = meter.connection();
        let _running = meter.start(&request);
        let text = metrics.render();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        has("lockbox_requests_total{method=\"GetSecret\",code=\"NOT_FOUND\"} 2");
        has("lockbox_requests_total{method=\"unknown\",code=\"INTERNAL\"} 1");
        has("lockbox_request_duration_seconds_count{method=\"GetSecret\"} 2");
        has("lockbox_request_duration_seconds_bucket{method=\"GetSecret\",le=\"+Inf\"} 2");
        has("lockbox_gets_total{code=\"NOT_FOUND\"} 2");
        has("lockbox_requests_in_flight 1");
        has("lockbox_connections 1");
        assert!(RequestMeter::new(&Metrics::off(), "lockbox", &[], None).is_none());
    }
}
