//! Router benchmarks: lookup at 100, 10k and 100k routes, build time at 10k routes.
//!
//! Run: `cargo bench -p fleetgate-router --bench router -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fleetgate_config::{GatewayConfig, Protocol, Route, Uuid};
use fleetgate_router::{RequestFacts, Router, Scheme};
use http::HeaderMap;

/// Deterministic xorshift, so every run measures the same mix.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A realistic mix: ~1 host per 20 routes; per route 70% host + prefix path (a third with
/// methods), 10% host + regex, 10% wildcard host + prefix, 10% no host (half regex).
fn config(n: usize) -> GatewayConfig {
    let hosts = (n / 20).max(1);
    let routes = (0..n)
        .map(|i| {
            let h = i % hosts;
            let mut r = Route {
                id: Uuid::from_u128(i as u128 + 1),
                protocols: vec![Protocol::Http, Protocol::Https],
                ..Route::default()
            };
            let (host, path) = match i % 10 {
                0..=6 => (
                    Some(format!("svc{h}.example.com")),
                    format!("/api/v{}/res{i}", i % 3),
                ),
                7 => (
                    Some(format!("svc{h}.example.com")),
                    format!(r"~/api/v1/items{i}/\d+$"),
                ),
                8 => (Some(format!("*.tenant{h}.example.net")), format!("/t/{i}")),
                _ if i % 20 == 9 => (None, format!("/global/{i}/x")),
                _ => (None, format!(r"~/g/{i}/\d+")),
            };
            r.hosts = host.map(|h| vec![h]);
            r.paths = Some(vec![path]);
            if i % 3 == 0 && i % 10 <= 6 {
                r.methods = Some(vec!["GET".into(), "POST".into()]);
            }
            r
        })
        .collect();
    GatewayConfig {
        routes,
        ..GatewayConfig::default()
    }
}

/// Requests that hit random routes (90%) or miss (10%), as owned `(host, path)` pairs.
/// With `prefix_only`, only requests for host + prefix routes (the common case).
fn requests(n: usize, count: usize, prefix_only: bool) -> Vec<(String, String)> {
    let hosts = (n / 20).max(1);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    (0..count)
        .map(|_| {
            let mut i = rng.below(n);
            if prefix_only {
                i -= i % 10;
            }
            let h = i % hosts;
            if rng.below(10) == 0 {
                return (format!("svc{h}.example.com"), "/nothing/here".to_owned());
            }
            match i % 10 {
                0..=6 => (
                    format!("svc{h}.example.com:8000"),
                    format!("/api/v{}/res{i}/sub/1", i % 3),
                ),
                7 => (
                    format!("svc{h}.example.com"),
                    format!("/api/v1/items{i}/42"),
                ),
                8 => (format!("acme.tenant{h}.example.net"), format!("/t/{i}/x")),
                _ if i % 20 == 9 => ("any.host".to_owned(), format!("/global/{i}/x/y")),
                _ => ("any.host".to_owned(), format!("/g/{i}/7")),
            }
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let headers = HeaderMap::new();
    for (name, prefix_only) in [("find", false), ("find_prefix_routes", true)] {
        lookup_group(c, &headers, name, prefix_only);
    }
}

fn lookup_group(c: &mut Criterion, headers: &HeaderMap, name: &str, prefix_only: bool) {
    let mut group = c.benchmark_group(name);
    for n in [100, 10_000, 100_000] {
        let router = match Router::build(&config(n)) {
            Ok(r) => r,
            Err(e) => panic!("bench config: {e}"),
        };
        router.precompile_regexes();
        let reqs = requests(n, 4096, prefix_only);
        let hits = reqs
            .iter()
            .filter(|(h, p)| router.find(&facts(h, p, headers)).is_some())
            .count();
        eprintln!("{name}/{n}: {hits} of {} sample requests match", reqs.len());
        per_lookup_percentiles(&format!("{name}/{n}"), &router, &reqs, headers);
        group.bench_with_input(BenchmarkId::from_parameter(n), &reqs, |b, reqs| {
            let mut i = 0usize;
            b.iter(|| {
                let (h, p) = &reqs[i % reqs.len()];
                i = i.wrapping_add(1);
                black_box(router.find(&facts(h, p, headers)).map(|m| m.route_index))
            })
        });
    }
    group.finish();
}

/// The issue's goal is a p50 per lookup, which criterion's mean over a mix hides: time
/// single lookups (in a random order, so the router's data is as cold as in the mean) and
/// report percentiles, minus the timer's own cost.
///
/// Two figures, from alternating samples. "Request cached": the request's host and path
/// bytes are read just before the clock starts, as in the proxy, which has just parsed
/// them; this is the router's own cost. "Request cold": they are not, so a lookup also
/// pays for fetching this bench's request strings (4096 separate allocations, scattered
/// over the heap freed by building the config): 0.15-0.3 µs more at 100k routes.
fn per_lookup_percentiles(
    label: &str,
    router: &Router,
    reqs: &[(String, String)],
    headers: &HeaderMap,
) {
    use std::time::Instant;
    const SAMPLES: usize = 400_000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut timer = Vec::with_capacity(SAMPLES);
    let mut cached = Vec::with_capacity(SAMPLES / 2);
    let mut cold = Vec::with_capacity(SAMPLES / 2);
    for i in 0..SAMPLES {
        let t = Instant::now();
        timer.push(t.elapsed().as_nanos() as u64);
        let (h, p) = &reqs[rng.below(reqs.len())];
        let warm = i % 2 == 0;
        if warm {
            black_box(h.bytes().chain(p.bytes()).fold(0u8, |a, b| a ^ b));
        }
        let t = Instant::now();
        black_box(router.find(&facts(h, p, headers)).map(|m| m.route_index));
        let took = t.elapsed().as_nanos() as u64;
        if warm {
            cached.push(took);
        } else {
            cold.push(took);
        }
    }
    timer.sort_unstable();
    let overhead = timer[SAMPLES / 2];
    let report = |what: &str, mut lookups: Vec<u64>| {
        lookups.sort_unstable();
        let n = lookups.len();
        let pct = |q: f64| lookups[((n as f64 * q) as usize).min(n - 1)].saturating_sub(overhead);
        eprintln!(
            "{label}: single lookup, {what}: p50 {} ns, p90 {} ns, p99 {} ns (timer cost {overhead} ns subtracted)",
            pct(0.50),
            pct(0.90),
            pct(0.99)
        );
    };
    report("request cached", cached);
    report("request cold", cold);
}

fn facts<'a>(host: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestFacts<'a> {
    RequestFacts {
        method: "GET",
        host,
        path,
        scheme: Scheme::Http,
        headers,
        sni: None,
    }
}

fn build(c: &mut Criterion) {
    let cfg = config(10_000);
    c.bench_function("build/10000", |b| {
        b.iter(|| black_box(Router::build(&cfg).map(|r| r.len())))
    });
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
