//! The proxy path: route, run plugins, pick a target, forward with streaming bodies, map
//! failures to Kong's JSON errors, and count everything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetgate_config::Protocol;
use fleetgate_plugins::{AccessOutcome, AccessRequest, PluginContext};
use fleetgate_router::{upstream_path, RequestFacts, Scheme};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::balancer::{Balancer, BalancerTarget, Outcome};
use crate::connector::{TimeoutConnector, UpstreamTls, UpstreamTlsError};
use crate::gateway::{CompiledConfig, Gateway, ServiceRuntime};
use crate::idle::IdleTimeoutBody;
use crate::metrics::UpstreamError;
use crate::telemetry::Tally;

/// Errors of a proxied body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type used in both directions.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// What the proxy knows about the downstream connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub remote: SocketAddr,
    /// The local port the request arrived on (for X-Forwarded-Port).
    pub local_port: u16,
    /// Whether the connection is TLS.
    pub https: bool,
    /// SNI sent by the client, for TLS connections.
    pub sni: Option<String>,
    /// The client's address and the local port as header values: made once per connection,
    /// not per request.
    client_ip: HeaderValue,
    port: HeaderValue,
}

impl Downstream {
    /// A connection from `remote` to `local_port`.
    pub fn new(remote: SocketAddr, local_port: u16, https: bool, sni: Option<String>) -> Self {
        let number = |text: String| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        Self {
            remote,
            local_port,
            https,
            sni,
            client_ip: number(remote.ip().to_string()),
            port: number(local_port.to_string()),
        }
    }
}

/// Pooled upstream HTTP client.
pub type UpstreamClient = Client<TimeoutConnector, ProxyBody>;

/// Pooled upstream HTTP clients, one per distinct (connect, write, TLS check) triple (the
/// connector owns them). Looked up when a config is compiled, never per request. Services
/// trusting different CA certificates never share a pool, so a connection verified against
/// one service's CAs is never reused for another's.
#[derive(Debug, Default)]
pub struct UpstreamClients {
    by_settings: Mutex<HashMap<(Duration, Duration, UpstreamTls), UpstreamClient>>,
}

impl UpstreamClients {
    /// The pooled client for these settings (created on first use, then reused). Fails when
    /// the TLS settings hold a CA certificate rustls cannot use.
    pub fn client(
        &self,
        connect_timeout: Duration,
        write_timeout: Duration,
        tls: &UpstreamTls,
    ) -> anyhow::Result<UpstreamClient> {
        let mut map = self.by_settings.lock().unwrap_or_else(|p| p.into_inner());
        let key = (connect_timeout, write_timeout, tls.clone());
        if let Some(client) = map.get(&key) {
            return Ok(client.clone());
        }
        let connector = TimeoutConnector::new(connect_timeout, write_timeout, tls)?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .build(connector);
        map.insert(key, client.clone());
        Ok(client)
    }
}

/// A JSON error answer like Kong's: `{"message": "..."}`.
pub fn json_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// A complete body.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Kong's answers when the upstream misbehaves or is too slow.
pub(crate) const BAD_RESPONSE: (StatusCode, &str) = (
    StatusCode::BAD_GATEWAY,
    "An invalid response was received from the upstream server",
);
pub(crate) const TIMED_OUT: (StatusCode, &str) = (
    StatusCode::GATEWAY_TIMEOUT,
    "The upstream server is timed out",
);

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a lookup per name.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// The hop-by-hop headers of a message whose headers are (name, value) bytes as received:
/// [`HOP_BY_HOP`] and whatever its `Connection` headers name (the first four of those).
pub(crate) struct HopByHop<'h> {
    connection: [&'h [u8]; 4],
    listed: usize,
}

impl<'h> HopByHop<'h> {
    /// Reads the `Connection` headers of `headers`.
    pub(crate) fn of(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> Self {
        let mut hop_by_hop = Self {
            connection: [b""; 4],
            listed: 0,
        };
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(b"connection") && hop_by_hop.listed < 4 {
                hop_by_hop.connection[hop_by_hop.listed] = value;
                hop_by_hop.listed += 1;
            }
        }
        hop_by_hop
    }

