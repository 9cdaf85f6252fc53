//! Kong's plugin precedence, the consumer two-step, enabled/protocol filters and build
//! errors. request-size-limiting serves as the probe: each scope gets a distinct size, so
//! `max_body_bytes` tells which instance ran.

mod common;

use common::*;
use fleetgate_config::{GatewayConfig, Protocol, Uuid};
use fleetgate_plugins::{PluginError, PluginSet, RateLimitCounters};
use serde_json::json;
use std::sync::Arc;

/// Kong's order, most specific first: (name, route, service, consumer).
const SHAPES: [(&str, bool, bool, bool); 8] = [
    ("consumer+route+service", true, true, true),
    ("consumer+route", true, false, true),
    ("consumer+service", false, true, true),
    ("route+service", true, true, false),
    ("consumer", false, false, true),
    ("route", true, false, false),
    ("service", false, true, false),
    ("global", false, false, false),
];

/// The probe for shape `i`: its size marker is `i + 1` bytes.
fn probe(i: usize) -> fleetgate_config::Plugin {
    let (_, r, s, c) = SHAPES[i];
    scoped(
        plugin(
            100 + i as u128,
            "request-size-limiting",
            json!({"allowed_payload_size": i + 1, "size_unit": "bytes"}),
        ),
        r.then_some(ROUTE),
        s.then_some(SERVICE),
        c.then_some(ALICE),
    )
}

/// A set with key-auth (anonymous = bob) and the probes of the given shapes.
fn set_with(shapes: &[usize]) -> PluginSet {
    let mut plugins = vec![plugin(1, "key-auth", json!({"anonymous": "bob"}))];
    plugins.extend(shapes.iter().map(|&i| probe(i)));
    build(plugins)
}

/// Which shape ran (by name), if any.
fn winner(
    set: &PluginSet,
    route: Option<Uuid>,
    service: Option<Uuid>,
    key: Option<&str>,
) -> Option<&'static str> {
    let mut req = Req::get();
    req.route = route;
    req.service = service;
    if let Some(key) = key {
        req = req.key(key);
    }
    proceed(req.run(set))
        .max_body_bytes
        .map(|marker| SHAPES[marker as usize - 1].0)
}

#[test]
fn most_specific_scope_wins_in_kong_order() {
    // Removing the winner each time reveals the next one in Kong's order.
    for (start, (name, ..)) in SHAPES.iter().enumerate() {
        let shapes: Vec<usize> = (start..SHAPES.len()).collect();
        let set = set_with(&shapes);
        assert_eq!(
            winner(&set, Some(ROUTE), Some(SERVICE), Some("alice-key")),
            Some(*name),
            "with shapes {start}.."
        );
    }
}

/// (present shapes, route, service, key, expected winner)
type Row<'a> = (
    &'a [usize],
    Option<Uuid>,
    Option<Uuid>,
    Option<&'a str>,
    Option<&'a str>,
);

#[test]
fn precedence_table() {
    let all: Vec<usize> = (0..8).collect();
    let rows: [Row; 10] = [
        (
            &all,
            Some(ROUTE),
            Some(SERVICE),
            Some("alice-key"),
            Some("consumer+route+service"),
        ),
        (
            &all,
            Some(OTHER_ROUTE),
            Some(SERVICE),
            Some("alice-key"),
            Some("consumer+service"),
        ),
        // bob (anonymous) is not alice: consumer scopes do not apply.
        (
            &all,
            Some(ROUTE),
            Some(SERVICE),
            None,
            Some("route+service"),
        ),
        (
            &all,
            Some(OTHER_ROUTE),
            Some(SERVICE),
            None,
            Some("service"),
        ),
        (&all, None, None, Some("alice-key"), Some("consumer")),
        (&all, None, None, None, Some("global")),
        (&[5, 6], Some(ROUTE), Some(SERVICE), None, Some("route")),
        (
            &[1, 6],
            Some(ROUTE),
            Some(SERVICE),
            Some("alice-key"),
            Some("consumer+route"),
        ),
        (
            &[4, 3],
            Some(ROUTE),
            Some(SERVICE),
            Some("alice-key"),
            Some("route+service"),
        ),
        (&[0, 1, 2, 3], None, Some(SERVICE), Some("bob-key"), None),
    ];
    for (i, (shapes, route, service, key, expected)) in rows.into_iter().enumerate() {
        let set = set_with(shapes);
        assert_eq!(winner(&set, route, service, key), expected, "row {i}");
    }
}

