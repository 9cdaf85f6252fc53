//! One data-plane session, from `hello` to close (docs/clustering.md, "Session").

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use fleetgate_protocol::{
    compatibility, Compatibility, CpMessage, DpMessage, OutletQuery, ProtocolError, TelemetryBatch,
    Version,
};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

use super::hub::{ClusterHub, PushFrame, SessionCommand};
use crate::store::{NodeHeartbeat, NodeHello, NodeRowCache};
use crate::telemetry::frame::{decode_binary_frame, NodeFrame};
use crate::telemetry::ingest::{ingest_telemetry_batch, BatchOrigin, IngestOutcome};

/// Most errors of one `rejected` message kept, and the longest one: enough to diagnose, and a
/// broken node cannot fill the database.
const MAX_REJECT_ERRORS: usize = 50;
const MAX_REJECT_ERROR_LEN: usize = 1000;
/// Largest decompressed binary frame a node may send: a full telemetry batch (5,000 records)
/// is about 2.5 MB of JSON, so this leaves ample room while keeping a gzip bomb from costing
/// the protocol's 256 MB default per frame.
const MAX_TELEMETRY_DECOMPRESSED_BYTES: usize = 32 * 1024 * 1024;

/// Who the connected node is, as decided from its client certificate.
#[derive(Debug, Clone, Copy)]
pub struct SessionIdentity {
    /// Organisation of the control plane.
    pub organization_id: Uuid,
    /// The control plane the certificate belongs to.
    pub control_plane_id: Uuid,
    /// The dp-client-certificate that identified the node.
    pub certificate_id: Uuid,
    /// The client certificate's notAfter, Unix seconds.
    pub cert_expiry: Option<i64>,
}

/// Everything a session needs.
#[derive(Debug, Clone)]
pub struct SessionContext {
    /// The hub.
    pub hub: Arc<ClusterHub>,
    /// The node's identity.
    pub identity: SessionIdentity,
    /// The outlet query of the upgrade request.
    pub query: OutletQuery,
    /// Heartbeat interval; a node silent for 1.5 intervals is dropped.
    pub ping_interval: Duration,
}

type Sink<S> = SplitSink<WebSocketStream<S>, Message>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn send_text<S>(sink: &mut Sink<S>, message: &CpMessage) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let text = fleetgate_protocol::encode_text(message).context("encode a message")?;
    sink.send(Message::text(text)).await.with_context(|| {
        format!(
            "send {}",
            fleetgate_protocol::Message::message_type(message)
        )
    })
}

async fn close<S>(sink: &mut Sink<S>, code: CloseCode, reason: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The close reason of a WebSocket frame is limited to 123 bytes.
    let mut reason = reason.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
    let _ = sink.close().await;
}

/// Runs the session until the node leaves, falls silent, or the hub closes it.
pub async fn run<S>(ws: WebSocketStream<S>, ctx: SessionContext)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let node_id = ctx.query.node_id;
    let cp = ctx.identity.control_plane_id;
    match serve(ws, &ctx).await {
        Ok(Ended::Served) => {
            ctx.hub
                .heartbeats()
                .node_gone(ctx.hub.store(), cp, node_id)
                .await;
        }
        Ok(Ended::Refused) => {}
        Err(err) => {
            tracing::info!(node_id = %node_id, control_plane = %cp, error = format!("{err:#}"), "data-plane session ended");
            ctx.hub
                .heartbeats()
                .node_gone(ctx.hub.store(), cp, node_id)
                .await;
        }
    }
}

enum Ended {
    /// The node was served (its row says connected until now).
    Served,
    /// The node was refused before being served, or a newer session of it took over: either
    /// way this session must not mark the node disconnected.
    Refused,
}

/// Per-session knowledge of what the node holds.
struct NodeView {
    version: Version,
    /// Hash the node last reported running.
    hash: String,
    /// Hash the node last rejected: never sent to it again.
    rejected: Option<String>,
    /// The node's recent analytics rows, so ingest does not read them back every batch.
    analytics_rows: NodeRowCache,
}

impl NodeView {
    fn wants(&self, frame: &PushFrame) -> bool {
        frame.hash != self.hash && self.rejected.as_deref() != Some(frame.hash.as_str())
    }
}

