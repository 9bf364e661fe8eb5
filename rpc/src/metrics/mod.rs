//! Prometheus metrics: the series a process keeps, rendered in the text format and served to
//! Prometheus on a loopback HTTP listener.
//!
//! Series are `metrics` handles from a `metrics-exporter-prometheus` recorder that this
//! process owns (no global recorder: a handle comes from a [`Metrics`], so what a server
//! records is what its caller gave it, and a test reads its own). The series updated on
//! every request are not handles but fixed tables of atomics that render themselves after
//! the exporter's text ([`Metrics::render_also`]): measured several times cheaper
//! (`benches/metrics.rs`). Whatever is cheaper to read than to keep up to date (gauges over
//! the stored data, process figures) is read by collectors when Prometheus scrapes
//! ([`Metrics::on_scrape`]).
//!
//! Metrics are off unless a listen address is configured: the endpoint is readable by every
//! local user, and it names clouds, folders and keys. With them off every handle is a no-op
//! and the servers skip their request timing altogether.
//!
//! - this module: the registry, its configuration and rendering;
//! - [`http`]: the listener (`GET /metrics` only, bounded like the Unix servers);
//! - [`requests`]: the request series every server keeps, by method and code;
//! - [`histograms`]: latency histograms in fixed tables, for the request paths;
//! - `process`: resident memory, descriptors, CPU time and start time from `/proc`.

pub mod histograms;
pub mod http;
mod process;
pub mod requests;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use histograms::Histograms;
pub use requests::{AlsoCount, RequestMeter};

/// The `[metrics]` section of a configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Loopback address and port to serve `/metrics` on, e.g. `127.0.0.1:9464`. Unset (the
    /// default): no metrics.
    pub listen: Option<SocketAddr>,
}

impl MetricsConfig {
    /// The configured address, checked to be a loopback one; `None` when metrics are off.
    pub fn address(&self) -> Result<Option<SocketAddr>, String> {
        match self.listen {
            Some(a) if !a.ip().is_loopback() => Err(format!(
                "metrics.listen: {a} is not a loopback address; the metrics endpoint is served \
                 on 127.0.0.1 or [::1] only (put a proxy in front to expose it further)"
            )),
            other => Ok(other),
        }
    }

    /// The registry and, when metrics are on, the bound listener to serve it on
    /// ([`http::spawn`]). Called before the runtime starts, so that a bad address or a port
    /// in use stops the process at start with a clear error.
    pub fn open(&self) -> Result<(Metrics, Option<std::net::TcpListener>), String> {
        Ok(match self.bind()? {
            Some(listener) => (Metrics::on(), Some(listener)),
            None => (Metrics::off(), None),
        })
    }

    /// Binds the configured address, if any.
    pub fn bind(&self) -> Result<Option<std::net::TcpListener>, String> {
        let Some(address) = self.address()? else {
            return Ok(None);
        };
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| format!("metrics.listen: cannot listen on {address}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("metrics.listen: {e}"))?;
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "metrics served on http://{address}/metrics");
        }
        Ok(Some(listener))
    }
}

/// Upper bounds, in seconds, of the buckets of every `…_seconds` histogram: from the
/// microseconds of a cached read to the seconds of a KMS that does not answer.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds of the buckets of a histogram of sizes (`…_size`): powers of two.
pub const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// How long the costly collectors' figures stand for the next scrapes: a local user scraping
/// in a loop costs one read of the store a second, not one per request.
const RECOLLECT_AFTER: Duration = Duration::from_secs(1);

/// How long a gauge that no collector sets any more stays in the scrapes. Collectors set
/// every gauge they know at each scrape, so only gauges of things gone go stale.
const FORGET_GAUGES_AFTER: Duration = Duration::from_secs(600);

/// How often histograms hand their samples to the renderer, so that samples do not pile up
/// when no one scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A process's series, or nothing when metrics are off. Cheap to clone: clones share them.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Registry>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics").field(&self.is_on()).finish()
    }
}

/// A collector run before each scrape is rendered.
type Collector = Box<dyn Fn() + Send + Sync>;

/// Series that write themselves in the text format.
type Text = Box<dyn Fn(&mut String) + Send + Sync>;

struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    collectors: Mutex<Vec<Collector>>,
    /// Collectors run at most once per [`RECOLLECT_AFTER`].
    costly: Mutex<Vec<Collector>>,
    /// Series kept outside the exporter, appended to its text.
    texts: Mutex<Vec<Text>>,
    /// When the collectors last ran.
    collected: Mutex<Option<Instant>>,
}

/// Where series are registered from; the exporter does not show it.
static METADATA: Metadata<'static> =
    Metadata::new("lockbox", metrics::Level::INFO, Some(module_path!()));

impl Metrics {
    /// Metrics off: every handle is a no-op.
    pub fn off() -> Self {
        Self(None)
    }