#[test]
fn consumer_scoped_plugins_apply_only_after_key_auth() {
    // A consumer-scoped rate limit for alice, a global one for everybody else.
    let set = build(vec![
        plugin(1, "key-auth", json!({})),
        scoped(
            plugin(2, "rate-limiting", json!({"minute": 1})),
            None,
            None,
            Some(ALICE),
        ),
        plugin(3, "rate-limiting", json!({"minute": 100})),
    ]);
    let ctx = proceed(Req::get().key("alice-key").run(&set));
    let h = response_headers(&set, &ctx);
    assert_eq!(header(&h, "x-ratelimit-limit-minute"), Some("1"));
    let ctx = proceed(Req::get().key("bob-key").run(&set));
    let h = response_headers(&set, &ctx);
    assert_eq!(header(&h, "x-ratelimit-limit-minute"), Some("100"));
}

#[test]
fn auth_and_cors_never_resolve_consumer_scopes() {
    // Kong forbids consumer-scoped auth; such an instance can never match.
    let set = build(vec![scoped(
        plugin(1, "key-auth", json!({})),
        None,
        None,
        Some(ALICE),
    )]);
    proceed(Req::get().run(&set));
    let set = build(vec![scoped(
        plugin(1, "cors", json!({})),
        None,
        None,
        Some(ALICE),
    )]);
    let ctx = proceed(Req::get().header("origin", "https://a.io").run(&set));
    assert!(response_headers(&set, &ctx).is_empty());
}

#[test]
fn disabled_plugins_are_ignored() {
    let mut route_probe = probe(5);
    route_probe.enabled = false;
    let set = build(vec![route_probe, probe(7)]);
    assert_eq!(
        winner(&set, Some(ROUTE), Some(SERVICE), None),
        Some("global")
    );
    let mut auth = plugin(1, "key-auth", json!({}));
    auth.enabled = false;
    proceed(Req::get().run(&build(vec![auth])));
}

#[test]
fn protocols_filter_the_resolved_instance() {
    let https_only = with_protocols(probe(5), &[Protocol::Https]);
    let set = build(vec![https_only, probe(7)]);
    let mut req = Req::get();
    assert_eq!(proceed(req.run(&set)).max_body_bytes, None);
    req.https = true;
    assert_eq!(proceed(req.run(&set)).max_body_bytes, Some(6));
    let auth = with_protocols(plugin(1, "key-auth", json!({})), &[Protocol::Https]);
    proceed(Req::get().run(&build(vec![auth])));
}

fn build_err(plugins: Vec<fleetgate_config::Plugin>) -> PluginError {
    let config = GatewayConfig {
        plugins,
        ..base_config()
    };
    match PluginSet::build(&config, Arc::new(RateLimitCounters::default())) {
        Ok(_) => panic!("config must be refused"),
        Err(e) => e,
    }
}

#[test]
fn bad_configs_are_refused() {
    let e = build_err(vec![plugin(1, "acl", json!({}))]);
    assert!(
        matches!(e, PluginError::UnknownPlugin { ref name, .. } if name == "acl"),
        "{e}"
    );
    let e = build_err(vec![
        plugin(1, "cors", json!({})),
        plugin(2, "cors", json!({})),
    ]);
    assert!(matches!(e, PluginError::DuplicateScope { .. }), "{e}");
    let e = build_err(vec![plugin(1, "cors", json!({"origins": ["(", "x"]}))]);
    assert!(matches!(e, PluginError::InvalidConfig { .. }), "{e}");
    let e = build_err(vec![plugin(1, "rate-limiting", json!({"minute": "many"}))]);
    assert!(matches!(e, PluginError::InvalidConfig { .. }), "{e}");
    let e = build_err(vec![plugin(1, "rate-limiting", json!({}))]);
    assert!(e.to_string().contains("at least one"), "{e}");
}
