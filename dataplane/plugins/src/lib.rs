//! Fleetgate's data-plane plugin engine: Kong 3.x `key-auth`, `rate-limiting`, `cors` and
//! `request-size-limiting`, with Kong's plugin scoping and precedence.
//!
//! The crate is pure logic over [`http`] types: no sockets, no body streaming. The proxy
//! builds a [`PluginSet`] from each configuration version (off the hot path), then for every
//! request calls [`PluginSet::access`] once the router has matched a route, and
//! [`PluginSet::response`] on the upstream's response headers.
//!
//! # Execution order and precedence
//! Plugins run by Kong's `PRIORITY`, highest first: `cors` (2000), `key-auth` (1250),
//! `request-size-limiting` (951), `rate-limiting` (910). For each plugin name the instance
//! that runs is the most specific one, in Kong's order: consumer+route+service >
//! consumer+route > consumer+service > route+service > consumer > route > service > global.
//! Like Kong's collecting iterator, each plugin is resolved with the consumer known *at that
//! point*: `cors` and `key-auth` never see consumer-scoped instances, the plugins after
//! `key-auth` do.
//!
//! # Known differences from Kong
//! - `key-auth`: `key_in_body` is not supported (treated as false: the proxy streams bodies);
//!   credential `ttl` is enforced from the control plane's `expires_at` (a key loaded from a
//!   local declarative file with `ttl` but no `expires_at` never expires); unknown-key message is
//!   `Invalid authentication credentials` (Kong < 3.7; Kong 3.7+ says `Unauthorized`).
//! - `rate-limiting`: every policy (`cluster`, `redis`) counts in local memory, per process;
//!   counters are keyed by plugin id (Kong keys by the plugin's route/service scope); a
//!   request is admitted atomically (check-and-increment), so concurrent requests can never
//!   exceed a limit; `Retry-After` is sent even with `hide_client_headers`; month/year
//!   resets count to the real calendar boundary (Kong uses fixed 30/365-day lengths).
//! - `cors`: Kong's `allow_origin_absent` (not in our config) behaves as its default, true.
//! - Header names are lower-case (the `http` crate's representation); HTTP/1 clients may see
//!   `x-ratelimit-limit-minute` rather than `X-RateLimit-Limit-Minute`.

mod cors;
mod counters;
mod key_auth;
mod query;
mod rate_limiting;
mod response;
mod scope;
mod set;
mod size_limit;

use std::net::IpAddr;

use uuid::Uuid;

pub use counters::RateLimitCounters;
pub use set::PluginSet;

/// One request as the access phase sees it. Plugins may edit headers and query (remove
/// credentials, add `X-Consumer-*`), so the proxy must forward the edited values upstream.
#[derive(Debug)]
pub struct AccessRequest<'a> {
    /// The matched route, `None` when unknown.
    pub route_id: Option<Uuid>,
    /// The route's service, `None` when unknown.
    pub service_id: Option<Uuid>,
    /// The request method.
    pub method: &'a http::Method,
    /// Request headers; plugins may remove credentials (hide_credentials) and add
    /// `X-Consumer-*` headers.
    pub headers: &'a mut http::HeaderMap,
    /// Raw query string (without `?`); key-auth may read and remove its key
    /// (hide_credentials). Set to `None` when the last parameter is removed.
    pub query: &'a mut Option<String>,
    /// The client's address (already resolved through trusted proxies by the caller).
    pub client_ip: IpAddr,
    /// The request path (without query).
    pub path: &'a str,
    /// Whether the request arrived over TLS (selects the `https` protocol for plugins).
    pub scheme_is_https: bool,
}

/// What the proxy does after the access phase.
#[derive(Debug)]
pub enum AccessOutcome {
    /// Proxy the request. `ctx` carries what the response phase and telemetry need.
    Continue(PluginContext),
    /// Answer directly with this response (401, 429, 413, 411, CORS preflight 200, ...).
    /// Error bodies are Kong's `{"message": "..."}` JSON. The response already carries the
    /// response-phase headers (CORS), so calling [`PluginSet::response`] on it is not needed
    /// (it is harmless: the response phase is idempotent).
    Respond(http::Response<bytes::Bytes>, PluginContext),
}

/// Per-request state produced by the access phase.
#[derive(Debug, Clone, Default)]
pub struct PluginContext {
    /// The authenticated consumer (or the anonymous consumer).
    pub consumer_id: Option<Uuid>,
    /// The credential that authenticated the request (`None` for anonymous).
    pub credential_id: Option<Uuid>,
    /// Max request body bytes allowed (request-size-limiting): the proxy enforces it while
    /// streaming the body (413 when exceeded); the plugin itself only checks
    /// `Content-Length` up front.
    pub max_body_bytes: Option<u64>,
    /// CORS decision inputs for the response phase; `None` when cors did not run or must
    /// not touch the response (preflight handled or delegated).
    pub(crate) cors: Option<cors::CorsState>,
    /// Rate-limit headers to add to the response; `None` when hidden or not limited.
    pub(crate) rate_limit: Option<rate_limiting::RateLimitHeaders>,
}

impl PluginContext {
    /// Whether [`PluginSet::response`] would change a response's headers (CORS or
    /// rate-limit headers to add); when not, the proxy may relay the head without building
    /// a header map for it.
    pub fn has_response_phase(&self) -> bool {
        self.cors.is_some() || self.rate_limit.is_some()
    }
}

/// Why a configuration could not be compiled into a [`PluginSet`].
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A plugin's `config` does not match its typed schema or holds an unusable value.
    #[error("plugin {id} ({name}): invalid config: {reason}")]
    InvalidConfig {
        /// Plugin id.
        id: Uuid,
        /// Plugin name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The data plane does not implement this plugin. Refused rather than skipped: silently
    /// dropping e.g. an auth plugin would open the API.
    #[error("plugin {id}: unknown plugin '{name}'")]
    UnknownPlugin {
        /// Plugin id.
        id: Uuid,
        /// Plugin name.
        name: String,
    },
    /// Two enabled plugins of the same name share one scope (Kong forbids it).
    #[error("plugins {first} and {second}: two '{name}' plugins on the same scope")]
    DuplicateScope {
        /// Plugin name.
        name: String,
        /// The plugin kept first.
        first: Uuid,
        /// The conflicting plugin.
        second: Uuid,
    },
}
