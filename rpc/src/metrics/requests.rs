//! The series every server keeps about its requests: how many by method and code, how long
//! they took, how many are running and how many connections are open.
//!
//! The server loop times each call and reads the method from the request frame and the code
//! from the response frame the handler appended, so no handler counts anything itself and
//! no answer goes uncounted. Each (method, code) counter is registered the first time it is
//! seen and kept, so the request path adds to an atomic and never looks a series up.

use super::Metrics;
use lockbox_proto::ErrorCode;
use lockbox_proto::frame::LENGTH_PREFIX;
use lockbox_proto::message::{request_tag, response_code};
use metrics::{Counter, Histogram};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

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
    metrics: Metrics,
    /// `lockbox` or `lockbox_kms`.
    prefix: &'static str,
    /// The request enum's variant names, by tag; a tag past them is `unknown`.
    methods: &'static [&'static str],
    /// By method then code.
    requests: Box<[OnceLock<Counter>]>,
    /// By method.
    latency: Box<[OnceLock<Histogram>]>,
    in_flight: Arc<AtomicI64>,
    connections: Arc<AtomicI64>,
    /// A series that also counts some of the methods, by code.
    also: Option<Also>,
}

/// A counter by code of the requests of some methods (see [`RequestMeter::also_count`]).
struct Also {
    name: &'static str,
    help: &'static str,
    /// Whether each method (by tag, `unknown` last) is counted.
    counted: Box<[bool]>,
    by_code: Box<[OnceLock<Counter>]>,
}

impl std::fmt::Debug for RequestMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMeter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A call being timed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    method: usize,
    started: Instant,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<AtomicI64>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestMeter {
    /// The request series of a server whose series start with `prefix` and whose requests
    /// are the variants `methods` (see `lockbox_proto::variant::names`); `None` when
    /// `metrics` is off, so the server does not even time its calls.
    pub fn new(
        metrics: &Metrics,
        prefix: &'static str,
        methods: &'static [&'static str],
    ) -> Option<Self> {
        if !metrics.is_on() {
            return None;
        }
        let in_flight = Arc::new(AtomicI64::new(0));
        let connections = Arc::new(AtomicI64::new(0));
        let gauge = |name: String, help, value: Arc<AtomicI64>| {
            let gauge = metrics.gauge(&name, help, &[]);
            metrics.on_scrape(move || gauge.set(value.load(Ordering::Relaxed) as f64));
        };
        gauge(
            format!("{prefix}_requests_in_flight"),
            "Requests being answered.",
            in_flight.clone(),
        );
        gauge(
            format!("{prefix}_connections"),
            "Open client connections on the Unix socket.",
            connections.clone(),
        );
        let methods_and_unknown = methods.len() + 1;
        Some(Self {
            metrics: metrics.clone(),
            prefix,
            methods,
            requests: (0..methods_and_unknown * CODES)
                .map(|_| OnceLock::new())
                .collect(),
            latency: (0..methods_and_unknown).map(|_| OnceLock::new()).collect(),
            in_flight,
            connections,
            also: None,
        })
    }

    /// Also counts the requests of `methods`, by code, as the counter `name`: a series of
    /// its own for what a dashboard shows apart (payload reads).
    pub fn also_count(mut self, methods: &[&str], name: &'static str, help: &'static str) -> Self {
        let counted = (0..=self.methods.len())
            .map(|m| methods.contains(&self.method_label(m)))
            .collect();
        self.also = Some(Also {
            name,
            help,
            counted,
            by_code: (0..CODES).map(|_| OnceLock::new()).collect(),
        });
        self
    }

    fn method_label(&self, method: usize) -> &'static str {
        self.methods.get(method).copied().unwrap_or("unknown")
    }

    /// Counts a connection open until the result is dropped.
    pub fn connection(&self) -> OpenConnection {
        self.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.connections.clone())
    }

    /// Starts timing the request in frame `body`.
    pub fn start(&self, body: &[u8]) -> Timing {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let method = request_tag(body)
            .and_then(|t| usize::try_from(t).ok())
            .filter(|t| *t < self.methods.len())
            .unwrap_or(self.methods.len());
        Timing {
            method,
            started: Instant::now(),
        }
    }

    /// Counts the call `timing` started, answered by the response frame `answer` (prefix
    /// and body).
    pub fn finish(&self, timing: Timing, answer: &[u8]) {
        let elapsed = timing.started.elapsed();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let code = match answer.get(LENGTH_PREFIX..).and_then(response_code) {
            Some(outcome) => code_index(outcome),
            // Not a response: a bug, counted as one.
            None => CODES - 1,
        };
        let method = timing.method;
        if let Some(also) = &self.also
            && also.counted[method]
        {
            also.by_code[code]
                .get_or_init(|| {
                    self.metrics
                        .counter(also.name, also.help, &[("code", code_label(code))])
                })
                .increment(1);
        }
        self.requests[method * CODES + code]
            .get_or_init(|| {
                self.metrics.counter(
                    &format!("{}_requests_total", self.prefix),
                    "Requests answered, by method and code.",
                    &[
                        ("method", self.method_label(method)),
                        ("code", code_label(code)),
                    ],
                )
            })
            .increment(1);
        self.latency[method]
            .get_or_init(|| {
                self.metrics.histogram(
                    &format!("{}_request_duration_seconds", self.prefix),
                    "Time from a request's frame read to its answer written, by method.",
                    &[("method", self.method_label(method))],
                )
            })
            .record(elapsed.as_secs_f64());
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
        let meter =
            RequestMeter::new(&metrics, "lockbox", variant::names::<LockboxRequest>()).unwrap();
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
        let text = metrics.render();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        has("lockbox_requests_total{method=\"GetSecret\",code=\"NOT_FOUND\"} 2");
        has("lockbox_requests_total{method=\"unknown\",code=\"INTERNAL\"} 1");
        has("lockbox_request_duration_seconds_count{method=\"GetSecret\"} 2");
        has("lockbox_requests_in_flight 0");
        has("lockbox_connections 1");
        assert!(RequestMeter::new(&Metrics::off(), "lockbox", &[]).is_none());
    }
}
