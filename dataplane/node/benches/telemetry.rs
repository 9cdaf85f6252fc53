//! What telemetry costs per request.
//!
//! - `record/1_thread`, `record/2_threads`: `Telemetry::record`, the only telemetry work on a
//!   proxy worker, timed alone. Threads are long-lived like proxy workers and record into the
//!   same buffer at once (each has its own shard: no shared lock, so the per-record time
//!   should not rise with two). Between timed chunks of 999 records each thread drains the
//!   buffer (untimed), as the flusher does when a shard reaches 1,000, so buffers stay the
//!   size they have in production.
//! - `record/off`: `analytics_buffer_size_limit = 0`, one branch.
//! - `collect_per_record`: the flusher's side, per record: moving a full shard of 1,000
//!   records into the bounded queue (here at its limit, so it also prices drop-oldest).
//! - `form_batch_per_record`: the session's side, per record: forming and encoding one full
//!   batch of 5,000 records with production-like variety (20 services, 50 routes, a few
//!   consumers, spread latencies and sizes) — the bytes the node sends to the control plane.
//!
//! `cargo bench -p fleetgate-dataplane --bench telemetry`

use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fleetgate_dataplane::telemetry::{Telemetry, TelemetrySettings, BATCH_RECORDS, SHARD_HANDOFF};
use fleetgate_protocol::RequestRecord;
use uuid::Uuid;

fn record(i: u64) -> RequestRecord {
    RequestRecord {
        time_ms: 1_764_000_000_000 + i as i64,
        control_plane_id: Uuid::from_u128(1),
        service_id: Some(Uuid::from_u128(2)),
        route_id: Some(Uuid::from_u128(3)),
        consumer_id: None,
        node_id: Uuid::nil(),
        status: 200,
        latency_total_us: 850,
        latency_upstream_us: 700,
        latency_gateway_us: 150,
        bytes_in: 0,
        bytes_out: 512,
    }
}

/// Record `i` of a batch with production-like variety: ids from a small fixed set, as a
/// node's config bounds them, and latencies and sizes spread over orders of magnitude.
fn varied_record(i: u64) -> RequestRecord {
    // A cheap deterministic scramble, so the bench needs no RNG state.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    let route = h % 50;
    RequestRecord {
        time_ms: 1_764_000_000_000 + (i / 5) as i64,
        control_plane_id: Uuid::from_u128(1),
        service_id: Some(Uuid::from_u128(1_000 + u128::from(route % 20))),
        route_id: Some(Uuid::from_u128(2_000 + u128::from(route))),
        consumer_id: route
            .is_multiple_of(3)
            .then(|| Uuid::from_u128(3_000 + u128::from(route % 5))),
        node_id: Uuid::nil(),
        status: [200, 200, 200, 200, 200, 200, 201, 404, 429, 500][(h % 10) as usize],
        latency_total_us: 300 + (h % 100_000) as u32,
        latency_upstream_us: 200 + (h % 80_000) as u32,
        latency_gateway_us: 100 + (h % 20_000) as u32,
        bytes_in: h % 2_000,
        bytes_out: (h >> 8) % 20_000,
    }
}

/// Records `iters` records, timing only the `record` calls.
fn record_timed(telemetry: &Telemetry, iters: u64) -> Duration {
    let chunk = SHARD_HANDOFF as u64 - 1;
    let mut timed = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = chunk.min(iters - done);
        let start = Instant::now();
        for i in done..done + n {
            telemetry.record(std::hint::black_box(record(i)));
        }
        timed += start.elapsed();
        done += n;
        telemetry.collect();
    }
    timed
}

/// Long-lived recorder threads, like proxy workers.
struct Recorders {
    orders: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<Duration>,
}

impl Recorders {
    fn start(telemetry: &Arc<Telemetry>, threads: usize) -> Self {
        let barrier = Arc::new(Barrier::new(threads));
        let (report, done) = mpsc::channel();
        let orders = (0..threads)
            .map(|_| {
                let (order, orders) = mpsc::channel::<u64>();
                let (telemetry, barrier, report) =
                    (telemetry.clone(), barrier.clone(), report.clone());
                std::thread::spawn(move || {
                    while let Ok(iters) = orders.recv() {
                        barrier.wait();
                        let timed = record_timed(&telemetry, iters);
                        if report.send(timed).is_err() {
                            return;
                        }
                    }
                });
                order
            })
            .collect();
        Self { orders, done }
    }

    /// Every thread records `iters` records at once; the slowest thread's time counts, so
    /// criterion reports the time per record per thread (contention would raise it).
    fn run(&self, iters: u64) -> Duration {
        for order in &self.orders {
            order.send(iters).expect("recorder thread alive");
        }
        (0..self.orders.len())
            .map(|_| self.done.recv().expect("recorder thread report"))
            .max()
            .unwrap_or_default()
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for (name, limit, threads) in [
        ("1_thread", 100_000, 1),
        ("2_threads", 100_000, 2),
        ("off", 0, 1),
    ] {
        let telemetry = Telemetry::new(TelemetrySettings {
            buffer_limit: limit,
            flush_interval: Duration::from_secs(1),
        });
        let recorders = Recorders::start(&telemetry, threads);
        group.bench_function(name, |b| b.iter_custom(|iters| recorders.run(iters)));
    }
    group.finish();

    let telemetry = Telemetry::new(TelemetrySettings::default());
    c.bench_function("collect_per_record", |b| {
        b.iter_custom(|iters| {
            let rounds = iters.div_ceil(SHARD_HANDOFF as u64);
            let mut timed = Duration::ZERO;
            for round in 0..rounds {
                for i in 0..SHARD_HANDOFF as u64 {
                    telemetry.record(record(round * SHARD_HANDOFF as u64 + i));
                }
                let start = Instant::now();
                telemetry.collect();
                timed += start.elapsed();
            }
            // Scale the time of rounds x 1,000 records to the `iters` criterion asked for.
            timed.mul_f64(iters as f64 / (rounds * SHARD_HANDOFF as u64) as f64)
        })
    });

    let telemetry = Telemetry::new(TelemetrySettings::default());
    let node = Uuid::from_u128(42);
    let mut frame_bytes = 0;
    c.bench_function("form_batch_per_record", |b| {
        b.iter_custom(|iters| {
            let rounds = iters.div_ceil(BATCH_RECORDS as u64);
            let mut timed = Duration::ZERO;
            for round in 0..rounds {
                for i in 0..BATCH_RECORDS as u64 {
                    telemetry.record(varied_record(round * BATCH_RECORDS as u64 + i));
                }
                // Shards into the queue untimed: `collect_per_record` prices that.
                telemetry.collect();
                let start = Instant::now();
                let batches = telemetry.form_batches(node);
                timed += start.elapsed();
                for batch in batches {
                    frame_bytes = batch.frame.len();
                    telemetry.ack(batch.seq);
                }
            }
            timed.mul_f64(iters as f64 / (rounds * BATCH_RECORDS as u64) as f64)
        })
    });
    eprintln!("form_batch_per_record: a 5,000-record batch is a {frame_bytes}-byte frame");
}

criterion_group!(benches, bench);
criterion_main!(benches);
