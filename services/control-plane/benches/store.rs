//! Store throughput: entity writes per second (each one a full API-grade transaction with
//! version bump, reference and uniqueness checks) and the time to load + snapshot + hash a
//! large config. SQLite by default; PostgreSQL when `FLEETGATE_BENCH_DATABASE_URL` is set.
//!
//! `cargo bench -p fleetgate-control-plane --bench store`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fleetgate_config::{parse_entity, Route, Service};
use fleetgate_control_plane::snapshot::{config_from_rows, ConfigSnapshot};
use fleetgate_control_plane::store::{ensure_id, EntityWrite};
use serde_json::json;
use uuid::Uuid;

mod support;

use support::bench_store as fixture;

fn service(i: u64) -> EntityWrite {
    let mut s: Service = parse_entity(&json!({
        "name": format!("svc-{i}-{}", Uuid::new_v4().simple()),
        "url": format!("http://backend-{i}.internal:8080/api"),
    }))
    .expect("valid service");
    ensure_id(&mut s);
    EntityWrite::from_entity(&s).expect("write")
}

fn writes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fx = rt.block_on(fixture());
    let backend = format!("{:?}", fx.store.backend()).to_lowercase();
    let mut group = c.benchmark_group(format!("store/{backend}"));
    group.throughput(criterion::Throughput::Elements(1));
    group.bench_function("create_service", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    fx.store
                        .create_entity(fx.org, fx.cp, service(i))
                        .await
                        .expect("create");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fx = rt.block_on(fixture());
    let backend = format!("{:?}", fx.store.backend()).to_lowercase();
    // 10,000 services and 10,000 routes, imported in one transaction.
    let mut all = Vec::new();
    for i in 0..10_000u64 {
        let mut s: Service = parse_entity(&json!({
            "name": format!("svc-{i}"),
            "url": format!("http://backend-{i}.internal:8080/api"),
        }))
        .expect("service");
        ensure_id(&mut s);
        let mut r: Route = parse_entity(&json!({
            "name": format!("route-{i}"),
            "paths": [format!("/svc/{i}")],
            "methods": ["GET", "POST"],
            "service": {"id": s.id},
        }))
        .expect("route");
        ensure_id(&mut r);
        all.push(EntityWrite::from_entity(&s).expect("write"));
        all.push(EntityWrite::from_entity(&r).expect("write"));
    }
    let start = Instant::now();
    rt.block_on(fx.store.replace_config(fx.org, fx.cp, all))
        .expect("import");
    eprintln!(
        "store/{backend}: imported 20,000 entities in {:?}",
        start.elapsed()
    );
    let (version, rows) = rt
        .block_on(fx.store.load_config(fx.org, fx.cp))
        .expect("load");
    let config = config_from_rows(rows.clone()).expect("decode");
    let mut group = c.benchmark_group(format!("snapshot/{backend}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("load_decode_hash_10k_services_10k_routes", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (v, rows) = fx.store.load_config(fx.org, fx.cp).await.expect("load");
                ConfigSnapshot::build(v, config_from_rows(rows).expect("decode"))
            })
        })
    });
    group.bench_function("canonicalise_hash_10k_services_10k_routes", |b| {
        b.iter(|| ConfigSnapshot::build(version, config.clone()))
    });
    group.finish();
}

criterion_group!(benches, writes, snapshot);
criterion_main!(benches);