    /// A registry that keeps series, with the process's own figures collected at each
    /// scrape.
    pub fn on() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS));
        // Only an empty bucket list is refused, and neither is empty.
        let builder = builder
            .unwrap_or_else(|_| PrometheusBuilder::new())
            // A gauge no collector sets any more (a folder deleted) leaves the scrape.
            .idle_timeout(MetricKindMask::GAUGE, Some(FORGET_GAUGES_AFTER));
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Self(Some(Arc::new(Registry {
            recorder,
            handle,
            collectors: Mutex::new(Vec::new()),
            costly: Mutex::new(Vec::new()),
            texts: Mutex::new(Vec::new()),
            collected: Mutex::new(None),
        })));
        process::collect_with(&metrics);
        metrics
    }

    /// Whether series are kept.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    fn key(name: &str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        Key::from_parts(name.to_owned(), labels)
    }

    /// The counter `name` with `labels`, described by `help`.
    pub fn counter(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Counter {
        let Some(registry) = &self.0 else {
            return Counter::noop();
        };
        registry.recorder.describe_counter(
            KeyName::from(name.to_owned()),
            None,
            SharedString::from(help),
        );
        registry
            .recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    /// The gauge `name` with `labels`, described by `help`.
    pub fn gauge(&self, name: &str, help: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        let Some(registry) = &self.0 else {
            return Gauge::noop();
        };
        registry.recorder.describe_gauge(
            KeyName::from(name.to_owned()),
            None,
            SharedString::from(help),
        );
        registry
            .recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    /// The histogram `name` with `labels`, described by `help`. Names ending in `_seconds`
    /// get [`LATENCY_BUCKETS`], in `_size` [`SIZE_BUCKETS`].
    pub fn histogram(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Histogram {
        let Some(registry) = &self.0 else {
            return Histogram::noop();
        };
        registry.recorder.describe_histogram(
            KeyName::from(name.to_owned()),
            None,
            SharedString::from(help),
        );
        registry
            .recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// Runs `collect` before each scrape is rendered, to set gauges from state that is
    /// cheaper to read than to keep up to date (an atomic, a file in `/proc`). It runs on a
    /// blocking thread.
    pub fn on_scrape(&self, collect: impl Fn() + Send + Sync + 'static) {
        if let Some(registry) = &self.0 {
            lock(&registry.collectors).push(Box::new(collect));
        }
    }

    /// As [`on_scrape`](Self::on_scrape), for a collector that reads much (the store): it
    /// runs at most once a second, and a scrape sooner shows its last figures.
    pub fn on_scrape_costly(&self, collect: impl Fn() + Send + Sync + 'static) {
        if let Some(registry) = &self.0 {
            lock(&registry.costly).push(Box::new(collect));
        }
    }

    /// The scrape: the collectors run, then every series in the Prometheus text format.
    /// Blocking: the collectors may read the store.
    pub fn render(&self) -> String {
        let Some(registry) = &self.0 else {
            return String::new();
        };
        {
            let mut collected = lock(&registry.collected);
            if collected.is_none_or(|at| at.elapsed() >= RECOLLECT_AFTER) {
                for collect in lock(&registry.costly).iter() {
                    collect();
                }
                *collected = Some(Instant::now());
            }
        }
        for collect in lock(&registry.collectors).iter() {
            collect();
        }
        let mut text = registry.handle.render();
        for render in lock(&registry.texts).iter() {
            render(&mut text);
        }
        text
    }

    /// Appends what `render` writes, in the text format, to every scrape: for series kept
    /// outside the exporter ([`RequestMeter`]). False, and `render` dropped, when metrics
    /// are off.
    pub fn render_also(&self, render: impl Fn(&mut String) + Send + Sync + 'static) -> bool {
        match &self.0 {
            Some(registry) => {
                lock(&registry.texts).push(Box::new(render));
                true
            }
            None => false,
        }
    }

    /// Hands histogram samples to the renderer every few seconds, until the runtime ends.
    fn keep_up(&self) {
        if let Some(registry) = &self.0 {
            let handle = registry.handle.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(UPKEEP_EVERY);
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            });
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are replaced whole; a panicking holder leaves a consistent one.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        let config = |listen: &str| MetricsConfig {
            listen: Some(listen.parse().unwrap()),
        };
        assert_eq!(MetricsConfig::default().address(), Ok(None));
        assert!(config("127.0.0.1:9464").address().unwrap().is_some());
        assert!(config("[::1]:9464").address().unwrap().is_some());
        for open in ["0.0.0.0:9464", "[::]:9464", "192.168.1.5:9464"] {
            let e = config(open).address().unwrap_err();
            assert!(e.contains("not a loopback address"), "{e}");
        }
        let c: MetricsConfig = toml::from_str("listen = \"127.0.0.1:0\"").unwrap();
        assert!(c.bind().unwrap().is_some());
        assert!(toml::from_str::<MetricsConfig>("listen = \"localhost\"").is_err());
    }

    #[test]
    fn series_render_in_the_text_format_with_their_help() {
        let metrics = Metrics::on();
        metrics
            .counter("lockbox_test_total", "Things counted.", &[("kind", "a")])
            .increment(3);
        metrics
            .histogram("lockbox_test_seconds", "Time taken.", &[])
            .record(0.0003);
        let gauge = metrics.gauge("lockbox_test_level", "A level.", &[]);
        metrics.on_scrape(move || gauge.set(7.0));
        let text = metrics.render();
        assert!(
            text.contains("# HELP lockbox_test_total Things counted."),
            "{text}"
        );
        assert!(text.contains("lockbox_test_total{kind=\"a\"} 3"), "{text}");
        assert!(
            text.contains("lockbox_test_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(text.contains("lockbox_test_level 7"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        // Off, nothing is kept.
        let off = Metrics::off();
        off.counter("lockbox_test_total", "x", &[]).increment(1);
        assert_eq!(off.render(), "");
    }
}
