//! Fleetgate's data-plane request router, with Kong 3.x `traditional_compatible` matching
//! semantics.
//!
//! [`Router::build`] compiles a [`GatewayConfig`]'s routes once (the result is immutable,
//! `Send + Sync`, meant to be swapped atomically on config changes); [`Router::find`] picks
//! the route for one request; [`upstream_path`] computes the path sent upstream.
//!
//! # Matching (Kong's rules)
//! A route matches when every category it sets matches: `methods` (exact, case-sensitive),
//! `hosts` (exact, `*.example.com` suffix, `example.*` prefix; a port in a route host must
//! equal the request's port), `headers` (every header present with one of its values,
//! case-insensitive; `~*` values are case-insensitive regexes), `paths` (byte prefix, or
//! `~regex` anchored at the start), `snis` (only checked on https). Routes whose
//! `protocols` don't include the request scheme never match (grpc counts as http, grpcs
//! as https; tcp/tls/udp routes are ignored).
//!
//! # Priority
//! Like Kong's `traditional_compatible` flavour, a route is split into one entry per group
//! of paths (all regex paths together, prefix paths by length) and entries are ordered by,
//! in turn (higher first): number of categories set, "hosts set and none is a wildcard",
//! number of headers, "has regex paths", `regex_priority` (regex entries only), prefix
//! length; ties go to the route that comes first in `config.routes`. The first entry in
//! that order that matches wins.
//!
//! [`GatewayConfig`]: fleetgate_config::GatewayConfig

mod build;
mod conditions;
mod fast_regex;
mod host;
mod host_table;
mod path_index;
mod upstream;

use fleetgate_config::{PathHandling, Protocol, Route};
use uuid::Uuid;

pub use build::Router;
pub use upstream::upstream_path;

/// The scheme a request arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (also gRPC without TLS).
    Http,
    /// HTTP over TLS (also gRPC over TLS).
    Https,
}

/// What the router looks at; all borrowed from the request, no allocation required by the
/// caller.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Request method, e.g. `GET` (compared case-sensitively, as Kong does).
    pub method: &'a str,
    /// Host header or `:authority`; may include `:port`. The router strips the port and
    /// compares names case-insensitively.
    pub host: &'a str,
    /// Raw path without the query string.
    pub path: &'a str,
    /// Scheme of the connection.
    pub scheme: Scheme,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// TLS server name, if the connection is TLS and the client sent one.
    pub sni: Option<&'a str>,
}

/// Per-route data the proxy needs once a route matched.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRuntime {
    /// Route id.
    pub id: Uuid,
    /// Route name.
    pub name: Option<String>,
    /// Id of the route's service, if any.
    pub service_id: Option<Uuid>,
    /// Protocols the route accepts.
    pub protocols: Vec<Protocol>,
    /// Whether the matched path prefix is removed before proxying.
    pub strip_path: bool,
    /// Whether the client's Host header is sent upstream.
    pub preserve_host: bool,
    /// How the stripped path is joined to the service path.
    pub path_handling: PathHandling,
    /// Redirect status for https-only routes hit over http.
    pub https_redirect_status_code: u16,
    /// Whether request bodies are buffered.
    pub request_buffering: bool,
    /// Whether response bodies are buffered.
    pub response_buffering: bool,
}

impl RouteRuntime {
    fn from_route(route: &Route) -> RouteRuntime {
        RouteRuntime {
            id: route.id,
            name: route.name.clone(),
            service_id: route.service.as_ref().map(|s| s.id),
            protocols: route.protocols.clone(),
            strip_path: route.strip_path,
            preserve_host: route.preserve_host,
            path_handling: route.path_handling,
            https_redirect_status_code: route.https_redirect_status_code,
            request_buffering: route.request_buffering,
            response_buffering: route.response_buffering,
        }
    }
}

/// The route chosen for a request.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'r> {
    /// Index of the route in `config.routes`.
    pub route_index: usize,
    /// Route id.
    pub route_id: Uuid,
    /// Id of the route's service, if any.
    pub service_id: Option<Uuid>,
    /// `Some(n)`: byte length of the request path prefix matched by the winning path
    /// (prefix, or regex match at the start); `None` when the route has no paths.
    pub matched_len: Option<usize>,
    /// The matched route's proxy-relevant settings.
    pub route: &'r RouteRuntime,
}

/// Why a configuration could not be compiled into a router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A path that cannot be used, such as a regex that fails to compile.
    #[error("routes[{index}].paths: {reason}")]
    BadPath {
        /// Index of the route in `config.routes`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A header condition that cannot be used (invalid name, `~*` regex that fails to
    /// compile).
    #[error("routes[{index}].headers.{name}: {reason}")]
    BadHeader {
        /// Index of the route in `config.routes`.
        index: usize,
        /// Header name as configured.
        name: String,
        /// What is wrong.
        reason: String,
    },
}