    /// Whether a header `name` is hop-by-hop in this message.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        // The lengths of the HOP_BY_HOP names: most headers are rejected by length alone.
        let maybe_listed = matches!(name.len(), 2 | 7 | 10 | 16 | 17);
        (maybe_listed
            && HOP_BY_HOP
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes())))
            || self.connection[..self.listed]
                .iter()
                .flat_map(|value| value.split(|b| *b == b','))
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Handles one request end to end; never fails (errors become Kong-style JSON answers).
pub async fn handle(
    gateway: Arc<Gateway>,
    downstream: Downstream,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let config = gateway.current();
    let mut tally = Tally::start(&gateway, start, config.control_plane_id);
    if let Some(expired_at) = gateway.license.expired_at() {
        return tally.finish(crate::license::expired_response(expired_at));
    }
    let response = proxy(&gateway, &config, &downstream, req, &mut tally).await;
    gateway
        .metrics
        .record(response.status().as_u16(), start.elapsed());
    tally.finish(response)
}

/// The request's host: its `Host` header (visible ASCII only, as `HeaderValue::to_str`
/// accepts), else the authority of an absolute-form target.
fn request_host(host_header: Option<&[u8]>, uri: &Uri) -> String {
    host_header
        .filter(|v| v.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b)))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// A request matched to a route of an enabled service: what both the general path (hyper)
/// and the HTTP/1 fast path ([`crate::fastpath`]) forward.
pub(crate) struct Routed<'c> {
    /// The route's service.
    pub service: &'c ServiceRuntime,
    /// The matched route.
    pub route_id: uuid::Uuid,
    /// The request's `Host` (or absolute-form authority).
    pub host: String,
    /// The path sent upstream (strip_path and the service path applied).
    pub upstream_path: String,
    /// The route's `preserve_host`.
    pub preserve_host: bool,
}

/// Routing: the matched route and its service, or the local answer (404, 426 or a redirect
/// for https-only routes, 503 for a route without an enabled service).
// The Err is the answer itself, made only off the hot path; boxing it would add an
// allocation there and save nothing on the forwarding path.
#[allow(clippy::result_large_err)]
pub(crate) fn route<'c>(
    config: &'c CompiledConfig,
    downstream: &Downstream,
    method: &Method,
    uri: &Uri,
    host_header: Option<&[u8]>,
    headers: &HeaderMap,
    tally: &mut Tally,
) -> Result<Routed<'c>, Response<ProxyBody>> {
    let host = request_host(host_header, uri);
    let path = uri.path();
    let scheme = if downstream.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let matched = config.router.find(&RequestFacts {
        method: method.as_str(),
        host: &host,
        path,
        scheme,
        headers,
        sni: downstream.sni.as_deref(),
    });
    let Some(matched) = matched else {
        // Kong: a plain-HTTP request that only an https route matches is told to upgrade
        // (426) or redirected, per the route's `https_redirect_status_code`.
        if !downstream.https {
            let secure = config.router.find(&RequestFacts {
                method: method.as_str(),
                host: &host,
                path,
                scheme: Scheme::Https,
                headers,
                sni: None,
            });
            if let Some(secure) = secure {
                return Err(https_required(
                    secure.route.https_redirect_status_code,
                    &host,
                    uri,
                ));
            }
        }
        return Err(json_error(
            StatusCode::NOT_FOUND,
            "no Route matched with those values",
        ));
    };
    tally.route_id = Some(matched.route_id);
    tally.service_id = matched.service_id;
    let service = matched
        .service_id
        .and_then(|id| config.services.get(&id))
        .filter(|s| s.enabled);
    let Some(service) = service else {
        return Err(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Service found with those values",
        ));
    };
    Ok(Routed {
        service,
        route_id: matched.route_id,
        upstream_path: upstream_path(path, &matched, service.path.as_deref()),
        preserve_host: matched.route.preserve_host,
        host,
    })
}

/// The access phase: plugins may answer directly (401, 429, a CORS preflight, ...) or edit
/// headers and query; on `Ok` the plugin context and the (possibly edited) query.
#[allow(clippy::result_large_err)] // as for `route`
pub(crate) fn access(
    config: &CompiledConfig,
    routed: &Routed<'_>,
    downstream: &Downstream,
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    tally: &mut Tally,
) -> Result<(PluginContext, Option<String>), Response<ProxyBody>> {
    let mut query = uri.query().map(str::to_string);
    let outcome = config.plugins.access(&mut AccessRequest {
        route_id: Some(routed.route_id),
        service_id: Some(routed.service.id),
        method,
        headers,
        query: &mut query,
        client_ip: downstream.remote.ip(),
        path: uri.path(),
        scheme_is_https: downstream.https,
    });
    match outcome {
        AccessOutcome::Continue(ctx) => {
            tally.consumer_id = ctx.consumer_id;
            Ok((ctx, query))
        }
        AccessOutcome::Respond(response, ctx) => {
            tally.consumer_id = ctx.consumer_id;
            let (mut parts, body) = response.into_parts();
            config.plugins.response(&ctx, &mut parts.headers);
            Err(Response::from_parts(parts, full(body)))
        }
    }
}

