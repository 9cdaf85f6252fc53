//! The HTTP/1.1 fast path: the proxy's common case — a request without a body to a plain
//! HTTP upstream — served without hyper. The request head is parsed in place, written
//! upstream as one buffer on a connection from this worker's own pool, and the response is
//! relayed unchanged apart from its head, the way nginx does it. Routing, plugins, target
//! choice, header rules, errors, metrics and telemetry are the same functions the general
//! path uses ([`crate::proxy`]).
//!
//! Anything else — HTTP/1.0, HTTP/2, request bodies, `Expect`, upgrades, https upstreams,
//! heads it cannot parse — is handed, with the bytes read so far put back
//! ([`rewind::Rewind`]), to the general path, which then serves the rest of the connection.

pub mod framing;
pub mod rewind;
pub mod upstream;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fleetgate_config::Protocol;
use fleetgate_plugins::PluginContext;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use crate::balancer::Outcome;
use crate::gateway::{CompiledConfig, Gateway};
use crate::metrics::UpstreamError;
use crate::proxy::{self, Downstream, ProxyBody, Routed, Target, BAD_RESPONSE, TIMED_OUT};
use crate::server::stopped;
use crate::telemetry::{ResponseRecord, Tally};
use framing::{ChunkedScanner, Framing};
use rewind::Rewind;
use upstream::{HeadError, UpstreamConn};
use wire::RequestHead;

/// How long a client connection may sit idle between requests (Kong's
/// `nginx_http_keepalive_timeout` default).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Request heads larger than this go to the general path (which allows larger ones).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
const READ_CHUNK: usize = 8 * 1024;
/// How long a closing connection's late input is drained (nginx's `lingering_timeout`).
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// What to do with the client connection after one exchange.
enum Next {
    KeepAlive,
    Close,
    /// The request (this raw head) is for the general path.
    Handoff(Bytes),
}

/// Serves requests on `io` until it closes, or until a request needs the general path: then
/// the connection comes back with every unserved byte put back in front.
pub async fn serve<I>(
    mut io: I,
    gateway: &Arc<Gateway>,
    downstream: &Downstream,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Rewind<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(READ_CHUNK);
    // Idle clients: one timer per connection, not one per request. Every half keep-alive
    // period it checks whether a request came since it last fired; a connection that saw
    // none for a whole period is closed (so after 30 to 60 s idle).
    let idle = tokio::time::sleep(KEEPALIVE_TIMEOUT / 2);
    tokio::pin!(idle);
    let mut served: u64 = 0;
    let mut served_at_tick = 0;
    // Registered once for the connection's life, not once per read.
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    loop {
        let head = loop {
            if !buf.is_empty() {
                match wire::parse_request(&mut buf) {
                    Ok(Some(head)) => break head,
                    Ok(None) if buf.len() < MAX_REQUEST_HEAD => {}
                    Ok(None) => return Some(Rewind::new(buf.freeze(), io)),
                    Err(raw) => return Some(Rewind::new(join(raw, buf), io)),
                }
            }
            wire::make_room(&mut buf, READ_CHUNK);
            let read = tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => read,
                () = &mut idle => {
                    if served == served_at_tick {
                        return None;
                    }
                    served_at_tick = served;
                    idle.as_mut().reset(Instant::now() + KEEPALIVE_TIMEOUT / 2);
                    continue;
                }
                () = &mut stop, if buf.is_empty() => return None,
            };
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        };
        served += 1;
        match exchange(&mut io, &mut buf, &mut out, gateway, downstream, head).await {
            Next::KeepAlive => {}
            Next::Close => {
                close_lingering(&mut io).await;
                return None;
            }
            Next::Handoff(raw) => return Some(Rewind::new(join(raw, buf), io)),
        }
    }
}

