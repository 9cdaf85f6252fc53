//! rate-limiting through the engine: windows, headers, identifiers, refusals, counters
//! shared across config versions and under concurrency.

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use fleetgate_plugins::{PluginSet, RateLimitCounters};
use serde_json::json;

fn limited(config: serde_json::Value) -> PluginSet {
    build(vec![plugin(7, "rate-limiting", config)])
}

#[test]
fn minute_limit_counts_down_then_refuses() {
    let set = limited(json!({"minute": 3}));
    for remaining in ["2", "1", "0"] {
        let ctx = proceed(Req::get().run(&set));
        let h = response_headers(&set, &ctx);
        assert_eq!(header(&h, "x-ratelimit-limit-minute"), Some("3"));
        assert_eq!(header(&h, "x-ratelimit-remaining-minute"), Some(remaining));
        assert_eq!(header(&h, "ratelimit-limit"), Some("3"));
        assert_eq!(header(&h, "ratelimit-remaining"), Some(remaining));
        // t0 is hh:45:30: 30 seconds left in the minute.
        assert_eq!(header(&h, "ratelimit-reset"), Some("30"));
    }
    let (r, _) = answered(Req::get().run_at(&set, at(10)));
    assert_eq!(r.status(), 429);
    assert_eq!(body(&r), r#"{"message":"API rate limit exceeded"}"#);
    assert_eq!(header(r.headers(), "retry-after"), Some("20"));
    assert_eq!(header(r.headers(), "ratelimit-remaining"), Some("0"));
    assert_eq!(
        header(r.headers(), "x-ratelimit-remaining-minute"),
        Some("0")
    );
    // The next minute starts afresh.
    let ctx = proceed(Req::get().run_at(&set, at(30)));
    let h = response_headers(&set, &ctx);
    assert_eq!(header(&h, "x-ratelimit-remaining-minute"), Some("2"));
    assert_eq!(header(&h, "ratelimit-reset"), Some("60"));
}

#[test]
fn headers_report_the_tightest_window() {
    let set = limited(json!({"second": 5, "hour": 4}));
    let ctx = proceed(Req::get().run(&set));
    let h = response_headers(&set, &ctx);
    assert_eq!(header(&h, "x-ratelimit-remaining-second"), Some("4"));
    assert_eq!(header(&h, "x-ratelimit-remaining-hour"), Some("3"));
    assert_eq!(header(&h, "ratelimit-limit"), Some("4"));
    assert_eq!(header(&h, "ratelimit-remaining"), Some("3"));
    // 13:45:30 -> 14:00:00.
    assert_eq!(header(&h, "ratelimit-reset"), Some("870"));
}

#[test]
fn refused_requests_are_not_counted() {
    let set = limited(json!({"second": 1, "minute": 10}));
    proceed(Req::get().run_at(&set, at(0)));
    let (r, _) = answered(Req::get().run_at(&set, at(0)));
    assert_eq!(header(r.headers(), "retry-after"), Some("1"));
    // The minute kept only the admitted request: 10 - 1 - this one = 8.
    let ctx = proceed(Req::get().run_at(&set, at(1)));
    let h = response_headers(&set, &ctx);
    assert_eq!(header(&h, "x-ratelimit-remaining-minute"), Some("8"));
}

#[test]
fn hidden_headers_and_custom_error() {
    let set = limited(json!({
        "minute": 1, "hide_client_headers": true,
        "error_code": 503, "error_message": "slow down"
    }));
    let ctx = proceed(Req::get().run(&set));
    assert!(response_headers(&set, &ctx).is_empty());
    let (r, _) = answered(Req::get().run(&set));
    assert_eq!(r.status(), 503);
    assert_eq!(body(&r), r#"{"message":"slow down"}"#);
    assert_eq!(header(r.headers(), "retry-after"), Some("30"));
    assert_eq!(header(r.headers(), "ratelimit-limit"), None);
}

#[test]
fn limit_by_consumer_falls_back_to_ip() {
    let set = build(vec![
        plugin(1, "key-auth", json!({"anonymous": "bob"})),
        plugin(7, "rate-limiting", json!({"minute": 1})),
    ]);
    proceed(Req::get().key("alice-key").run(&set));
    answered(Req::get().key("alice-key").run(&set));
    // Bob (anonymous here) has his own counter.
    proceed(Req::get().run(&set));
    answered(Req::get().run(&set));

    let by_ip = limited(json!({"minute": 1}));
    proceed(Req::get().run(&by_ip));
    answered(Req::get().run(&by_ip));
    let mut other = Req::get();
    other.ip = IpAddr::from([198, 51, 100, 7]);
    proceed(other.run(&by_ip));
}

#[test]
fn limit_by_header_path_service_and_credential() {
    let set = limited(json!({"minute": 1, "limit_by": "header", "header_name": "x-tenant"}));
    proceed(Req::get().header("x-tenant", "a").run(&set));
    proceed(Req::get().header("x-tenant", "b").run(&set));
    answered(Req::get().header("x-tenant", "a").run(&set));
    // No header: the IP is the identifier.
    proceed(Req::get().run(&set));

    let set = limited(json!({"minute": 1, "limit_by": "path", "path": "/hot"}));
    let mut hot = Req::get();
    hot.path = "/hot".into();
    proceed(hot.clone().run(&set));
    answered(hot.clone().run(&set));
    let mut cold = Req::get();
    cold.path = "/cold".into();
    proceed(cold.run(&set));

    let set = limited(json!({"minute": 1, "limit_by": "service"}));
    proceed(Req::get().run(&set));
    let mut other_ip = Req::get();
    other_ip.ip = IpAddr::from([198, 51, 100, 7]);
    answered(other_ip.run(&set));

    let set = build(vec![
        plugin(1, "key-auth", json!({})),
        plugin(
            7,
            "rate-limiting",
            json!({"minute": 1, "limit_by": "credential"}),
        ),
    ]);
    proceed(Req::get().key("alice-key").run(&set));
    proceed(Req::get().key("bob-key").run(&set));
    answered(Req::get().key("alice-key").run(&set));
}

#[test]
fn counters_survive_config_swaps() {
    let counters = Arc::new(RateLimitCounters::new());
    let v1 = build_with(
        vec![plugin(7, "rate-limiting", json!({"minute": 2}))],
        counters.clone(),
    );
    proceed(Req::get().run(&v1));
    let v2 = build_with(
        vec![plugin(7, "rate-limiting", json!({"minute": 2}))],
        counters.clone(),
    );
    proceed(Req::get().run(&v2));
    answered(Req::get().run(&v2));
    // A new plugin id starts new counters.
    let v3 = build_with(
        vec![plugin(8, "rate-limiting", json!({"minute": 2}))],
        counters,
    );
    proceed(Req::get().run(&v3));
}

#[test]
fn concurrent_requests_admit_exactly_the_limit() {
    let set = Arc::new(limited(json!({"second": 50, "minute": 1000})));
    let admitted = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (set, admitted) = (set.clone(), admitted.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if let fleetgate_plugins::AccessOutcome::Continue(_) =
                        Req::get().run_at(&set, at(0))
                    {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread");
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 50);
    // The next second admits again, and the minute counted only the admitted 50.
    let ctx = proceed(Req::get().run_at(&set, at(1)));
    let h = response_headers(&set, &ctx);
    assert_eq!(header(&h, "x-ratelimit-remaining-minute"), Some("949"));
}
