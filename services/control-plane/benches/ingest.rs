//! Telemetry ingest rate: records per second through the control plane's ingest function for
//! 5,000-record batches (the data plane's largest), with realistic cardinality — 20 services,
//! 50 routes, 3 nodes, 10 status codes, a few consumers — so a batch is a few hundred groups.
//! Each batch is a new `seq` one second after the previous one of its node, so most batches
//! merge into 10 s rows that already exist, as in production.
//!
//! Besides criterion's wall-clock figures, a summary line reports records per CPU-second of
//! the whole process (all threads, from /proc/self/stat): the "per core" rate.
//!
//! SQLite by default; PostgreSQL when `FLEETGATE_BENCH_DATABASE_URL` is set.
//! `cargo bench -p fleetgate-control-plane --bench ingest`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fleetgate_control_plane::store::{now_unix, NodeHello, NodeRowCache, Store};
use fleetgate_control_plane::telemetry::ingest::{
    aggregate, decode_binary_frame, ingest_batch, BatchOrigin, IncomingBatch, IngestOutcome,
};
use fleetgate_control_plane::telemetry::{Granularity, Retention};
use fleetgate_protocol::{DpMessage, RequestRecord};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

mod support;

const BATCH: usize = 5_000;

struct Fixture {
    store: Store,
    /// One per node, as each node's session keeps one.
    caches: std::cell::RefCell<Vec<NodeRowCache>>,
    origins: Vec<BatchOrigin>,
    services: Vec<Uuid>,
    routes: Vec<(usize, Uuid, Option<Uuid>)>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let support::BenchStore {
        store,
        org,
        cp,
        _dir: dir,
    } = support::bench_store().await;
    let origins: Vec<BatchOrigin> = (0..3)
        .map(|_| BatchOrigin {
            organization_id: org,
            control_plane_id: cp,
            node_id: Uuid::new_v4(),
        })
        .collect();
    for origin in &origins {
        // The row a node gets at hello; ingest counts its writes there.
        store
            .upsert_node(NodeHello {
                id: origin.node_id,
                control_plane_id: cp,
                hostname: "bench-dp",
                version: "0.1.0",
                config_hash: "",
                cert_expiry: None,
                incompatible: None,
                connected: true,
            })
            .await
            .expect("node");
    }
    let services: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let consumers: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    // Each route belongs to a service; a third of them authenticate one consumer.
    let routes = (0..50)
        .map(|i| {
            (
                i % 20,
                Uuid::new_v4(),
                (i % 3 == 0).then(|| consumers[i % 5]),
            )
        })
        .collect();
    Fixture {
        store,
        caches: std::cell::RefCell::new((0..3).map(|_| NodeRowCache::default()).collect()),
        origins,
        services,
        routes,
        _dir: dir,
    }
}

const STATUSES: [u16; 10] = [200, 201, 204, 301, 304, 400, 401, 404, 429, 500];

impl Fixture {
    /// Batch `n` of node `n % 3`: 5,000 requests within one second.
    fn batch(&self, n: u64, rng: &mut impl Rng) -> (BatchOrigin, Vec<RequestRecord>) {
        let origin = self.origins[(n % 3) as usize];
        let second = now_unix() - 3_600 + (n / 3) as i64;
        let records = (0..BATCH)
            .map(|_| {
                let (service, route, consumer) = self.routes[rng.gen_range(0..self.routes.len())];
                // Mostly 200s, as real traffic.
                let status = if rng.gen_ratio(7, 10) {
                    200
                } else {
                    STATUSES[rng.gen_range(0..STATUSES.len())]
                };
                let total = 10f64.powf(rng.gen_range(2.5..5.5)) as u32;
                RequestRecord {
                    time_ms: second * 1000 + rng.gen_range(0..1000),
                    control_plane_id: origin.control_plane_id,
                    service_id: Some(self.services[service]),
                    route_id: Some(route),
                    consumer_id: consumer,
                    node_id: origin.node_id,
                    status,
                    latency_total_us: total,
                    latency_upstream_us: total * 4 / 5,
                    latency_gateway_us: total / 5,
                    bytes_in: rng.gen_range(0..2_000),
                    bytes_out: rng.gen_range(0..20_000),
                }
            })
            .collect();
        (origin, records)
    }