/// Closes the client connection the way nginx's `lingering_close` does: the response is
/// finished with a FIN, then whatever the client still sends (a pipelined request) is read
/// and dropped until it closes too, for at most [`LINGER_TIMEOUT`]. Closing with unread
/// input would make the kernel send a reset, which can destroy response bytes the client
/// has not read yet (fatal for a body that ends at the close).
async fn close_lingering<I: AsyncRead + AsyncWrite + Unpin>(io: &mut I) {
    if io.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = io.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = timeout(LINGER_TIMEOUT, drain).await;
}

fn join(raw: Bytes, rest: BytesMut) -> Bytes {
    if rest.is_empty() {
        return raw;
    }
    let mut all = BytesMut::with_capacity(raw.len() + rest.len());
    all.extend_from_slice(&raw);
    all.extend_from_slice(&rest);
    all.freeze()
}

/// One request: route, access phase, then forward or answer locally.
async fn exchange<I>(
    io: &mut I,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    gateway: &Arc<Gateway>,
    downstream: &Downstream,
    head: RequestHead,
) -> Next
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let start = std::time::Instant::now();
    let config = gateway.current();
    let mut tally = Tally::start(gateway, start, config.control_plane_id);
    let answer = Answer {
        gateway,
        start,
        head_request: head.method == Method::HEAD,
        close: head.close,
    };
    if let Some(expired_at) = gateway.license.expired_at() {
        let response = crate::license::expired_response(expired_at);
        return answer.local(io, out, tally, response).await;
    }
    // A header map costs allocations and a hash per header: it is built only when a
    // header-matching route or a plugin reads the headers. Without one the upstream head
    // is written from the bytes received (`proxy::upstream_request_headers_raw`).
    let mut headers = None;
    if config.router.uses_headers() || !config.plugins.is_empty() {
        let Some(map) = head.headers.to_map() else {
            tally.forget();
            return Next::Handoff(head.headers.raw);
        };
        headers = Some(map);
    }
    let no_headers = HeaderMap::new();
    let routed = match proxy::route(
        &config,
        downstream,
        &head.method,
        &head.uri,
        head.headers.get(b"host"),
        headers.as_ref().unwrap_or(&no_headers),
        &mut tally,
    ) {
        Ok(routed) => routed,
        Err(response) => return answer.local(io, out, tally, response).await,
    };
    if routed.service.protocol != Protocol::Http {
        tally.forget();
        return Next::Handoff(head.headers.raw);
    }
    let mut plugin_ctx = PluginContext::default();
    let mut edited_query = None;
    if let Some(map) = headers.as_mut() {
        match proxy::access(
            &config,
            &routed,
            downstream,
            &head.method,
            &head.uri,
            map,
            &mut tally,
        ) {
            Ok((ctx, query)) => (plugin_ctx, edited_query) = (ctx, Some(query)),
            Err(response) => return answer.local(io, out, tally, response).await,
        }
        proxy::upstream_request_headers(map, downstream, &routed.host, false);
    }
    let query = match &edited_query {
        Some(edited) => edited.as_deref(),
        None => head.uri.query(),
    };
    let forward = Forward {
        config: &config,
        routed: &routed,
        downstream,
        head: &head,
        headers: headers.as_ref(),
        query,
        plugin_ctx: &plugin_ctx,
    };
    forward.run(io, buf, out, answer, tally).await
}

/// Writes answers and counts them (metrics, telemetry).
struct Answer<'g> {
    gateway: &'g Arc<Gateway>,
    start: std::time::Instant,
    head_request: bool,
    close: bool,
}

impl Answer<'_> {
    /// A complete local answer (an error, a plugin's answer, a redirect).
    async fn local<I>(
        &self,
        io: &mut I,
        out: &mut Vec<u8>,
        tally: Tally,
        response: Response<ProxyBody>,
    ) -> Next
    where
        I: AsyncWrite + Unpin,
    {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let status = parts.status.as_u16();
        self.gateway.metrics.record(status, self.start.elapsed());
        let mut record = tally.respond(status);
        out.clear();
        wire::write_local_head(out, parts.status, &parts.headers, body.len(), self.close);
        if !self.head_request {
            out.extend_from_slice(&body);
            record.add_bytes_out(body.len() as u64);
        }
        if write_out(io, out).await.is_err() || self.close {
            return Next::Close;
        }
        Next::KeepAlive
    }

    async fn json_error<I>(
        &self,
        io: &mut I,
        out: &mut Vec<u8>,
        tally: Tally,
        (status, message): (StatusCode, &str),
    ) -> Next
    where
        I: AsyncWrite + Unpin,
    {
        let response = proxy::json_error(status, message);
        self.local(io, out, tally, response).await
    }
}