async fn serve<S>(ws: WebSocketStream<S>, ctx: &SessionContext) -> anyhow::Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hub = &ctx.hub;
    let store = hub.store();
    let id = ctx.identity;
    let node_id = ctx.query.node_id;
    let silence = ctx.ping_interval.saturating_mul(3) / 2;
    let (mut sink, mut stream) = ws.split();

    // 1. hello
    let hello = match tokio::time::timeout(silence, stream.next()).await {
        Err(_) => anyhow::bail!("no hello within {silence:?}"),
        Ok(None) => anyhow::bail!("the node closed the connection before hello"),
        Ok(Some(Err(err))) => return Err(err).context("read hello"),
        Ok(Some(Ok(Message::Text(text)))) => {
            fleetgate_protocol::decode_text::<DpMessage>(&text).context("decode hello")?
        }
        Ok(Some(Ok(other))) => anyhow::bail!("expected hello, got a {} frame", frame_kind(&other)),
    };
    let DpMessage::Hello {
        node_id: hello_id,
        hostname,
        version,
        config_hash,
        ..
    } = hello
    else {
        let reason = format!(
            "expected hello as the first message, got {}",
            fleetgate_protocol::Message::message_type(&hello)
        );
        send_text(
            &mut sink,
            &CpMessage::Refused {
                reason: reason.clone(),
            },
        )
        .await?;
        close(&mut sink, CloseCode::Policy, &reason).await;
        anyhow::bail!(reason);
    };
    if hello_id != node_id {
        let reason = format!(
            "hello node_id {hello_id} differs from the node_id {node_id} of the connection"
        );
        send_text(
            &mut sink,
            &CpMessage::Refused {
                reason: reason.clone(),
            },
        )
        .await?;
        close(&mut sink, CloseCode::Policy, &reason).await;
        anyhow::bail!(reason);
    }

    // 2. version skew
    let compat = match Version::parse(&version) {
        Ok(dp) => compatibility(&hub.cp_version(), &dp).map_version(dp),
        Err(err) => Err(format!(
            "data plane version {version:?} is not MAJOR.MINOR.PATCH: {err}"
        )),
    };
    let dp_version = match compat {
        Ok(dp) => dp,
        Err(reason) => {
            tracing::warn!(node_id = %node_id, control_plane = %id.control_plane_id, reason = %reason, "data plane refused");
            store
                .upsert_node(NodeHello {
                    id: node_id,
                    control_plane_id: id.control_plane_id,
                    hostname: &hostname,
                    version: &version,
                    config_hash: &config_hash,
                    cert_expiry: id.cert_expiry,
                    data_plane_cert_id: id.certificate_id,
                    incompatible: Some(&reason),
                    connected: false,
                })
                .await
                .context("record the incompatible node")?;
            send_text(
                &mut sink,
                &CpMessage::Refused {
                    reason: reason.clone(),
                },
            )
            .await?;
            close(&mut sink, CloseCode::Policy, &reason).await;
            return Ok(Ended::Refused);
        }
    };

    let row = store
        .upsert_node(NodeHello {
            id: node_id,
            control_plane_id: id.control_plane_id,
            hostname: &hostname,
            version: &version,
            config_hash: &config_hash,
            cert_expiry: id.cert_expiry,
            data_plane_cert_id: id.certificate_id,
            incompatible: None,
            connected: true,
        })
        .await
        .context("record the node")?;
    let mut view = NodeView {
        version: dp_version,
        hash: config_hash,
        rejected: row.rejected_hash,
        analytics_rows: NodeRowCache::default(),
    };
    let (_registration, mut commands) = hub.register(
        id.organization_id,
        id.control_plane_id,
        node_id,
        id.certificate_id,
    );
    tracing::info!(node_id = %node_id, hostname = %hostname, version = %version, control_plane = %id.control_plane_id, "data plane connected");

    // 3. license
    send_license(&mut sink, ctx).await?;

    // 4. + 5. config, now and on every change
    let mut configs = hub
        .subscribe(id.organization_id, id.control_plane_id)
        .await
        .context("subscribe to config changes")?;
    let mut last_heard = Instant::now();
    loop {
        // Biased: a pending close or config goes out before the next incoming frame is
        // answered, so a node never gets a pong for a state the control plane already left.
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(SessionCommand::Close { reason }) => {
                    tracing::info!(node_id = %node_id, reason = %reason, "closing data-plane session");
                    close(&mut sink, CloseCode::Policy, &reason).await;
                    return Ok(Ended::Served);
                }
                Some(SessionCommand::Replaced) => {
                    tracing::info!(node_id = %node_id, "the node connected again; closing its older session");
                    close(&mut sink, CloseCode::Policy, "replaced by a newer connection of this node").await;
                    return Ok(Ended::Refused);
                }
                Some(SessionCommand::RefreshLicense) => {
                    send_license(&mut sink, ctx).await?;
                }
                None => return Ok(Ended::Served),
            },
            changed = configs.changed() => {
                if changed.is_err() {
                    // The control plane's channel is gone: it was deleted.
                    close(&mut sink, CloseCode::Policy, "the control plane was deleted").await;
                    return Ok(Ended::Served);
                }
                let latest = configs.borrow_and_update().clone();
                if let Some(shared) = latest {
                    let frame = hub.frame_for(id.control_plane_id, &shared, view.version)?;
                    if view.wants(&frame) {
                        sink.send(Message::Binary(frame.frame.clone()))
                            .await
                            .context("send reconfigure")?;
                        tracing::debug!(node_id = %node_id, version = frame.version, "config pushed");
                    }
                }
            },
            incoming = stream.next() => {
                let message = match incoming {
                    None => return Ok(Ended::Served),
                    Some(Err(err)) => return Err(err).context("read from the node"),
                    Some(Ok(message)) => message,
                };
                last_heard = Instant::now();
                match message {
                    Message::Text(text) => {
                        handle_message(&mut sink, ctx, &mut view, &text).await?;
                    }
                    Message::Close(_) => return Ok(Ended::Served),
                    // WebSocket-level pings are answered by tungstenite itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    // Telemetry batches travel as binary frames: compact (columns), or gzip of
                    // their JSON from older senders.
                    Message::Binary(bytes) => {
                        match decode_binary_frame(&bytes, MAX_TELEMETRY_DECOMPRESSED_BYTES) {
                            Ok(NodeFrame::Telemetry(batch)) => {
                                ingest_telemetry(&mut sink, ctx, &mut view.analytics_rows, &batch).await?;
                            }
                            Ok(NodeFrame::Message(message)) => handle_decoded(&mut sink, ctx, &mut view, message).await?,
                            Err(err) => {
                                send_text(&mut sink, &CpMessage::Error {
                                    message: format!("unreadable binary frame: {err}"),
                                }).await?;
                            }
                        }
                    }
                }
            },
            () = tokio::time::sleep_until(last_heard + silence) => {
                tracing::info!(node_id = %node_id, silent_for = ?silence, "dropping a silent data plane");
                close(&mut sink, CloseCode::Away, "no ping within 1.5 ping intervals").await;
                return Ok(Ended::Served);
            }
        }
    }
}

