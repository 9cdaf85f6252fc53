//! One session with the control plane: dial, `hello`, then messages until the link ends.

use std::sync::Arc;
use std::time::Duration;

use fleetgate_config::GatewayConfig;
use fleetgate_protocol::{
    decode_binary, decode_text, encode_text, CpMessage, DpMessage, OutletQuery, PluginInfo,
    MAX_FRAME_BYTES,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::{tls, Link};
use crate::cache::{self, CachedConfig};
use crate::fallback::ExportedConfig;
use crate::gateway::ConfigSource;
use crate::license::now_unix;
use crate::telemetry::SentBatch;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// How a session ended (other than by shutdown).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Dialling failed: TCP, TLS or the WebSocket upgrade.
    #[error("{0:#}")]
    Connect(anyhow::Error),
    /// The control plane refused this node (`refused {reason}`).
    #[error("refused by the control plane: {0}")]
    Refused(String),
    /// An open session ended: closed by the peer, heartbeat timeout, I/O error.
    #[error("{0}")]
    Lost(String),
}

/// Runs one session on `endpoint`; `Ok` only when `stop` was signalled.
pub(super) async fn run(
    link: &Link,
    endpoint: &str,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let connect = connect(link, endpoint);
    let mut ws = tokio::select! {
        ws = tokio::time::timeout(link.settings.connect_timeout, connect) => match ws {
            Ok(ws) => ws.map_err(SessionError::Connect)?,
            Err(_) => {
                return Err(SessionError::Connect(anyhow::anyhow!(
                    "connect to {endpoint}: no answer within {:?}",
                    link.settings.connect_timeout
                )))
            }
        },
        () = super::stopped(stop) => return Ok(()),
    };
    tracing::info!(%endpoint, "connected to the control plane");
    link.state.send_modify(|s| {
        s.connected = true;
        s.last_error = None;
        s.sessions += 1;
    });
    let result = converse(link, &mut ws, stop).await;
    // Best effort: tell the peer we are going; it may already be gone.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    link.state.send_modify(|s| s.connected = false);
    result
}

/// TCP, TLS 1.3 with the client certificate, WebSocket upgrade on `/v1/outlet`.
async fn connect(link: &Link, endpoint: &str) -> anyhow::Result<Ws> {
    let url = OutletQuery {
        node_id: link.node.node_id,
        node_hostname: link.node.hostname.clone(),
        node_version: link.node.version.to_string(),
    }
    .to_url(endpoint);
    dial(
        &link.settings.tls,
        endpoint,
        link.settings.server_name.as_deref(),
        url,
        MAX_FRAME_BYTES,
    )
    .await
}

/// TCP to `endpoint`, TLS 1.3 with `tls` (server name from the setting or the endpoint's
/// host), then the WebSocket upgrade at `url` with frames of at most `max_frame` bytes. A
/// refused upgrade shows the control plane's answer (unknown certificate, wrong control
/// plane, …).
pub(super) async fn dial(
    tls: &Arc<rustls::ClientConfig>,
    endpoint: &str,
    server_name: Option<&str>,
    url: String,
    max_frame: usize,
) -> anyhow::Result<Ws> {
    use anyhow::Context;
    let server_name = tls::server_name(endpoint, server_name)?;
    let tcp = TcpStream::connect(endpoint)
        .await
        .with_context(|| format!("connect to {endpoint}"))?;
    let _ = tcp.set_nodelay(true);
    let stream = TlsConnector::from(tls.clone())
        .connect(server_name.clone(), tcp)
        .await
        .with_context(|| {
            format!(
                "TLS handshake with {endpoint} (server name {})",
                server_name.to_str()
            )
        })?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame));
    match tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let body: String = body.trim().chars().take(512).collect();
            anyhow::bail!(
                "WebSocket upgrade at {endpoint} answered HTTP {}: {body}",
                response.status()
            )
        }
        Err(e) => Err(e).with_context(|| format!("WebSocket upgrade at {endpoint}")),
    }
}

async fn send(ws: &mut Ws, msg: &DpMessage) -> Result<(), SessionError> {
    let text = encode_text(msg)
        .map_err(|e| SessionError::Lost(format!("encode {}: {e}", msg_type(msg))))?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| SessionError::Lost(format!("send {}: {e}", msg_type(msg))))
}

fn msg_type(msg: &DpMessage) -> &'static str {
    use fleetgate_protocol::Message as _;
    msg.message_type()
}