/// The request headers as sent upstream: hop-by-hop headers removed (an upgrade's
/// `Upgrade`/`Connection` kept), the forwarding headers and `Via` added. `Host` is set per
/// attempt ([`upstream_host`]).
pub(crate) fn upstream_request_headers(
    headers: &mut HeaderMap,
    downstream: &Downstream,
    host: &str,
    upgrade: bool,
) {
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if let Some(value) = upgrade_value.filter(|_| upgrade) {
        headers.insert(header::UPGRADE, value);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    add_forwarded_headers(headers, downstream, host);
}

/// The `Host` sent to `target`: the client's with `preserve_host`, else the target's.
pub(crate) fn upstream_host(routed: &Routed<'_>, target: &Target<'_>) -> Option<HeaderValue> {
    if routed.preserve_host && !routed.host.is_empty() {
        HeaderValue::from_str(&routed.host).ok()
    } else {
        target.host_value().cloned()
    }
}

/// The upstream's response headers as sent downstream: hop-by-hop headers removed, `Via`
/// added, the plugins' response phase (CORS, rate-limit headers) applied.
pub(crate) fn downstream_response_headers(
    headers: &mut HeaderMap,
    config: &CompiledConfig,
    plugin_ctx: &PluginContext,
) {
    strip_hop_by_hop(headers);
    headers.append(header::VIA, HeaderValue::from_static("1.1 fleetgate"));
    config.plugins.response(plugin_ctx, headers);
}

async fn proxy(
    gateway: &Gateway,
    config: &CompiledConfig,
    downstream: &Downstream,
    mut req: Request<Incoming>,
    tally: &mut Tally,
) -> Response<ProxyBody> {
    let host_header = req.headers().get(header::HOST).map(HeaderValue::as_bytes);
    let routed = match route(
        config,
        downstream,
        req.method(),
        req.uri(),
        host_header,
        req.headers(),
        tally,
    ) {
        Ok(routed) => routed,
        Err(response) => return response,
    };
    let service = routed.service;
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (plugin_ctx, query) = match access(
        config,
        &routed,
        downstream,
        &method,
        &uri,
        req.headers_mut(),
        tally,
    ) {
        Ok(accessed) => accessed,
        Err(response) => return response,
    };

    let upgrade = is_upgrade(req.headers());
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    upstream_request_headers(&mut parts.headers, downstream, &routed.host, upgrade);

    let retryable_body = !has_body(&parts.headers);
    let body = tally.count_request_body(body);
    let mut body = Some(match plugin_ctx.max_body_bytes {
        Some(limit) => Limited::new(body, limit as usize).boxed(),
        None => body.map_err(|e| Box::new(e) as BoxError).boxed(),
    });
    let client = &service.client;
    let attempts = 1 + usize::from(service.retries);
    let scheme = if matches!(service.protocol, Protocol::Https | Protocol::Grpcs) {
        "https"
    } else {
        "http"
    };
    let mut last_error = BAD_RESPONSE;
    for attempt in 0..attempts {
        let target = match pick(service) {
            Ok(t) => t,
            Err(()) => {
                gateway
                    .metrics
                    .upstream_error(UpstreamError::NoHealthyTarget);
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "failure to get a peer from the ring-balancer",
                );
            }
        };
        let Some(this_body) = body
            .take()
            .or_else(|| retryable_body.then(|| full(Bytes::new())))
        else {
            break;
        };
        let uri = match upstream_uri(&target, scheme, &routed.upstream_path, query.as_deref()) {
            Ok(uri) => uri,
            Err(_) => return json_error(StatusCode::BAD_GATEWAY, "invalid upstream address"),
        };
        let mut upstream_req = Request::from_parts(parts.clone(), this_body);
        *upstream_req.uri_mut() = uri;
        *upstream_req.version_mut() = http::Version::HTTP_11;
        if let Some(h) = upstream_host(&routed, &target) {
            upstream_req.headers_mut().insert(header::HOST, h);
        }
        tally.upstream_sent();
        let sent = tokio::time::timeout(service.read_timeout, client.request(upstream_req)).await;
        tally.upstream_done();
        match sent {
            Ok(Ok(mut response)) => {
                target.report(Outcome::Status(response.status().as_u16()));
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(down) = downstream_upgrade {
                        let up = hyper::upgrade::on(&mut response);
                        tokio::spawn(async move {
                            if let (Ok(down), Ok(up)) = (down.await, up.await) {
                                let mut down = TokioIo::new(down);
                                let mut up = TokioIo::new(up);
                                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                            }
                        });
                    }
                    let (parts, _) = response.into_parts();
                    return Response::from_parts(parts, full(Bytes::new()));
                }
                let (mut parts, body) = response.into_parts();
                downstream_response_headers(&mut parts.headers, config, &plugin_ctx);
                let body = IdleTimeoutBody::new(body, service.read_timeout).boxed();
                return Response::from_parts(parts, body);
            }
            Ok(Err(err)) => {
                if in_error_chain(&err, |e| e.is::<http_body_util::LengthLimitError>()) {
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Request size limit exceeded",
                    );
                }
                if err.is_connect() {
                    target.report(Outcome::TcpFailure);
                    gateway.metrics.upstream_error(UpstreamError::Connect);
                    match find_in_chain::<UpstreamTlsError>(&err) {
                        // Not a network hiccup: the operator must learn why the upstream
                        // was refused (unknown CA, wrong name, expired, chain too long).
                        Some(tls) => {
                            tracing::warn!(target = %target.address(), error = %tls, "upstream TLS handshake failed");
                        }
                        None => {
                            tracing::debug!(target = %target.address(), error = %err, "upstream connect failed");
                        }
                    }
                    last_error = BAD_RESPONSE;
                    // Nothing reached the upstream: safe to retry whatever the method.
                    if body.is_none() && !retryable_body {
                        break;
                    }
                    continue;
                }
                if in_error_chain(&err, |e| {
                    e.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
                }) {
                    // write_timeout: the upstream stopped taking the request.
                    target.report(Outcome::Timeout);
                    gateway.metrics.upstream_error(UpstreamError::Timeout);
                    return json_error(TIMED_OUT.0, TIMED_OUT.1);
                }
                gateway.metrics.upstream_error(UpstreamError::Protocol);
                last_error = BAD_RESPONSE;
                if !(is_idempotent(&method) && retryable_body) || attempt + 1 == attempts {
                    break;
                }
            }
            Err(_) => {
                target.report(Outcome::Timeout);
                gateway.metrics.upstream_error(UpstreamError::Timeout);
                last_error = TIMED_OUT;
                if !(is_idempotent(&method) && retryable_body) {
                    break;
                }
            }
        }
    }
    json_error(last_error.0, last_error.1)
}

