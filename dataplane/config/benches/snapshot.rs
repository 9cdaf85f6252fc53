//! Canonical JSON + hash of a large configuration (10,000 services + 10,000 routes).

use criterion::{criterion_group, criterion_main, Criterion};
use fleetgate_config::{parse_entity, EntityRef, GatewayConfig, Route, Service, Uuid};
use serde_json::json;

fn big_config() -> GatewayConfig {
    let mut cfg = GatewayConfig::default();
    for i in 0..10_000u32 {
        let mut service: Service = parse_entity(&json!({
            "name": format!("service-{i}"),
            "url": format!("http://backend-{i}.internal:8080/v1"),
            "tags": ["bench"],
        }))
        .expect("valid service");
        service.id = Uuid::new_v4();
        let mut route: Route = parse_entity(&json!({
            "name": format!("route-{i}"),
            "paths": [format!("/api/{i}")],
            "methods": ["GET", "POST"],
            "headers": {"x-tenant": [format!("t{i}")]},
        }))
        .expect("valid route");
        route.id = Uuid::new_v4();
        route.service = Some(EntityRef::new(service.id));
        cfg.services.push(service);
        cfg.routes.push(route);
    }
    cfg
}

fn bench(c: &mut Criterion) {
    let cfg = big_config();
    eprintln!("canonical size: {} bytes", cfg.canonical_json().len());
    c.bench_function("canonical_json 10k services + 10k routes", |b| {
        b.iter(|| cfg.canonical_json().len())
    });
    c.bench_function("canonical_json+hash 10k services + 10k routes", |b| {
        b.iter(|| {
            let (bytes, hash) = cfg.canonical_json_and_hash();
            (bytes.len(), hash)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