/// The hash of the control plane config this node runs: `""` while it runs a local one
/// (declarative, fallback, empty) — even one with the same content — so the control plane
/// pushes its config, which then replaces the local one, becomes the cache and is exported.
fn running_hash(link: &Link) -> String {
    let current = link.gateway.current();
    match current.source {
        ConfigSource::Cp | ConfigSource::Cache => current.hash.to_string(),
        ConfigSource::Declarative | ConfigSource::Fallback | ConfigSource::Empty => String::new(),
    }
}

/// A heartbeat: the running hash and how many telemetry records wait on this node.
fn heartbeat(link: &Link) -> DpMessage {
    let telemetry = &link.gateway.telemetry;
    DpMessage::Ping {
        config_hash: running_hash(link),
        telemetry_buffer_fill: telemetry
            .enabled()
            .then(|| telemetry.status().buffer_fill as u64),
    }
}

/// The session after the upgrade: `hello`, then frames, pings and the silence deadline.
async fn converse(
    link: &Link,
    ws: &mut Ws,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let plugins = fleetgate_config::plugins::PLUGIN_NAMES
        .iter()
        .map(|name| PluginInfo {
            name: (*name).to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .collect();
    send(
        ws,
        &DpMessage::Hello {
            node_id: link.node.node_id,
            hostname: link.node.hostname.clone(),
            version: link.node.version.to_string(),
            config_hash: running_hash(link),
            plugins,
            labels: link.settings.labels.clone(),
        },
    )
    .await?;
    // Batches an earlier session sent but never saw acknowledged go first, in seq order,
    // then whatever waited while disconnected.
    let telemetry = link.gateway.telemetry.clone();
    for batch in telemetry.unacked() {
        send_batch(ws, &batch).await?;
    }
    send_new_batches(link, ws).await?;
    let flush_every = telemetry.settings().flush_interval;
    let mut flush = tokio::time::interval_at(Instant::now() + flush_every, flush_every);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let telemetry_on = telemetry.enabled();
    let interval = link.settings.ping_interval;
    let silence = interval.mul_f64(1.5);
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deadline = Instant::now() + silence;
    loop {
        let frame = tokio::select! {
            () = super::stopped(stop) => return Ok(()),
            _ = ping.tick() => {
                send(ws, &heartbeat(link)).await?;
                continue;
            }
            _ = flush.tick(), if telemetry_on => {
                send_new_batches(link, ws).await?;
                continue;
            }
            () = telemetry.batch_ready(), if telemetry_on => {
                send_new_batches(link, ws).await?;
                continue;
            }
            () = tokio::time::sleep_until(deadline) => {
                return Err(SessionError::Lost(format!(
                    "no frame from the control plane within {silence:?} (1.5 x cluster_ping_interval)"
                )));
            }
            frame = ws.next() => frame,
        };
        let message = match frame {
            None => {
                return Err(SessionError::Lost(
                    "the control plane closed the connection".into(),
                ))
            }
            Some(Err(e)) => {
                return Err(SessionError::Lost(format!(
                    "read from the control plane: {e}"
                )))
            }
            Some(Ok(message)) => message,
        };
        deadline = Instant::now() + silence;
        let decoded = match message {
            Message::Text(text) => decode_text::<CpMessage>(text.as_str()),
            Message::Binary(bytes) => decode_binary(&bytes),
            Message::Close(frame) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                return Err(SessionError::Lost(format!(
                    "the control plane closed the connection{}",
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                )));
            }
            // WebSocket pings are answered by tungstenite; they still count as life.
            _ => continue,
        };
        let message = match decoded {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a frame from the control plane that does not decode");
                continue;
            }
        };
        handle(link, ws, message).await?;
        // Applying a large config can take a while; the silence clock restarts after it.
        deadline = Instant::now() + silence;
    }
}

