//! Listeners: the HTTP and HTTPS proxy (HTTP/1.1 and HTTP/2, upgrades allowed) and the status
//! port. Each connection is its own task; shutdown stops accepting and lets connections finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::fastpath::{self, rewind::Rewind};
use crate::gateway::Gateway;
use crate::proxy::{self, Downstream};
use crate::status::{self, NodeInfo};

/// Serves the proxy on `listener` (TLS when `tls` is set) until `shutdown` flips.
pub async fn serve_proxy(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut stop = shutdown.clone();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            gateway.metrics.connection(1);
            match tls {
                None => {
                    let downstream = Downstream::new(remote, local_port, false, None);
                    serve_http1_first(stream, gateway.clone(), downstream, shutdown).await;
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let sni = stream.get_ref().1.server_name().map(str::to_string);
                        let downstream = Downstream::new(remote, local_port, true, sni);
                        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            let stream = Rewind::new(Bytes::new(), stream);
                            serve_connection(stream, gateway.clone(), downstream, shutdown).await;
                        } else {
                            serve_http1_first(stream, gateway.clone(), downstream, shutdown).await;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, %remote, "TLS handshake failed"),
                },
            }
            gateway.metrics.connection(-1);
        });
    }
}

/// Serves a connection on the HTTP/1.1 fast path; what it hands back (HTTP/2, bodies,
/// upgrades, https upstreams, ...) goes on to the general path.
async fn serve_http1_first<I>(
    io: I,
    gateway: Arc<Gateway>,
    downstream: Downstream,
    shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut stop = shutdown.clone();
    if let Some(rest) = fastpath::serve(io, &gateway, &downstream, &mut stop).await {
        serve_connection(rest, gateway, downstream, shutdown).await;
    }
}

async fn serve_connection<I>(
    io: Rewind<I>,
    gateway: Arc<Gateway>,
    downstream: Downstream,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let gateway = gateway.clone();
        let downstream = downstream.clone();
        async move { Ok::<_, Infallible>(proxy::handle(gateway, downstream, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Serves `/status`, `/ready` and `/metrics`.
pub async fn serve_status(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    node: Arc<NodeInfo>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            _ = stopped(&mut shutdown) => break,
        };
        let gateway = gateway.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = status::handle(&gateway, &node, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Resolves once shutdown is signalled (the watch guard is dropped before returning, so the
/// future stays `Send`).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Binds `count` listeners on one address with SO_REUSEPORT, so each proxy worker accepts on
/// its own socket and the kernel spreads connections (port 0 picks one port for all).
pub async fn bind_shared(
    addr: SocketAddr,
    count: usize,
    what: &str,
) -> anyhow::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    use anyhow::Context;
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = if bound.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .with_context(|| format!("create a socket for {what}"))?;
        socket
            .set_reuseaddr(true)
            .with_context(|| format!("set SO_REUSEADDR on {what}"))?;
        #[cfg(unix)]
        socket
            .set_reuseport(true)
            .with_context(|| format!("set SO_REUSEPORT on {what}"))?;
        socket
            .bind(bound)
            .with_context(|| format!("bind {what} on {bound}"))?;
        let listener = socket
            .listen(1024)
            .with_context(|| format!("listen on {what} ({bound})"))?;
        bound = listener.local_addr().context("read the bound address")?;
        listeners.push(
            listener
                .into_std()
                .context("hand the listener to a worker")?,
        );
    }
    Ok((listeners, bound))
}

/// Starts proxy worker `index`: an OS thread with its own single-threaded event loop serving
/// its listeners (HTTP and, when given, HTTPS), like an nginx worker. Requests never hop
/// threads, which roughly doubles throughput per core over a work-stealing runtime.
pub fn spawn_worker(
    index: usize,
    listener: std::net::TcpListener,
    tls: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
    gateway: Arc<Gateway>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    use anyhow::Context;
    std::thread::Builder::new()
        .name(format!("fleetgate-proxy-{index}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, worker = index, "start a proxy worker");
                    return;
                }
            };
            runtime.block_on(async move {
                tokio::spawn(fastpath::sweep_pool(shutdown.clone()));
                let mut loops = Vec::new();
                match TcpListener::from_std(listener) {
                    Ok(l) => loops.push(tokio::spawn(serve_proxy(
                        l,
                        None,
                        gateway.clone(),
                        shutdown.clone(),
                    ))),
                    Err(e) => {
                        tracing::error!(error = %e, worker = index, "adopt the proxy listener")
                    }
                }
                if let Some((tls_listener, config)) = tls {
                    match TcpListener::from_std(tls_listener) {
                        Ok(l) => loops.push(tokio::spawn(serve_proxy(
                            l,
                            Some(TlsAcceptor::from(config)),
                            gateway.clone(),
                            shutdown.clone(),
                        ))),
                        Err(e) => {
                            tracing::error!(error = %e, worker = index, "adopt the TLS listener")
                        }
                    }
                }
                for accept_loop in loops {
                    let _ = accept_loop.await;
                }
                // Accepting has stopped; give open connections time to finish their requests.
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                while gateway.metrics.active_connections() > 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            });
        })
        .context("spawn a proxy worker thread")
}

/// Binds an address, naming it on failure.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {what} on {addr}"))
}