/// The first error of type `E` in `err`'s `source()` chain.
fn find_in_chain<'e, E: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e E> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Whether `err` or any error in its `source()` chain satisfies `test`.
fn in_error_chain(
    err: &(dyn std::error::Error + 'static),
    test: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if test(e) {
            return true;
        }
        current = e.source();
    }
    false
}

/// Where one attempt goes: a balancer target or the service's own host.
pub(crate) enum Target<'a> {
    Balanced(&'a Balancer, &'a BalancerTarget),
    Direct(&'a ServiceRuntime),
}

impl Target<'_> {
    pub(crate) fn address(&self) -> String {
        self.endpoint().2.to_string()
    }

    /// Host, port and `host:port` of this target.
    pub(crate) fn endpoint(&self) -> (&str, u16, &str) {
        match self {
            Target::Balanced(_, t) => (&t.host, t.port, &t.address),
            Target::Direct(s) => (&s.host, s.port, &s.address),
        }
    }

    /// The `Host` this target is addressed by (made when the config was compiled).
    fn host_value(&self) -> Option<&HeaderValue> {
        match self {
            Target::Balanced(_, t) => t.host_value.as_ref(),
            Target::Direct(s) => s.host_value.as_ref(),
        }
    }

    pub(crate) fn report(&self, outcome: Outcome) {
        if let Target::Balanced(b, t) = self {
            b.report(t, outcome);
        }
    }
}

pub(crate) fn pick(service: &ServiceRuntime) -> Result<Target<'_>, ()> {
    match &service.balancer {
        Some(b) => b.pick().map(|t| Target::Balanced(b, t)).ok_or(()),
        None => Ok(Target::Direct(service)),
    }
}

fn upstream_uri(
    target: &Target<'_>,
    scheme: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, http::Error> {
    let path_and_query = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    };
    let authority = match target {
        Target::Balanced(_, t) if t.host.contains(':') => format!("[{}]:{}", t.host, t.port),
        other => other.address(),
    };
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
}