/// Sends the organisation's current license, if it has one. Failing to load it is logged, not
/// fatal: the node keeps its stored license until the next attempt.
async fn send_license<S>(sink: &mut Sink<S>, ctx: &SessionContext) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let org = ctx.identity.organization_id;
    match ctx.hub.license_blob(org).await {
        Ok(Some(signed_blob)) => send_text(sink, &CpMessage::License { signed_blob }).await,
        Ok(None) => Ok(()),
        Err(err) => {
            tracing::warn!(organization = %org, error = format!("{err:#}"), "could not load the license");
            Ok(())
        }
    }
}

trait MapVersion {
    fn map_version(self, dp: Version) -> Result<Version, String>;
}

impl MapVersion for Compatibility {
    fn map_version(self, dp: Version) -> Result<Version, String> {
        match self {
            Compatibility::Compatible | Compatibility::CompatibleOlder => Ok(dp),
            Compatibility::Incompatible { reason } => Err(reason),
        }
    }
}

fn frame_kind(message: &Message) -> &'static str {
    match message {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "raw",
    }
}

async fn handle_message<S>(
    sink: &mut Sink<S>,
    ctx: &SessionContext,
    view: &mut NodeView,
    text: &str,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let node_id = ctx.query.node_id;
    let message = match fleetgate_protocol::decode_text::<DpMessage>(text) {
        Ok(message) => message,
        // A newer node may send types this control plane does not know yet: skip them.
        Err(ProtocolError::UnknownMessageType { type_name, .. }) => {
            tracing::debug!(node_id = %node_id, type_name = %type_name, "skipping an unknown message type");
            return Ok(());
        }
        Err(err) => {
            return send_text(
                sink,
                &CpMessage::Error {
                    message: err.to_string(),
                },
            )
            .await;
        }
    };
    handle_decoded(sink, ctx, view, message).await
}

