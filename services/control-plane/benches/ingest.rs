//! Telemetry ingest rate: records per second through the control plane's ingest function for
//! 5,000-record batches (the data plane's largest), with realistic cardinality — 20 services,
//! 50 routes, 3 nodes, 10 status codes, a few consumers — so a batch is a few hundred groups.
//! Each batch is a new `seq` one second after the previous one of its node, so most batches
//! merge into 10 s rows that already exist, as in production.
//!
//! Paths measured: `ingest` (a decoded batch: refusal check, aggregation, transaction),
//! `compact_frame` (decode of the compact binary frame nodes send, then ingest) and
//! `gzip_json_frame` (the older gzip-of-JSON frame, still accepted, then ingest), plus the
//! decode and aggregation steps alone.
//!
//! Besides criterion's wall-clock figures, summary lines report records per CPU-second of
//! the whole process (all threads, from /proc/self/stat): the "per core" rate. The three
//! paths run interleaved in rounds so machine noise hits them alike.
//!
//! SQLite by default; PostgreSQL when `FLEETGATE_BENCH_DATABASE_URL` is set.
//! `cargo bench -p fleetgate-control-plane --bench ingest`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fleetgate_control_plane::store::{now_unix, NodeHello, NodeRowCache, Store};
use fleetgate_control_plane::telemetry::frame::{decode_binary_frame, NodeFrame};
use fleetgate_control_plane::telemetry::ingest::{aggregate, refusal, BatchOrigin};
use fleetgate_control_plane::telemetry::{Granularity, Retention};
use fleetgate_protocol::{DpMessage, RequestRecord, TelemetryBatch};
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
                data_plane_cert_id: Uuid::new_v4(),
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

    /// What the session does with a batch (`ingest_telemetry_batch`), with `seq` in place of
    /// the batch's own so one decoded batch can be ingested many times as new batches.
    async fn ingest(&self, seq: u64, origin: &BatchOrigin, batch: &TelemetryBatch) {
        let now = now_unix();
        let horizon = Retention::default().horizon(Granularity::TenSeconds, now);
        assert_eq!(refusal(origin, batch), None);
        let mut write = aggregate(origin, batch, now, horizon);
        write.seq = seq;
        let index = self
            .origins
            .iter()
            .position(|o| o.node_id == origin.node_id)
            .expect("a bench node");
        let mut cache = std::mem::take(&mut self.caches.borrow_mut()[index]);
        let stored = self
            .store
            .ingest_telemetry(write, &mut cache)
            .await
            .expect("ingest");
        self.caches.borrow_mut()[index] = cache;
        assert!(stored, "a new seq is stored");
    }

    fn origin(&self, node_id: uuid::Uuid) -> &BatchOrigin {
        self.origins
            .iter()
            .find(|o| o.node_id == node_id)
            .expect("origin")
    }
}

/// CPU time of this process so far, all threads: the sum of each thread's run time from
/// `/proc/self/task/*/schedstat` (nanoseconds; `/proc/self/stat` counts 10 ms ticks, too coarse
/// for the ~100 ms slices the summary times). Threads that ended are not counted: the bench
/// keeps its runtime and the store's connection threads for its whole run.
fn cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Decodes a frame as the session does; it must be a telemetry batch.
fn decode(frame: &[u8]) -> TelemetryBatch {
    match decode_binary_frame(frame, 32 << 20).expect("decode") {
        NodeFrame::Telemetry(batch) => *batch,
        NodeFrame::Message(other) => unreachable!("a telemetry frame, got {other:?}"),
    }
}

