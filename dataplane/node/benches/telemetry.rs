//! Per-request cost of recording telemetry (`Telemetry::record`): one thread, two threads
//! recording at once into the same buffer (proxy workers never share a lock on this path, so
//! the per-record cost should stay flat), and telemetry off (`analytics_buffer_size_limit =
//! 0`). A background thread drains the shards every 10 ms like the node's flusher, so
//! the shards stay small and the buffer limit is applied as in production.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fleetgate_dataplane::telemetry::{Telemetry, TelemetrySettings};
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

/// Long-lived recorder threads, like proxy workers: each keeps its shard across samples, so
/// a sample measures the steady state and not thread start-up.
struct Recorders {
    orders: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<Duration>,
    barrier: Arc<Barrier>,
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
                        let start = Instant::now();
                        for i in 0..iters {
                            telemetry.record(std::hint::black_box(record(i)));
                        }
                        if report.send(start.elapsed()).is_err() {
                            return;
                        }
                    }
                });
                order
            })
            .collect();
        Self {
            orders,
            done,
            barrier,
        }
    }

    /// Every thread records `iters` records at once; the slowest thread's time counts, so
    /// criterion reports the time per record per thread (contention would raise it).
    fn run(&self, iters: u64) -> Duration {
        let _ = &self.barrier;
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
    let mut group = c.benchmark_group("telemetry_record");
    for (name, limit, threads) in [
        ("1_thread", 100_000, 1),
        ("2_threads", 100_000, 2),
        ("off", 0, 1),
    ] {
        let telemetry = Telemetry::new(TelemetrySettings {
            buffer_limit: limit,
            flush_interval: Duration::from_millis(1),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flusher = {
            let (telemetry, stop) = (telemetry.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    telemetry.collect();
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let recorders = Recorders::start(&telemetry, threads);
        group.bench_function(name, |b| b.iter_custom(|iters| recorders.run(iters)));
        drop(recorders);
        stop.store(true, Ordering::Relaxed);
        flusher.join().expect("flusher");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
