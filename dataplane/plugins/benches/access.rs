//! Access phase cost for one request through global key-auth + rate-limiting.

use std::net::IpAddr;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use fleetgate_config::{
    Consumer, EntityRef, GatewayConfig, KeyAuthCredential, Plugin, Service, Uuid,
};
use fleetgate_plugins::{AccessOutcome, AccessRequest, PluginSet, RateLimitCounters};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;

fn config() -> GatewayConfig {
    let consumer = Uuid::from_u128(10);
    let mut config = GatewayConfig {
        services: vec![Service {
            id: Uuid::from_u128(1),
            ..Service::default()
        }],
        consumers: vec![Consumer {
            id: consumer,
            username: Some("alice".into()),
            ..Consumer::default()
        }],
        ..GatewayConfig::default()
    };
    // A realistic key table: the lookup is a hash lookup, so size matters little.
    for i in 0..1_000u128 {
        config.keyauth_credentials.push(KeyAuthCredential {
            id: Uuid::from_u128(1_000 + i),
            consumer: Some(EntityRef::new(consumer)),
            key: format!("key-{i}"),
            ..KeyAuthCredential::default()
        });
    }
    config.plugins = vec![
        Plugin {
            id: Uuid::from_u128(100),
            name: "key-auth".into(),
            config: json!({}),
            ..Plugin::default()
        },
        Plugin {
            id: Uuid::from_u128(101),
            name: "rate-limiting".into(),
            // Limits high enough never to refuse during the run.
            config: json!({"second": 1e15, "hour": 1e16}),
            ..Plugin::default()
        },
    ];
    config
}

fn bench_access(c: &mut Criterion) {
    let full = config();
    // Baselines that isolate each plugin's share of the cost.
    let variants = [
        ("access key-auth + rate-limiting", full.plugins.clone()),
        ("access key-auth only", vec![full.plugins[0].clone()]),
        ("access rate-limiting only", vec![full.plugins[1].clone()]),
        ("access no plugins", vec![]),
    ];
    for (name, plugins) in variants {
        let config = GatewayConfig {
            plugins,
            ..full.clone()
        };
        bench_one(c, name, &config);
    }
}

fn bench_one(c: &mut Criterion, name: &str, config: &GatewayConfig) {
    let set = PluginSet::build(config, Arc::new(RateLimitCounters::new()));
    let Ok(set) = set else {
        panic!("bench config must build");
    };
    let mut headers = HeaderMap::new();
    headers.insert("apikey", HeaderValue::from_static("key-500"));
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    let mut query = None;
    let method = Method::GET;
    c.bench_function(name, |b| {
        b.iter(|| {
            let mut req = AccessRequest {
                route_id: None,
                service_id: Some(Uuid::from_u128(1)),
                method: &method,
                headers: &mut headers,
                query: &mut query,
                client_ip: IpAddr::from([192, 0, 2, 1]),
                path: "/orders",
                scheme_is_https: false,
            };
            match set.access(black_box(&mut req)) {
                AccessOutcome::Continue(ctx) => black_box(ctx),
                AccessOutcome::Respond(..) => panic!("must be admitted"),
            }
        })
    });
}

criterion_group!(benches, bench_access);
criterion_main!(benches);