async fn handle_decoded<S>(
    sink: &mut Sink<S>,
    ctx: &SessionContext,
    view: &mut NodeView,
    message: DpMessage,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let store = ctx.hub.store();
    let cp = ctx.identity.control_plane_id;
    let node_id = ctx.query.node_id;
    match message {
        DpMessage::Ping {
            config_hash,
            telemetry_buffer_fill,
        } => {
            ctx.hub.heartbeats().record(NodeHeartbeat {
                control_plane_id: cp,
                node_id,
                config_hash: config_hash.clone(),
                telemetry_buffer_fill,
                at: now_ms() / 1000,
            });
            view.hash = config_hash;
            send_text(
                sink,
                &CpMessage::Pong {
                    cp_time_ms: now_ms(),
                },
            )
            .await?;
        }
        DpMessage::Applied { config_hash } => {
            ctx.hub.heartbeats().record(NodeHeartbeat {
                control_plane_id: cp,
                node_id,
                config_hash: config_hash.clone(),
                telemetry_buffer_fill: None,
                at: now_ms() / 1000,
            });
            tracing::info!(node_id = %node_id, config_hash = %config_hash, "data plane applied a config");
            view.hash = config_hash;
        }
        DpMessage::Rejected {
            config_hash,
            errors,
        } => {
            let errors: Vec<String> = errors
                .into_iter()
                .take(MAX_REJECT_ERRORS)
                .map(|mut e| {
                    if e.len() > MAX_REJECT_ERROR_LEN {
                        let mut cut = MAX_REJECT_ERROR_LEN;
                        while !e.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        e.truncate(cut);
                    }
                    e
                })
                .collect();
            tracing::warn!(node_id = %node_id, config_hash = %config_hash, errors = ?errors, "data plane rejected a config");
            if let Err(err) = store
                .record_node_rejection(cp, node_id, &config_hash, &errors)
                .await
            {
                tracing::warn!(node_id = %node_id, error = %err, "could not record a rejection");
            }
            view.rejected = Some(config_hash);
        }
        DpMessage::Hello { .. } => {
            send_text(
                sink,
                &CpMessage::Error {
                    message: "hello was already received on this connection".into(),
                },
            )
            .await?;
        }
        DpMessage::Telemetry {
            node_id: batch_node,
            seq,
            records,
            dropped,
        } => {
            let batch = TelemetryBatch::from_records(batch_node, seq, &records, dropped);
            ingest_telemetry(sink, ctx, &mut view.analytics_rows, &batch).await?;
        }
    }
    Ok(())
}

/// Ingests a telemetry batch and acks it once committed (a duplicate or a refused batch is
/// acked too: re-sending it would not change the answer). A failed commit is not acked: the
/// node keeps the batch and re-sends it after its next reconnect.
async fn ingest_telemetry<S>(
    sink: &mut Sink<S>,
    ctx: &SessionContext,
    cache: &mut NodeRowCache,
    batch: &TelemetryBatch,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let origin = BatchOrigin {
        organization_id: ctx.identity.organization_id,
        control_plane_id: ctx.identity.control_plane_id,
        node_id: ctx.query.node_id,
    };
    let now = crate::store::now_unix();
    let horizon = ctx
        .hub
        .analytics_retention()
        .horizon(crate::telemetry::Granularity::TenSeconds, now);
    let (seq, dropped) = (batch.seq(), batch.dropped());
    match ingest_telemetry_batch(ctx.hub.store(), cache, &origin, batch, now, horizon).await {
        Ok(IngestOutcome::Stored { records }) => {
            tracing::debug!(node_id = %origin.node_id, seq, records, dropped, "telemetry batch stored");
        }
        Ok(IngestOutcome::Duplicate) => {
            tracing::debug!(node_id = %origin.node_id, seq, "duplicate telemetry batch acknowledged");
        }
        Ok(IngestOutcome::Refused { reason }) => {
            tracing::warn!(node_id = %origin.node_id, seq, reason = %reason, "telemetry batch refused");
            send_text(sink, &CpMessage::Error { message: reason }).await?;
        }
        Err(err) => {
            tracing::warn!(node_id = %origin.node_id, seq, error = %err, "could not store a telemetry batch");
            return send_text(
                sink,
                &CpMessage::Error {
                    message: format!(
                        "telemetry batch {seq} could not be stored; keep it and send it again"
                    ),
                },
            )
            .await;
        }
    }
    send_text(sink, &CpMessage::Ack { seq }).await
}