async fn write_out<I: AsyncWrite + Unpin>(io: &mut I, out: &[u8]) -> std::io::Result<()> {
    io.write_all(out).await?;
    io.flush().await
}

/// A request on its way upstream.
struct Forward<'a> {
    config: &'a CompiledConfig,
    routed: &'a Routed<'a>,
    downstream: &'a Downstream,
    head: &'a RequestHead,
    /// The edited request headers, when a route or plugin needed them as a map.
    headers: Option<&'a HeaderMap>,
    query: Option<&'a str>,
    plugin_ctx: &'a PluginContext,
}

impl Forward<'_> {
    /// Tries the service's targets (retries as the general path does: connect failures
    /// always, other failures for idempotent methods) and relays the first response.
    async fn run<I>(
        self,
        io: &mut I,
        buf: &mut BytesMut,
        out: &mut Vec<u8>,
        answer: Answer<'_>,
        mut tally: Tally,
    ) -> Next
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let gateway = answer.gateway;
        let service = self.routed.service;
        let idempotent = proxy::is_idempotent(&self.head.method);
        let attempts = 1 + usize::from(service.retries);
        let mut last_error = BAD_RESPONSE;
        let mut attempt = 0;
        // One extra try, on a fresh connection, when a pooled one turns out to be closed.
        let mut stale_retried = false;
        let mut fresh_only = false;
        while attempt < attempts {
            let Ok(target) = proxy::pick(service) else {
                gateway
                    .metrics
                    .upstream_error(UpstreamError::NoHealthyTarget);
                let error = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "failure to get a peer from the ring-balancer",
                );
                return answer.json_error(io, out, tally, error).await;
            };
            let (host, port, address) = target.endpoint();
            let pooled = if fresh_only {
                None
            } else {
                upstream::checkout(address)
            };
            fresh_only = false;
            let mut conn = match pooled {
                Some(conn) => conn,
                None => match upstream::connect(host, port, service.connect_timeout).await {
                    Ok(conn) => conn,
                    Err(error) => {
                        target.report(Outcome::TcpFailure);
                        gateway.metrics.upstream_error(UpstreamError::Connect);
                        tracing::debug!(target = %address, %error, "upstream connect failed");
                        last_error = BAD_RESPONSE;
                        attempt += 1;
                        continue;
                    }
                },
            };
            out.clear();
            let host = proxy::upstream_host(self.routed, &target);
            let (method, path) = (&self.head.method, &self.routed.upstream_path);
            match self.headers {
                Some(headers) => {
                    wire::write_request_head(out, method, path, self.query, host.as_ref(), headers)
                }
                None => wire::write_request_head_raw(out, method, path, self.query, |emit| {
                    proxy::upstream_request_headers_raw(
                        self.head.headers.iter(),
                        self.downstream,
                        &self.routed.host,
                        host.as_ref(),
                        emit,
                    )
                }),
            }
            // One clock read serves the telemetry wait and the read_timeout deadline.
            let sent_at = std::time::Instant::now();
            tally.upstream_sent_at(sent_at);
            // Usually the whole head fits the socket buffer at once: no timer needed.
            let written = match conn.stream.try_write(out) {
                Ok(n) if n == out.len() => Ok(Ok(())),
                Ok(n) => timeout(service.write_timeout, conn.stream.write_all(&out[n..])).await,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    timeout(service.write_timeout, conn.stream.write_all(out)).await
                }
                Err(e) => Ok(Err(e)),
            };
            let outcome = match written {
                Err(_) => {
                    tally.upstream_done();
                    target.report(Outcome::Timeout);
                    gateway.metrics.upstream_error(UpstreamError::Timeout);
                    return answer.json_error(io, out, tally, TIMED_OUT).await;
                }
                Ok(Err(source)) => Err(Some(HeadError::Closed {
                    answered: false,
                    source,
                })),
                Ok(Ok(())) => {
                    let read = async {
                        tokio::select! {
                            head = conn.read_head(&self.head.method) => Ok(head),
                            () = client_gone(io, buf) => Err(()),
                        }
                    };
                    let deadline = Instant::from_std(sent_at + service.read_timeout);
                    match tokio::time::timeout_at(deadline, read).await {
                        Ok(Ok(head)) => head.map_err(Some),
                        // The client hung up: dropping the tally records a 499.
                        Ok(Err(())) => return Next::Close,
                        Err(_) => Err(None),
                    }
                }
            };
            let answered_at = std::time::Instant::now();
            tally.upstream_done_at(answered_at);
            match outcome {
                Ok(head) => {
                    let relay = Relay {
                        forward: &self,
                        target: &target,
                        address,
                        answered_at,
                    };
                    return relay.run(io, out, conn, head, answer, tally).await;
                }
                Err(None) => {
                    target.report(Outcome::Timeout);
                    gateway.metrics.upstream_error(UpstreamError::Timeout);
                    last_error = TIMED_OUT;
                    if !idempotent {
                        break;
                    }
                }
                Err(Some(HeadError::Closed {
                    answered: false, ..
                })) if conn.reused && idempotent && !stale_retried => {
                    stale_retried = true;
                    fresh_only = true;
                    continue;
                }
                Err(Some(error)) => {
                    gateway.metrics.upstream_error(UpstreamError::Protocol);
                    tracing::debug!(target = %address, %error, "upstream exchange failed");
                    last_error = BAD_RESPONSE;
                    if !idempotent {
                        break;
                    }
                }
            }
            attempt += 1;
        }
        answer.json_error(io, out, tally, last_error).await
    }
}

