//! A family of latency histograms with one label over a fixed set of values, kept in fixed
//! tables of atomics and rendered by itself: for the series updated on the request path,
//! where a histogram of the exporter costs several times as much (`benches/metrics.rs`).

use super::{LATENCY_BUCKETS, Metrics};
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The clock request paths are timed with: the CPU's time-stamp counter where it is
/// reliable (`quanta`), calibrated once per process.
pub fn clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Histograms `name{label="value"}`, one per value of a fixed list.
pub struct Histograms {
    name: String,
    help: &'static str,
    label: &'static str,
    values: Vec<&'static str>,
    /// By value then bucket ([`LATENCY_BUCKETS`] and +Inf, not cumulative).
    buckets: Box<[AtomicU64]>,
    /// By value: nanoseconds in all.
    nanos: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Histograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histograms")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pub(super) fn zeros(n: usize) -> Box<[AtomicU64]> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

const WIDTH: usize = LATENCY_BUCKETS.len() + 1;

impl Histograms {
    /// The family, rendered with `metrics`'s series; `None` when metrics are off.
    pub fn new(
        metrics: &Metrics,
        name: String,
        help: &'static str,
        label: &'static str,
        values: Vec<&'static str>,
    ) -> Option<Arc<Self>> {
        let n = values.len();
        let family = Arc::new(Self {
            name,
            help,
            label,
            values,
            buckets: zeros(n * WIDTH),
            nanos: zeros(n),
        });
        let rendered = family.clone();
        metrics
            .render_also(move |out| rendered.render(out))
            .then_some(family)
    }

    /// Records `nanos` in the histogram of value `i` (ignored past the values).
    #[inline]
    pub fn record(&self, i: usize, nanos: u64) {
        let Some(total) = self.nanos.get(i) else {
            return;
        };
        let seconds = nanos as f64 * 1e-9;
        let bucket = LATENCY_BUCKETS.partition_point(|bound| *bound < seconds);
        self.buckets[i * WIDTH + bucket].fetch_add(1, Ordering::Relaxed);
        total.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histograms with a sample, in the text format.
    fn render(&self, out: &mut String) {
        let (name, label) = (&self.name, self.label);
        let _ = write!(
            out,
            "# HELP {name} {}\n# TYPE {name} histogram\n",
            self.help
        );
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (i, value) in self.values.iter().enumerate() {
            let buckets = &self.buckets[i * WIDTH..(i + 1) * WIDTH];
            let count: u64 = buckets.iter().map(load).sum();
            if count == 0 {
                continue;
            }
            let mut below = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(buckets) {
                below += load(n);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{label}=\"{value}\",le=\"{bound}\"}} {below}"
                );
            }
            let seconds = load(&self.nanos[i]) as f64 * 1e-9;
            let _ = write!(
                out,
                "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {count}\n\
                 {name}_sum{{{label}=\"{value}\"}} {seconds}\n\
                 {name}_count{{{label}=\"{value}\"}} {count}\n"
            );
        }
    }
}