/// Records per second of one path in each round of the interleaved summary run.
#[derive(Default)]
struct Tally {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

/// `median (min..max)` of per-round rates, in thousands.
fn spread(rates: &mut [f64]) -> String {
    rates.sort_by(f64::total_cmp);
    let k = |v: f64| format!("{:.0}k", v / 1000.0);
    match (rates.first(), rates.last()) {
        (Some(lo), Some(hi)) => format!("{} ({}..{})", k(rates[rates.len() / 2]), k(*lo), k(*hi)),
        _ => "-".into(),
    }
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
    let decoded: Vec<TelemetryBatch> = batches
        .iter()
        .enumerate()
        .map(|(i, (origin, records))| {
            TelemetryBatch::from_records(origin.node_id, i as u64, records, 0)
        })
        .collect();
    let groups = aggregate(&batches[0].0, &decoded[0], now_unix(), 0)
        .groups
        .len();
    let compact_frames: Vec<Vec<u8>> = batches
        .iter()
        .enumerate()
        .map(|(i, (origin, records))| {
            fleetgate_protocol::encode_telemetry(origin.node_id, i as u64, records, 0)
                .expect("encode")
        })
        .collect();
    let gzip_frames: Vec<Vec<u8>> = batches
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
    let per_record = |frames: &[Vec<u8>]| {
        frames.iter().map(Vec::len).sum::<usize>() as f64 / (frames.len() * BATCH) as f64
    };
    eprintln!(
        "frames: compact {:.1} bytes per record, gzip JSON {:.1} bytes per record",
        per_record(&compact_frames),
        per_record(&gzip_frames)
    );

    // A fixed run first: the three paths interleaved in rounds (so load from other processes
    // hits them alike), each round timed by wall clock and by CPU.
    let mut seq = 0u64;
    let mut tallies: [(&str, Tally); 3] = [
        ("ingest", Tally::default()),
        ("compact_frame+ingest", Tally::default()),
        ("gzip_json_frame+ingest", Tally::default()),
    ];
    let (rounds, per_round) = (7, 20);
    for round in 0..rounds {
        for (path, (_, tally)) in tallies.iter_mut().enumerate() {
            let (cpu0, wall0) = (cpu_time(), Instant::now());
            for j in 0..per_round {
                let i = (round * per_round + j) % batches.len();
                seq += 1;
                let owned;
                let batch = match path {
                    0 => &decoded[i],
                    1 => {
                        owned = decode(&compact_frames[i]);
                        &owned
                    }
                    _ => {
                        owned = decode(&gzip_frames[i]);
                        &owned
                    }
                };
                rt.block_on(fx.ingest(seq, fx.origin(batch.node_id()), batch));
            }
            let records = (per_round * BATCH) as f64;
            tally.wall.push(records / wall0.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (cpu0, cpu_time()) {
                tally.cpu.push(records / (b - a).as_secs_f64().max(1e-6));
            }
        }
    }
    eprintln!(
        "ingest/{backend}: {groups} groups per 5,000-record batch; records/s, median (min..max) \
         of {rounds} interleaved rounds of {per_round} batches"
    );
    for (name, tally) in &mut tallies {
        eprintln!(
            "ingest/{backend}/{name}: per CPU-second {}, wall {}",
            spread(&mut tally.cpu),
            spread(&mut tally.wall)
        );
    }

    let mut group = c.benchmark_group(format!("telemetry_ingest/{backend}"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("aggregate_only_5000", |b| {
        let origin = &batches[0].0;
        b.iter(|| aggregate(origin, &decoded[0], 0, 0))
    });
    group.bench_function("decode_compact_only_5000", |b| {
        b.iter(|| decode(&compact_frames[0]))
    });
    group.bench_function("decode_gzip_json_only_5000", |b| {
        b.iter(|| decode(&gzip_frames[0]))
    });
    group.bench_function("ingest_5000", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let batch = &decoded[i as usize % decoded.len()];
                    seq += 1;
                    fx.ingest(seq, fx.origin(batch.node_id()), batch).await;
                }
                start.elapsed()
            })
        })
    });
    for (name, frames) in [
        ("decode_frame_and_ingest_5000", &compact_frames),
        ("decode_gzip_json_frame_and_ingest_5000", &gzip_frames),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let batch = decode(&frames[i as usize % frames.len()]);
                        seq += 1;
                        fx.ingest(seq, fx.origin(batch.node_id()), &batch).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
