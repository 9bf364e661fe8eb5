//! What a request's metrics cost on the request path, and the choice behind them: the
//! `metrics` handles of the Prometheus exporter (a counter by method and code, a latency
//! histogram by method) against the smallest registry of our own that could do the same (an
//! atomic counter, and fixed buckets of atomics found by a search of the bounds), and the
//! server loop's whole per-request work (`RequestMeter::start` and `finish`: the method read
//! from the request, the code from the answer, the clock read twice).
#![allow(clippy::unwrap_used)] // a bench that cannot set up should abort
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use lockbox_proto::lockbox::LockboxRequest;
use lockbox_proto::{Request, Response, frame, variant};
use lockbox_rpc::metrics::{LATENCY_BUCKETS, Metrics, RequestMeter};
use std::sync::atomic::{AtomicU64, Ordering};

/// The smallest own registry: a counter, and a histogram of fixed buckets.
struct Own {
    count: AtomicU64,
    buckets: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Own {
    fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            buckets: (0..=LATENCY_BUCKETS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn record(&self, seconds: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let i = LATENCY_BUCKETS.partition_point(|b| *b < seconds);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

fn per_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics_per_request");
    let metrics = Metrics::on();
    let counter = metrics.counter("lockbox_bench_total", "bench", &[("method", "GetPayload")]);
    let histogram = metrics.histogram("lockbox_bench_seconds", "bench", &[]);
    // The exporter keeps histogram samples until upkeep drains them, as the server's
    // upkeep task does every few seconds; drained here too so memory stays flat.
    let mut n = 0u32;
    group.bench_function("exporter_counter_and_histogram", |b| {
        b.iter(|| {
            counter.increment(1);
            histogram.record(black_box(0.000_04));
            n += 1;
            if n % 100_000 == 0 {
                let _ = metrics.render();
            }
        })
    });
    let own = Own::new();
    group.bench_function("own_counter_and_buckets", |b| {
        b.iter(|| own.record(black_box(0.000_04)))
    });
    let meter = RequestMeter::new(
        &metrics,
        "lockbox",
        variant::names::<LockboxRequest>(),
        None,
    )
    .unwrap();
    let request = postcard::to_allocvec(&Request {
        id: 7,
        on_behalf_of: None,
        body: LockboxRequest::GetPayload {
            secret_id: "e6q0000000000000000a".into(),
            version_id: None,
        },
    })
    .unwrap();
    let mut answer = Vec::new();
    let ok: Response<&[u8]> = Response {
        id: 7,
        result: Ok(&[0u8; 64]),
    };
    frame::encode(&ok, &mut answer, 1 << 20).unwrap();
    let mut m = 0u32;
    group.bench_function("request_meter_start_finish", |b| {
        b.iter(|| {
            let timing = meter.start(black_box(&request));
            meter.finish(timing, black_box(&answer));
            m += 1;
            if m % 100_000 == 0 {
                let _ = metrics.render();
            }
        })
    });
    let clock = quanta::Clock::new();
    group.bench_function("clock_tsc_read_twice", |b| {
        b.iter(|| clock.delta_as_nanos(black_box(clock.raw()), clock.raw()))
    });
    group.bench_function("clock_std_instant_read_twice", |b| {
        b.iter(|| black_box(std::time::Instant::now()).elapsed())
    });
    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
