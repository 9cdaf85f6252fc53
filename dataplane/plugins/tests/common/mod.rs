//! Shared fixtures: a small configuration with one route/service, two consumers with keys,
//! and a request builder.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetgate_config::{
    Consumer, EntityRef, GatewayConfig, KeyAuthCredential, Plugin, Protocol, Route, Service, Uuid,
};
use fleetgate_plugins::{
    AccessOutcome, AccessRequest, PluginContext, PluginSet, RateLimitCounters,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use serde_json::Value;

pub const ROUTE: Uuid = Uuid::from_u128(0x1);
pub const SERVICE: Uuid = Uuid::from_u128(0x2);
pub const OTHER_ROUTE: Uuid = Uuid::from_u128(0x3);
pub const ALICE: Uuid = Uuid::from_u128(0xa11ce);
pub const BOB: Uuid = Uuid::from_u128(0xb0b);
pub const ALICE_CRED: Uuid = Uuid::from_u128(0xa1);
pub const BOB_CRED: Uuid = Uuid::from_u128(0xb1);

/// 2024-02-29T13:45:30Z: a fixed clock for window arithmetic.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_709_214_330)
}

pub fn at(secs_after_t0: u64) -> SystemTime {
    t0() + Duration::from_secs(secs_after_t0)
}

/// Consumers alice (username + custom_id, key "alice-key") and bob (username only,
/// key "bob-key"), one service and two routes; no plugins.
pub fn base_config() -> GatewayConfig {
    GatewayConfig {
        services: vec![Service {
            id: SERVICE,
            ..Service::default()
        }],
        routes: vec![
            Route {
                id: ROUTE,
                service: Some(EntityRef::new(SERVICE)),
                ..Route::default()
            },
            Route {
                id: OTHER_ROUTE,
                service: Some(EntityRef::new(SERVICE)),
                ..Route::default()
            },
        ],
        consumers: vec![
            Consumer {
                id: ALICE,
                username: Some("alice".into()),
                custom_id: Some("A-1".into()),
                ..Consumer::default()
            },
            Consumer {
                id: BOB,
                username: Some("bob".into()),
                ..Consumer::default()
            },
        ],
        keyauth_credentials: vec![
            KeyAuthCredential {
                id: ALICE_CRED,
                consumer: Some(EntityRef::new(ALICE)),
                key: "alice-key".into(),
                ..KeyAuthCredential::default()
            },
            KeyAuthCredential {
                id: BOB_CRED,
                consumer: Some(EntityRef::new(BOB)),
                key: "bob-key".into(),
                ttl: Some(1),
                ..KeyAuthCredential::default()
            },
        ],
        ..GatewayConfig::default()
    }
}

/// A global plugin.
pub fn plugin(id: u128, name: &str, config: Value) -> Plugin {
    Plugin {
        id: Uuid::from_u128(id),
        name: name.into(),
        config,
        ..Plugin::default()
    }
}

/// A plugin on a scope.
pub fn scoped(
    mut p: Plugin,
    route: Option<Uuid>,
    service: Option<Uuid>,
    consumer: Option<Uuid>,
) -> Plugin {
    p.route = route.map(EntityRef::new);
    p.service = service.map(EntityRef::new);
    p.consumer = consumer.map(EntityRef::new);
    p
}

pub fn with_protocols(mut p: Plugin, protocols: &[Protocol]) -> Plugin {
    p.protocols = protocols.to_vec();
    p
}

pub fn build(plugins: Vec<Plugin>) -> PluginSet {
    build_with(plugins, Arc::new(RateLimitCounters::new()))
}

pub fn build_with(plugins: Vec<Plugin>, counters: Arc<RateLimitCounters>) -> PluginSet {
    let mut config = base_config();
    config.plugins = plugins;
    match PluginSet::build(&config, counters) {
        Ok(set) => set,
        Err(e) => panic!("config must build: {e}"),
    }
}

/// An owned request; `run` lends it to the engine.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub path: String,
    pub ip: IpAddr,
    pub https: bool,
    pub route: Option<Uuid>,
    pub service: Option<Uuid>,
}

impl Req {
    pub fn get() -> Self {
        Self {
            method: Method::GET,
            headers: HeaderMap::new(),
            query: None,
            path: "/".into(),
            ip: IpAddr::from([192, 0, 2, 1]),
            https: false,
            route: Some(ROUTE),
            service: Some(SERVICE),
        }
    }

    pub fn method(mut self, m: Method) -> Self {
        self.method = m;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = HeaderValue::from_str(value).expect("header value");
        self.headers.append(name, value);
        self
    }

    pub fn query(mut self, q: &str) -> Self {
        self.query = Some(q.into());
        self
    }

    pub fn key(self, key: &str) -> Self {
        self.header("apikey", key)
    }

    pub fn run(&mut self, set: &PluginSet) -> AccessOutcome {
        self.run_at(set, t0())
    }

    pub fn run_at(&mut self, set: &PluginSet, now: SystemTime) -> AccessOutcome {
        let mut req = AccessRequest {
            route_id: self.route,
            service_id: self.service,
            method: &self.method,
            headers: &mut self.headers,
            query: &mut self.query,
            client_ip: self.ip,
            path: &self.path,
            scheme_is_https: self.https,
        };
        set.access_at(&mut req, now)
    }
}

/// The context of a proxied request; panics on a direct response.
pub fn proceed(outcome: AccessOutcome) -> PluginContext {
    match outcome {
        AccessOutcome::Continue(ctx) => ctx,
        AccessOutcome::Respond(r, _) => panic!(
            "expected Continue, got {} {:?}",
            r.status(),
            String::from_utf8_lossy(r.body())
        ),
    }
}

/// The direct response; panics when the request is proxied.
pub fn answered(outcome: AccessOutcome) -> (Response<bytes::Bytes>, PluginContext) {
    match outcome {
        AccessOutcome::Respond(r, ctx) => (r, ctx),
        AccessOutcome::Continue(ctx) => panic!("expected Respond, got Continue {ctx:?}"),
    }
}

pub fn body(r: &Response<bytes::Bytes>) -> String {
    String::from_utf8_lossy(r.body()).into_owned()
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The headers `response()` adds to an empty upstream response.
pub fn response_headers(set: &PluginSet, ctx: &PluginContext) -> HeaderMap {
    let mut headers = HeaderMap::new();
    set.response(ctx, &mut headers);
    headers
}
