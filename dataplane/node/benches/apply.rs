//! Config apply for 10,000 services + 10,000 routes: parse + validate (Kong YAML), compile
//! (router, plugins, balancers, certificates) and swap — what a data plane does per new config.
//!
//! `cargo bench -p fleetgate-dataplane --bench apply`

use std::fmt::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use fleetgate_config::declarative;
use fleetgate_dataplane::{ConfigSource, Gateway};

fn big_yaml(n: usize) -> String {
    let mut yaml = String::from("_format_version: \"3.0\"\nservices:\n");
    for i in 0..n {
        let _ = write!(
            yaml,
            "  - name: svc-{i}\n    url: http://backend-{}.internal:8080/api\n    routes:\n      - name: route-{i}\n        paths: [/svc/{i}]\n        methods: [GET, POST]\n",
            i % 97
        );
    }
    yaml
}

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let yaml = big_yaml(10_000);
    let config = declarative::import(&yaml).expect("valid config");
    let gateway = Gateway::new().expect("gateway");
    let mut group = c.benchmark_group("apply_10k_services_10k_routes");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    // What a data plane does with a control-plane push: canonical JSON, not YAML.
    let canonical = config.canonical_json();
    group.bench_function("json_parse_validate_compile_swap", |b| {
        b.iter(|| {
            let config: fleetgate_config::GatewayConfig =
                serde_json::from_slice(&canonical).expect("json");
            config.validate().expect("valid");
            gateway.apply(config, ConfigSource::Cp).expect("apply")
        })
    });
    group.bench_function("yaml_parse_validate", |b| {
        b.iter(|| declarative::import(&yaml).expect("valid"))
    });
    group.bench_function("compile_and_swap", |b| {
        b.iter(|| {
            gateway
                .apply(config.clone(), ConfigSource::Declarative)
                .expect("apply")
        })
    });
    group.bench_function("yaml_parse_validate_compile_swap", |b| {
        b.iter(|| {
            let config = declarative::import(&yaml).expect("valid");
            gateway
                .apply(config, ConfigSource::Declarative)
                .expect("apply")
        })
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
