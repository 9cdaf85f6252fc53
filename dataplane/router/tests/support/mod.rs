//! Shared helpers of the table-driven router tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeMap;

use fleetgate_config::{EntityRef, GatewayConfig, Protocol, Route, Uuid};
use fleetgate_router::{RequestFacts, Router, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue};

/// A route from a compact description; ids are assigned by `config`.
#[derive(Default, Clone)]
pub struct R {
    pub hosts: &'static [&'static str],
    pub paths: &'static [&'static str],
    pub methods: &'static [&'static str],
    pub headers: &'static [(&'static str, &'static [&'static str])],
    pub snis: &'static [&'static str],
    pub protocols: &'static [Protocol],
    pub regex_priority: i64,
}

pub fn opt(v: &[&str]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect())
}

pub fn to_route(i: usize, r: &R) -> Route {
    Route {
        id: Uuid::from_u128(i as u128 + 1),
        hosts: opt(r.hosts),
        paths: opt(r.paths),
        methods: opt(r.methods),
        snis: opt(r.snis),
        headers: (!r.headers.is_empty()).then(|| {
            r.headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<BTreeMap<_, _>>()
        }),
        protocols: if r.protocols.is_empty() {
            vec![Protocol::Http, Protocol::Https]
        } else {
            r.protocols.to_vec()
        },
        regex_priority: r.regex_priority,
        service: Some(EntityRef::new(Uuid::from_u128(1000 + i as u128))),
        ..Route::default()
    }
}

pub fn config(routes: &[R]) -> GatewayConfig {
    GatewayConfig {
        routes: routes
            .iter()
            .enumerate()
            .map(|(i, r)| to_route(i, r))
            .collect(),
        ..GatewayConfig::default()
    }
}

/// A request from a compact description.
#[derive(Clone, Copy)]
pub struct Q {
    pub method: &'static str,
    pub host: &'static str,
    pub path: &'static str,
    pub https: bool,
    pub headers: &'static [(&'static str, &'static str)],
    pub sni: Option<&'static str>,
}

pub const fn get(host: &'static str, path: &'static str) -> Q {
    Q {
        method: "GET",
        host,
        path,
        https: false,
        headers: &[],
        sni: None,
    }
}

pub fn headers(q: &Q) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in q.headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("test header name"),
            HeaderValue::from_static(v),
        );
    }
    h
}

/// `(route index, matched_len)` of a match, if any.
pub type Hit = Option<(usize, Option<usize>)>;

/// The match of `q`, as a [`Hit`].
pub fn find(router: &Router, q: &Q) -> Hit {
    let h = headers(q);
    let facts = RequestFacts {
        method: q.method,
        host: q.host,
        path: q.path,
        scheme: if q.https { Scheme::Https } else { Scheme::Http },
        headers: &h,
        sni: q.sni,
    };
    router.find(&facts).map(|m| {
        assert_eq!(m.route.id, m.route_id);
        assert_eq!(
            m.service_id,
            Some(Uuid::from_u128(1000 + m.route_index as u128))
        );
        (m.route_index, m.matched_len)
    })
}

pub struct Case {
    pub name: &'static str,
    pub routes: Vec<R>,
    /// Request and expected `(route index, matched_len)`.
    pub expect: Vec<(Q, Hit)>,
}

pub fn run(cases: Vec<Case>) -> usize {
    let mut checks = 0;
    for case in cases {
        let router = Router::build(&config(&case.routes))
            .unwrap_or_else(|e| panic!("{}: build: {e}", case.name));
        for (q, want) in &case.expect {
            assert_eq!(
                find(&router, q),
                *want,
                "case '{}': {} {} {}",
                case.name,
                q.method,
                q.host,
                q.path
            );
            checks += 1;
        }
    }
    checks
}