async fn handle(link: &Link, ws: &mut Ws, message: CpMessage) -> Result<(), SessionError> {
    match message {
        CpMessage::Reconfigure {
            version,
            config_hash,
            config,
            control_plane_id,
        } => {
            let gateway = link.gateway.clone();
            let prefix = link.prefix.clone();
            let hash = config_hash.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let pushed = Pushed {
                    version,
                    config_hash: &hash,
                    control_plane_id,
                };
                apply_reconfigure(&gateway, &prefix, pushed, config)
            })
            .await
            .unwrap_or_else(|e| Err(vec![format!("applying the config panicked: {e}")]));
            match outcome {
                Ok(applied) => {
                    if let Some(applied) = applied {
                        link.applied.send_replace(Some(Arc::new(applied)));
                    }
                    link.state
                        .send_modify(|s| s.applied_hash = Some(config_hash.clone()));
                    send(ws, &DpMessage::Applied { config_hash }).await?;
                    send(ws, &heartbeat(link)).await?;
                }
                Err(errors) => {
                    tracing::warn!(%config_hash, version, errors = %errors.join("; "), "rejected a config from the control plane; the running config stays");
                    send(
                        ws,
                        &DpMessage::Rejected {
                            config_hash,
                            errors,
                        },
                    )
                    .await?;
                }
            }
        }
        CpMessage::License { signed_blob } => install_license(link, signed_blob).await,
        CpMessage::Pong { .. } => {
            link.state
                .send_modify(|s| s.last_ping_unix = Some(now_unix()));
        }
        CpMessage::Refused { reason } => return Err(SessionError::Refused(reason)),
        CpMessage::Error { message } => {
            tracing::warn!(%message, "the control plane reported a problem with something this node sent");
        }
        CpMessage::Ack { seq } => {
            if !link.gateway.telemetry.ack(seq) {
                tracing::debug!(
                    seq,
                    "ack for a telemetry batch that is not pending (already acked or dropped)"
                );
            }
        }
    }
    Ok(())
}

/// Sends one telemetry batch as a binary frame.
async fn send_batch(ws: &mut Ws, batch: &SentBatch) -> Result<(), SessionError> {
    ws.send(Message::binary(batch.frame.clone()))
        .await
        .map_err(|e| SessionError::Lost(format!("send telemetry batch {}: {e}", batch.seq)))
}

/// Forms batches of everything recorded so far and sends them; they stay unacked (and are
/// re-sent by the next session) until the control plane acks them.
async fn send_new_batches(link: &Link, ws: &mut Ws) -> Result<(), SessionError> {
    for batch in link.gateway.telemetry.form_batches(link.node.node_id) {
        send_batch(ws, &batch).await?;
    }
    Ok(())
}

/// What a `reconfigure` says besides the config itself.
struct Pushed<'a> {
    version: i64,
    config_hash: &'a str,
    control_plane_id: Option<uuid::Uuid>,
}

/// Checks, applies and caches one pushed config; gives the config for the fallback exporter,
/// or `None` when the node already ran it. The running config stays on any error.
fn apply_reconfigure(
    gateway: &Arc<crate::Gateway>,
    prefix: &std::path::Path,
    pushed: Pushed<'_>,
    config: serde_json::Value,
) -> Result<Option<ExportedConfig>, Vec<String>> {
    let Pushed {
        version,
        config_hash,
        control_plane_id,
    } = pushed;
    if let Some(id) = control_plane_id {
        // Remembered beside the cache: after a restart the CP skips this reconfigure (same
        // hash), and records must still name their control plane.
        if let Err(e) = crate::telemetry::store_control_plane_id(prefix, id) {
            tracing::warn!(error = %format!("{e:#}"), "could not remember the control plane id");
        }
    }
    let current = gateway.current();
    if current.hash.as_str() == config_hash
        && matches!(current.source, ConfigSource::Cp | ConfigSource::Cache)
    {
        // Already running it (e.g. from the cache after a restart): nothing to swap.
        return Ok(None);
    }
    drop(current);
    let config: GatewayConfig =
        serde_json::from_value(config).map_err(|e| vec![format!("config: does not parse: {e}")])?;
    config.validate().map_err(crate::gateway::field_messages)?;
    let (canonical_json, hash) = config.canonical_json_and_hash();
    if hash.as_str() != config_hash {
        return Err(vec![format!(
            "config_hash: the config hashes to {hash}, not {config_hash}"
        )]);
    }
    gateway
        .apply_from_control_plane(config, ConfigSource::Cp, Some(version), control_plane_id)
        .map_err(|e| vec![e.to_string()])?;
    let cached = CachedConfig {
        version,
        hash: hash.to_string(),
        canonical_json,
    };
    // The config is live either way; a failed cache write only costs the restart path.
    if let Err(e) = cache::write(prefix, &cached) {
        tracing::warn!(error = %format!("{e:#}"), "could not write the config cache");
    }
    Ok(Some(ExportedConfig {
        control_plane_id,
        version,
        hash: cached.hash,
        canonical_json: cached.canonical_json,
    }))
}

async fn install_license(link: &Link, blob: String) {
    let claims = match fleetgate_protocol::verify_license(&blob) {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a license from the control plane that does not verify");
            return;
        }
    };
    let prefix = link.prefix.clone();
    let written = tokio::task::spawn_blocking(move || cache::write_license(&prefix, &blob)).await;
    if let Ok(Err(e)) = written {
        tracing::warn!(error = %format!("{e:#}"), "could not store the license; it applies until restart");
    }
    link.gateway.license.set(claims);
}
