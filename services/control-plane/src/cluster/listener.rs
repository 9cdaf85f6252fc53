//! The cluster listener: TLS 1.3 with an optional client certificate, then a WebSocket
//! upgrade: `/v1/outlet` opens one [`session`](super::session) per data-plane node, and
//! `/v1/enrol` lets a node with a join token obtain its certificate ([`enrol`](super::enrol)).
//!
//! Which control plane a node belongs to is decided right after the TLS handshake by
//! [`identify`] (a database lookup) and before the upgrade is answered, so a missing, unknown,
//! expired or deleted certificate gets a 401/403 on `/v1/outlet` with the reason instead of a
//! session. `/v1/enrol` needs no certificate: the join token is the credential.
//! `GET /v1/artifacts/fleetgate-dp` is plain HTTP (no upgrade, no credential): the node binary
//! for cloud nodes booting on a stock image ([`artifacts`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetgate_protocol::{OutletQuery, ENROL_PATH, MAX_FRAME_BYTES, OUTLET_PATH};
use http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::hub::ClusterHub;
use super::identity::{identify, IdentifyError};
use super::nodes::stopped;
use super::session::{self, SessionContext, SessionIdentity};
use super::{artifacts, enrol};
use crate::store::now_unix;

/// A TLS handshake plus upgrade request must finish within this (Kong's cluster timeout).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the cluster listener.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Address data planes dial.
    pub listen: SocketAddr,
    /// Heartbeat interval; a node silent for 1.5 of these is dropped.
    pub ping_interval: Duration,
    /// Nodes unseen for longer than this are removed from `/nodes`.
    pub node_purge_after: Duration,
    /// The `fleetgate-dp` binary served at `/v1/artifacts/fleetgate-dp`; `None`: the one next
    /// to the running executable.
    pub dp_artifact: Option<std::path::PathBuf>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8005)),
            ping_interval: Duration::from_secs(30),
            node_purge_after: Duration::from_secs(14 * 24 * 3600),
            dp_artifact: None,
        }
    }
}

/// Parses `30s`, `5m`, `2h`, `14d` or `250ms` (a bare number is seconds).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let input = input.trim();
    let split = input
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(input.len());
    let (number, unit) = input.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{input:?} is not a duration like 30s, 5m, 2h or 14d"))?;
    let secs = |k: u64| {
        n.checked_mul(k)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{input:?} is too long"))
    };
    let duration = match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => Err(format!(
            "unknown unit {other:?} in {input:?}; use ms, s, m, h or d"
        )),
    }?;
    if duration.is_zero() {
        return Err(format!("{input:?} must be longer than zero"));
    }
    Ok(duration)
}

/// The HTTP status an identification failure is answered with (401, 403, or 503 when the
/// check itself failed).
fn refusal_status(err: &IdentifyError) -> StatusCode {
    StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::UNAUTHORIZED)
}

/// A problem+json answer to a refused upgrade.
fn problem(status: StatusCode, detail: &str) -> ErrorResponse {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = ErrorResponse::new(Some(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(crate::error::PROBLEM_JSON),
    );
    response
}

/// Binds the cluster listener and serves it until `stop` turns true; sessions end with it.
pub async fn start(
    hub: Arc<ClusterHub>,
    tls: Arc<rustls::ServerConfig>,
    settings: ClusterSettings,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("bind the cluster listener on {}", settings.listen))?;
    let addr = listener
        .local_addr()
        .context("read the bound cluster address")?;
    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let acceptor = acceptor.clone();
                        let hub = hub.clone();
                        let settings = settings.clone();
                        connections.spawn(async move {
                            connection(tcp, peer, acceptor, hub, settings).await;
                        });
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "could not accept a cluster connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
    });
    Ok((addr, task))
}

/// Which endpoint an upgrade was accepted for.
enum Upgrade {
    /// A node's session, identified by its client certificate.
    Outlet(OutletQuery),
    /// An enrolment with a join token.
    Enrol,
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    hub: Arc<ClusterHub>,
    settings: ClusterSettings,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::warn!(peer = %peer, reason = %err, "data plane refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(peer = %peer, "data plane refused: TLS handshake timed out");
            return;
        }
    };
    let (_, conn) = tls.get_ref();
    let sni = conn.server_name().map(str::to_owned);
    let leaf = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.as_ref().to_vec());
    let mut tls = tls;
    let Ok(Some(head)) =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, artifacts::read_head(&mut tls)).await
    else {
        tracing::debug!(peer = %peer, "no request head within 5 s");
        return;
    };
    if let Some((method, path)) = artifacts::request_line(&head) {
        if path.starts_with(artifacts::ARTIFACTS_PREFIX) {
            tracing::info!(peer = %peer, method, path, "artifact request");
            artifacts::serve(&mut tls, method, path, &hub.dp_artifact()).await;
            return;
        }
    }
    // Everything else is a WebSocket upgrade, which reads the head again.
    let tls = artifacts::Rewound::new(head, tls);
    let identity = match leaf {
        None => Err((
            StatusCode::UNAUTHORIZED,
            "no client certificate was presented".to_string(),
        )),
        Some(der) => identify(hub.store(), &der, sni.as_deref(), now_unix())
            .await
            .map_err(|err| (refusal_status(&err), err.to_string())),
    };

    let mut accepted: Option<Upgrade> = None;
    // The result type is fixed by tungstenite's `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match request.uri().path() {
            OUTLET_PATH => {}
            ENROL_PATH => {
                accepted = Some(Upgrade::Enrol);
                return Ok(response);
            }
            other => {
                return Err(problem(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "no cluster endpoint at {other}; data planes dial {OUTLET_PATH} \
                         ({ENROL_PATH} to enrol with a join token)"
                    ),
                ))
            }
        }
        let query = OutletQuery::parse(request.uri().query().unwrap_or(""))
            .map_err(|err| problem(StatusCode::BAD_REQUEST, &err.to_string()))?;
        if let Err((status, reason)) = &identity {
            tracing::warn!(node_id = %query.node_id, peer = %peer, reason = %reason, "data plane refused");
            return Err(problem(*status, reason));
        }
        accepted = Some(Upgrade::Outlet(query));
        Ok(response)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(tls, callback, Some(config));
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(err)) => {
            tracing::debug!(peer = %peer, error = %err, "cluster upgrade failed");
            return;
        }
        Err(_) => {
            tracing::warn!(peer = %peer, "data plane refused: no upgrade request within 5 s");
            return;
        }
    };
    let query = match accepted {
        Some(Upgrade::Outlet(query)) => query,
        Some(Upgrade::Enrol) => {
            enrol::serve(ws, hub.store(), peer).await;
            return;
        }
        None => return,
    };
    let Ok(identity) = identity else {
        return;
    };
    let context = SessionContext {
        hub,
        identity: SessionIdentity {
            organization_id: identity.organization_id,
            control_plane_id: identity.control_plane_id,
            certificate_id: identity.certificate_id,
            cert_expiry: Some(identity.cert_expiry),
        },
        query,
        ping_interval: settings.ping_interval,
    };
    session::run(ws, context).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in ["", "s", "5x", "0s", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