    async fn ingest(&self, seq: u64, origin: &BatchOrigin, records: &[RequestRecord]) {
        let now = now_unix();
        let horizon = Retention::default().horizon(Granularity::TenSeconds, now);
        let batch = IncomingBatch {
            node_id: origin.node_id,
            seq,
            records,
            dropped: 0,
        };
        let index = self
            .origins
            .iter()
            .position(|o| o.node_id == origin.node_id)
            .expect("a bench node");
        let mut cache = std::mem::take(&mut self.caches.borrow_mut()[index]);
        let outcome = ingest_batch(&self.store, &mut cache, origin, batch, now, horizon)
            .await
            .expect("ingest");
        self.caches.borrow_mut()[index] = cache;
        assert!(matches!(outcome, IngestOutcome::Stored { .. }));
    }
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)` field; utime and stime are fields 14 and 15 (1-based).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports clock ticks, 100 per second on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn ingest(c: &mut Criterion) {
    // One worker thread: the async side of ingest runs on one core (SQLite's connection
    // threads and PostgreSQL's server processes come on top; the CPU-time summary below
    // counts this process's threads).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fx = rt.block_on(fixture());
    let backend = format!("{:?}", fx.store.backend()).to_lowercase();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let batches: Vec<(BatchOrigin, Vec<RequestRecord>)> =
        (0..30).map(|n| fx.batch(n, &mut rng)).collect();
    let groups = aggregate(&batches[0].0, 0, &batches[0].1, 0, now_unix(), 0)
        .groups
        .len();
    let frames: Vec<Vec<u8>> = batches
        .iter()
        .enumerate()
        .map(|(i, (origin, records))| {
            fleetgate_protocol::encode_binary(&DpMessage::Telemetry {
                node_id: origin.node_id,
                seq: i as u64,
                records: records.clone(),
                dropped: 0,
            })
            .expect("encode")
        })
        .collect();

    // A fixed run first, timed by wall clock and by CPU.
    let mut seq = 0u64;
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let runs = 60;
    for i in 0..runs {
        let (origin, records) = &batches[i % batches.len()];
        seq += 1;
        rt.block_on(fx.ingest(seq, origin, records));
    }
    let wall = wall0.elapsed();
    let records = (runs * BATCH) as f64;
    match (cpu0, cpu_time()) {
        (Some(a), Some(b)) => eprintln!(
            "ingest/{backend}: {groups} groups per 5,000-record batch; {:.0} records/s wall, \
             {:.0} records per CPU-second",
            records / wall.as_secs_f64(),
            records / (b - a).as_secs_f64().max(0.001)
        ),
        _ => eprintln!(
            "ingest/{backend}: {:.0} records/s wall",
            records / wall.as_secs_f64()
        ),
    }

    let mut group = c.benchmark_group(format!("telemetry_ingest/{backend}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("aggregate_only_5000", |b| {
        let (origin, records) = &batches[0];
        b.iter(|| aggregate(origin, 0, records, 0, 0, 0))
    });
    group.bench_function("ingest_5000", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let (origin, records) = &batches[i as usize % batches.len()];
                    seq += 1;
                    fx.ingest(seq, origin, records).await;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("decode_frame_and_ingest_5000", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let message = decode_binary_frame(&frames[i as usize % frames.len()], 32 << 20)
                        .expect("decode");
                    let DpMessage::Telemetry {
                        node_id, records, ..
                    } = message
                    else {
                        unreachable!("a telemetry frame")
                    };
                    let origin = fx
                        .origins
                        .iter()
                        .find(|o| o.node_id == node_id)
                        .expect("origin");
                    seq += 1;
                    fx.ingest(seq, origin, &records).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