/// Resolves when the client closes its connection (bytes it sends meanwhile — a pipelined
/// request — are kept for later), so a request whose client left is not waited for.
async fn client_gone<I: AsyncRead + Unpin>(io: &mut I, buf: &mut BytesMut) {
    loop {
        if buf.len() >= MAX_REQUEST_HEAD {
            // Enough is queued; stop reading (the client is clearly still there).
            std::future::pending::<()>().await;
        }
        wire::make_room(buf, READ_CHUNK);
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Relays one upstream response downstream.
struct Relay<'a> {
    forward: &'a Forward<'a>,
    target: &'a Target<'a>,
    address: &'a str,
    /// When the response head arrived.
    answered_at: std::time::Instant,
}

impl Relay<'_> {
    async fn run<I>(
        self,
        io: &mut I,
        out: &mut Vec<u8>,
        mut conn: UpstreamConn,
        head: upstream::ResponseHead,
        answer: Answer<'_>,
        tally: Tally,
    ) -> Next
    where
        I: AsyncWrite + Unpin,
    {
        let forward = self.forward;
        let gateway = answer.gateway;
        let status = head.status;
        self.target.report(Outcome::Status(status.as_u16()));
        let Some(framing) = head.framing else {
            gateway.metrics.upstream_error(UpstreamError::Protocol);
            return answer.json_error(io, out, tally, BAD_RESPONSE).await;
        };
        let close = answer.close || framing == Framing::UntilClose;
        let chunked = framing == Framing::Chunked;
        out.clear();
        if forward.plugin_ctx.has_response_phase() {
            let Some(mut headers) = conn.head.to_map() else {
                gateway.metrics.upstream_error(UpstreamError::Protocol);
                return answer.json_error(io, out, tally, BAD_RESPONSE).await;
            };
            if chunked {
                headers.remove(http::header::CONTENT_LENGTH);
            }
            proxy::downstream_response_headers(&mut headers, forward.config, forward.plugin_ctx);
            wire::write_response_head(out, status, &headers, chunked, close);
        } else {
            let headers = conn
                .head
                .iter()
                .filter(|(name, _)| !(chunked && name.eq_ignore_ascii_case(b"content-length")));
            wire::write_relayed_head(out, status, headers, head.has_date, chunked, close);
        }
        let latency = self.answered_at.saturating_duration_since(answer.start);
        gateway.metrics.record(status.as_u16(), latency);
        let mut record = tally.respond(status.as_u16());
        let read_timeout = forward.routed.service.read_timeout;
        let relayed = relay_body(io, out, &mut conn, framing, read_timeout, &mut record).await;
        drop(record);
        match relayed {
            Ok(()) => {
                if head.keep_alive && framing != Framing::UntilClose {
                    upstream::checkin(self.address, conn);
                }
                if close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
            Err(error) => {
                tracing::debug!(target = %self.address, %error, "relaying the response body failed");
                Next::Close
            }
        }
    }
}

/// Why a body could not be relayed to the end; the client connection is closed (its
/// response cannot be completed) and the upstream connection is dropped.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("the upstream sent nothing for {0:?} (read_timeout)")]
    ReadTimeout(Duration),
    #[error("the upstream closed the connection mid-body")]
    UpstreamClosed,
    #[error(transparent)]
    Chunked(#[from] framing::ChunkedError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Sends `out` (the response head) with the body bytes already read, then the rest of the
/// body as it arrives; `conn.buf` is left holding only bytes past the body.
async fn relay_body<I>(
    io: &mut I,
    out: &[u8],
    conn: &mut UpstreamConn,
    framing: Framing,
    read_timeout: Duration,
    record: &mut ResponseRecord,
) -> Result<(), RelayError>
where
    I: AsyncWrite + Unpin,
{
    let mut remaining = match framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => u64::MAX,
    };
    let mut chunked = ChunkedScanner::default();
    let mut first = true;
    loop {
        let available = conn.buf.len();
        let (take, data, done) = match framing {
            Framing::Empty => (0, 0, true),
            Framing::Length(_) => {
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(available);
                (take, take as u64, remaining == take as u64)
            }
            Framing::Chunked => {
                let before = chunked.data_bytes;
                let end = chunked.feed(&conn.buf)?;
                (
                    end.unwrap_or(available),
                    chunked.data_bytes - before,
                    end.is_some(),
                )
            }
            Framing::UntilClose => (available, available as u64, false),
        };
        let bytes = conn.buf.split_to(take);
        if first {
            write_head_and_body(io, out, &bytes).await?;
            first = false;
        } else if !bytes.is_empty() {
            io.write_all(&bytes).await?;
        }
        record.add_bytes_out(data);
        remaining = remaining.saturating_sub(take as u64);
        if done {
            break;
        }
        io.flush().await?;
        match timeout(read_timeout, conn.fill()).await {
            Err(_) => return Err(RelayError::ReadTimeout(read_timeout)),
            Ok(Ok(0)) if framing == Framing::UntilClose => break,
            Ok(Ok(0)) => return Err(RelayError::UpstreamClosed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    io.flush().await?;
    Ok(())
}

/// Writes a head and the body bytes that came with it in one `writev` where the stream
/// allows (no copy of the body into the head's buffer).
async fn write_head_and_body<I>(io: &mut I, head: &[u8], body: &[u8]) -> std::io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    if body.is_empty() {
        return io.write_all(head).await;
    }
    let slices = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
    let written = io.write_vectored(&slices).await?;
    if written < head.len() {
        io.write_all(&head[written..]).await?;
        io.write_all(body).await
    } else {
        io.write_all(&body[written - head.len()..]).await
    }
}

/// Periodically closes this worker's long-idle upstream connections; runs on the worker's
/// event loop until `shutdown` flips.
pub async fn sweep_pool(mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(upstream::IDLE_TIMEOUT / 4);
    loop {
        tokio::select! {
            _ = tick.tick() => upstream::sweep(),
            _ = stopped(&mut shutdown) => return,
        }
    }
}