/// Kong's answer to plain HTTP on an https-only route: 426 with `Upgrade`, or a redirect to
/// the same host and path over https.
fn https_required(status: u16, host: &str, uri: &Uri) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UPGRADE_REQUIRED);
    if status == StatusCode::UPGRADE_REQUIRED {
        let mut response = json_error(status, "Please use HTTPS protocol");
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            header::UPGRADE,
            HeaderValue::from_static("TLS/1.2, HTTP/1.1"),
        );
        return response;
    }
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{}{path_and_query}", strip_port(host));
    let mut response = json_error(status, "Please use HTTPS protocol");
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The host without its port (`[::1]:80` -> `[::1]`, `a:80` -> `a`).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// `X-Forwarded-For` for a request that already carried `prior`: the client appended.
fn forwarded_for(prior: &[u8], client_ip: &[u8]) -> Vec<u8> {
    let mut joined = Vec::with_capacity(prior.len() + 2 + client_ip.len());
    joined.extend_from_slice(prior);
    joined.extend_from_slice(b", ");
    joined.extend_from_slice(client_ip);
    joined
}

fn add_forwarded_headers(headers: &mut HeaderMap, downstream: &Downstream, host: &str) {
    let xff = match headers.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prior) if !prior.is_empty() => {
            HeaderValue::from_bytes(&forwarded_for(prior, downstream.client_ip.as_bytes())).ok()
        }
        _ => Some(downstream.client_ip.clone()),
    };
    if let Some(xff) = xff {
        headers.insert(X_FORWARDED_FOR, xff);
    }
    let proto = if downstream.https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    let host_only = strip_port(host);
    let forwarded_host = match headers.get(header::HOST) {
        // The usual case: `Host` has no port, so its value is reused as is.
        Some(value) if value.as_bytes() == host_only.as_bytes() => Some(value.clone()),
        _ => HeaderValue::from_str(host_only).ok(),
    };
    if let Some(value) = forwarded_host {
        headers.insert(X_FORWARDED_HOST, value);
    }
    headers.insert(X_FORWARDED_PORT, downstream.port.clone());
    headers.insert(X_REAL_IP, downstream.client_ip.clone());
    headers.append(header::VIA, HeaderValue::from_static("1.1 fleetgate"));
}

/// The headers [`add_forwarded_headers`] replaces (and `Via`, which it appends to).
const FORWARDED: [HeaderName; 5] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PORT,
    X_REAL_IP,
];

/// [`upstream_request_headers`] and the `Host` of [`upstream_host`] for a request whose
/// headers are still the bytes received (the fast path without plugins): emits each header
/// to send upstream as (name, value) bytes. The same headers as the header-map version
/// (a test compares the two).
pub(crate) fn upstream_request_headers_raw<'h>(
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    downstream: &Downstream,
    request_host: &str,
    host: Option<&HeaderValue>,
    mut emit: impl FnMut(&[u8], &[u8]),
) {
    let hop_by_hop = HopByHop::of(headers.clone());
    let prior_xff = headers
        .clone()
        .find(|(name, _)| name.eq_ignore_ascii_case(b"x-forwarded-for"))
        .map(|(_, value)| value);
    if let Some(host) = host {
        emit(b"host", host.as_bytes());
    }
    for (name, value) in headers {
        let replaced = FORWARDED
            .iter()
            .any(|f| name.eq_ignore_ascii_case(f.as_str().as_bytes()))
            || (host.is_some() && name.eq_ignore_ascii_case(b"host"));
        if !replaced && !hop_by_hop.contains(name) {
            emit(name, value);
        }
    }
    let client_ip = downstream.client_ip.as_bytes();
    match prior_xff {
        Some(prior) if !prior.is_empty() => emit(
            X_FORWARDED_FOR.as_str().as_bytes(),
            &forwarded_for(prior, client_ip),
        ),
        _ => emit(X_FORWARDED_FOR.as_str().as_bytes(), client_ip),
    }
    let proto: &[u8] = if downstream.https { b"https" } else { b"http" };
    emit(X_FORWARDED_PROTO.as_str().as_bytes(), proto);
    emit(
        X_FORWARDED_HOST.as_str().as_bytes(),
        strip_port(request_host).as_bytes(),
    );
    emit(
        X_FORWARDED_PORT.as_str().as_bytes(),
        downstream.port.as_bytes(),
    );
    emit(X_REAL_IP.as_str().as_bytes(), client_ip);
    emit(b"via", b"1.1 fleetgate");
}
