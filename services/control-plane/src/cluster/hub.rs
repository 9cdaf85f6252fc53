//! The cluster hub: which data-plane sessions are open, and the one encoded `reconfigure`
//! frame per control plane they all send.
//!
//! A config write calls [`ClusterHub::config_changed`]; the hub builds the snapshot once
//! (through the shared [`SnapshotCache`]), gzips the `reconfigure` frame once, and publishes
//! it on the control plane's `watch` channel. Every session of that control plane writes the
//! same [`Bytes`]; a `watch` keeps only the newest value, so a slow session skips straight to
//! the latest config instead of queueing old ones.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use bytes::Bytes;
use fleetgate_protocol::{CpMessage, Version};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::strip;
use crate::snapshot::{ConfigSnapshot, SnapshotCache};
use crate::store::Store;
use crate::telemetry::Retention;

/// One encoded `reconfigure` frame, shared by every session it is sent to.
#[derive(Debug)]
pub struct PushFrame {
    /// Config version of the control plane.
    pub version: i64,
    /// Config hash carried in the frame.
    pub hash: String,
    /// The binary WebSocket payload (gzip of the JSON message).
    pub frame: Bytes,
}

/// What the hub can ask a session to do.
#[derive(Debug, Clone)]
pub enum SessionCommand {
    /// Close the session: its credentials or its control plane went away.
    Close {
        /// Logged and sent as the WebSocket close reason.
        reason: String,
    },
    /// The organisation's license changed: send the current one.
    RefreshLicense,
    /// The same node connected again (e.g. after a link the CP had not yet noticed was
    /// dead): close this older session without marking the node disconnected.
    Replaced,
}

/// Where the hub gets an organisation's current license blob from (the license authority).
pub trait LicenseSource: Send + Sync {
    /// The organisation's current signed license, if it has one.
    fn current_blob(
        &self,
        org: Uuid,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<Option<String>>> + Send + '_>>;
}

type FrameSlot = Option<Arc<PushFrame>>;

struct PlaneChannel {
    tx: watch::Sender<FrameSlot>,
    /// Serialises frame builds of one control plane so concurrent writes build it once.
    build: Arc<tokio::sync::Mutex<()>>,
}

struct SessionEntry {
    org: Uuid,
    control_plane: Uuid,
    node_id: Uuid,
    certificate_id: Uuid,
    commands: mpsc::UnboundedSender<SessionCommand>,
}

/// Registry of live sessions and per-control-plane config channels.
pub struct ClusterHub {
    store: Arc<Store>,
    snapshots: Arc<SnapshotCache>,
    cp_version: Version,
    planes: Mutex<HashMap<Uuid, PlaneChannel>>,
    sessions: Mutex<HashMap<u64, SessionEntry>>,
    next_session: AtomicU64,
    /// Frames with fields stripped for older data planes: (control plane, version, dp minor).
    stripped: Mutex<HashMap<(Uuid, i64, u64), Arc<PushFrame>>>,
    license: RwLock<Option<Arc<dyn LicenseSource>>>,
    /// Analytics retention: sessions skip records older than the 10 s horizon.
    analytics_retention: RwLock<Retention>,
    /// Node heartbeats waiting to be written in one batch.
    heartbeats: Arc<super::heartbeats::HeartbeatWriter>,
    /// The node binary the cluster listener serves and cloud nodes are told the hash of.
    dp_artifact: RwLock<Arc<super::artifacts::DpArtifact>>,
}

impl std::fmt::Debug for ClusterHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHub")
            .field("cp_version", &self.cp_version)
            .field("sessions", &self.session_count())
            .finish_non_exhaustive()
    }
}

/// Removes a session from the hub when the session ends, however it ends.
#[derive(Debug)]
pub struct SessionRegistration {
    hub: Arc<ClusterHub>,
    id: u64,
}

impl Drop for SessionRegistration {
    fn drop(&mut self) {
        lock(&self.hub.sessions).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This build's version, the one data planes are compared against.
pub fn control_plane_version() -> Version {
    // The crate version always parses; 0.0.0 would only make every DP "newer" and refused.
    Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(Version::new(0, 0, 0))
}

impl ClusterHub {
    /// A hub over the API's store and snapshot cache.
    pub fn new(store: Arc<Store>, snapshots: Arc<SnapshotCache>) -> Self {
        Self {
            store,
            snapshots,
            cp_version: control_plane_version(),
            planes: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            stripped: Mutex::new(HashMap::new()),
            license: RwLock::new(None),
            analytics_retention: RwLock::new(Retention::default()),
            heartbeats: Arc::default(),
            dp_artifact: RwLock::new(Arc::new(super::artifacts::DpArtifact::new(None))),
        }
    }

    /// Sets which `fleetgate-dp` binary is served to booting nodes (done once at server start).
    pub fn set_dp_artifact(&self, artifact: Arc<super::artifacts::DpArtifact>) {
        *self.dp_artifact.write().unwrap_or_else(|p| p.into_inner()) = artifact;
    }

    /// The `fleetgate-dp` binary served to booting nodes.
    pub fn dp_artifact(&self) -> Arc<super::artifacts::DpArtifact> {
        self.dp_artifact
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where sessions leave node heartbeats (written in batches by its task).
    pub fn heartbeats(&self) -> &Arc<super::heartbeats::HeartbeatWriter> {
        &self.heartbeats
    }

    /// The control plane's own version.
    pub fn cp_version(&self) -> Version {
        self.cp_version
    }

    /// The store sessions record node state in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Sets the analytics retention sessions ingest with (done once at server start).
    pub fn set_analytics_retention(&self, retention: Retention) {
        *self
            .analytics_retention
            .write()
            .unwrap_or_else(|p| p.into_inner()) = retention;
    }

    /// The analytics retention.
    pub fn analytics_retention(&self) -> Retention {
        *self
            .analytics_retention
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Installs where licenses come from (done once at server start).
    pub fn set_license_source(&self, source: Arc<dyn LicenseSource>) {
        *self.license.write().unwrap_or_else(|p| p.into_inner()) = Some(source);
    }

    /// The organisation's current license blob, if a license source is installed and the
    /// organisation has one.
    pub async fn license_blob(&self, org: Uuid) -> anyhow::Result<Option<String>> {
        let source = self
            .license
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match source {
            Some(source) => source.current_blob(org).await,
            None => Ok(None),
        }
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    fn plane(
        &self,
        control_plane: Uuid,
    ) -> (watch::Sender<FrameSlot>, Arc<tokio::sync::Mutex<()>>) {
        let mut planes = lock(&self.planes);
        let plane = planes.entry(control_plane).or_insert_with(|| PlaneChannel {
            tx: watch::channel(None).0,
            build: Arc::new(tokio::sync::Mutex::new(())),
        });
        (plane.tx.clone(), plane.build.clone())
    }

    /// Called after every committed config write of a control plane: builds and publishes the
    /// new frame at once, unless no session of that control plane is open (then the first
    /// session to subscribe builds it).
    pub async fn config_changed(&self, org: Uuid, control_plane: Uuid) -> anyhow::Result<()> {
        let (tx, _) = self.plane(control_plane);
        if tx.receiver_count() == 0 {
            return Ok(());
        }
        self.publish_latest(org, control_plane).await
    }

    /// [`Self::config_changed`] in the background, for API handlers: the answer to the write
    /// does not wait for the push, and a failed push is logged, not reported to the writer.
    pub fn spawn_config_changed(self: &Arc<Self>, org: Uuid, control_plane: Uuid) {
        let hub = self.clone();
        tokio::spawn(async move {
            if let Err(err) = hub.config_changed(org, control_plane).await {
                tracing::warn!(
                    control_plane = %control_plane,
                    error = format!("{err:#}"),
                    "could not push the new config to data planes"
                );
            }
        });
    }

    /// Builds the frame of the current version if the channel does not hold it yet.
    async fn publish_latest(&self, org: Uuid, control_plane: Uuid) -> anyhow::Result<()> {
        let (tx, build) = self.plane(control_plane);
        let _building = build.lock().await;
        let snapshot = self
            .snapshots
            .get(&self.store, org, control_plane)
            .await
            .context("build the config snapshot")?;
        let current = tx.borrow().as_ref().map(|f| f.version);
        if current.is_some_and(|v| v >= snapshot.version) {
            return Ok(());
        }
        let frame = tokio::task::spawn_blocking(move || encode_frame(control_plane, &snapshot))
            .await
            .context("join the frame encoder")??;
        let frame = Arc::new(frame);
        tx.send_if_modified(|slot| {
            if slot.as_ref().is_some_and(|f| f.version >= frame.version) {
                return false;
            }
            *slot = Some(frame.clone());
            true
        });
        tracing::debug!(
            control_plane = %control_plane,
            version = frame.version,
            sessions = tx.receiver_count(),
            "config frame published"
        );
        Ok(())
    }

    /// A receiver of the control plane's latest frame, holding the current version already.
    pub async fn subscribe(
        &self,
        org: Uuid,
        control_plane: Uuid,
    ) -> anyhow::Result<watch::Receiver<FrameSlot>> {
        let (tx, _) = self.plane(control_plane);
        let mut rx = tx.subscribe();
        self.publish_latest(org, control_plane).await?;
        // Whatever is in the slot now is news to this session.
        rx.mark_changed();
        Ok(rx)
    }

    /// The frame a data plane at `dp_version` receives for `frame`: the shared one, or (for an
    /// older minor that lacks fields of this version) a stripped copy built once per version
    /// and minor.
    pub fn frame_for(
        &self,
        control_plane: Uuid,
        frame: &Arc<PushFrame>,
        dp_version: Version,
    ) -> anyhow::Result<Arc<PushFrame>> {
        if !strip::needs_stripping(self.cp_version, dp_version) {
            return Ok(frame.clone());
        }
        let key = (control_plane, frame.version, dp_version.minor);
        if let Some(hit) = lock(&self.stripped).get(&key) {
            return Ok(hit.clone());
        }
        let stripped = Arc::new(strip::strip_frame(frame, dp_version)?);
        let mut cache = lock(&self.stripped);
        // Older versions are never sent again: keep only this version's entries.
        cache.retain(|(cp, version, _), _| *cp != control_plane || *version >= frame.version);
        Ok(cache.entry(key).or_insert(stripped).clone())
    }

    /// Adds a session; it stays registered until the returned guard is dropped. An older
    /// session of the same node is told to go ([`SessionCommand::Replaced`]).
    pub fn register(
        self: &Arc<Self>,
        org: Uuid,
        control_plane: Uuid,
        node_id: Uuid,
        certificate_id: Uuid,
    ) -> (SessionRegistration, mpsc::UnboundedReceiver<SessionCommand>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mut sessions = lock(&self.sessions);
        for old in sessions
            .values()
            .filter(|s| s.control_plane == control_plane && s.node_id == node_id)
        {
            let _ = old.commands.send(SessionCommand::Replaced);
        }
        sessions.insert(
            id,
            SessionEntry {
                org,
                control_plane,
                node_id,
                certificate_id,
                commands,
            },
        );
        (
            SessionRegistration {
                hub: self.clone(),
                id,
            },
            rx,
        )
    }

    fn command_where(
        &self,
        matches: impl Fn(&SessionEntry) -> bool,
        command: SessionCommand,
    ) -> usize {
        let sessions = lock(&self.sessions);
        sessions
            .values()
            .filter(|s| matches(s))
            .filter(|s| s.commands.send(command.clone()).is_ok())
            .count()
    }

    /// Closes every session identified through the dp-client-certificate (it was deleted).
    pub fn close_sessions_for_certificate(&self, certificate_id: Uuid) -> usize {
        self.command_where(
            |s| s.certificate_id == certificate_id,
            SessionCommand::Close {
                reason: "the client certificate was deleted".into(),
            },
        )
    }

    /// Closes every session of a deleted control plane and forgets its channel.
    pub fn close_sessions_for_control_plane(&self, control_plane: Uuid) -> usize {
        lock(&self.planes).remove(&control_plane);
        lock(&self.stripped).retain(|(cp, _, _), _| *cp != control_plane);
        self.command_where(
            |s| s.control_plane == control_plane,
            SessionCommand::Close {
                reason: "the control plane was deleted".into(),
            },
        )
    }

    /// The organisation's license changed (already committed): every session of it sends the
    /// current one. Returns at once; the sessions fetch and send it themselves.
    pub fn spawn_license_changed(&self, org: Uuid) -> usize {
        let sessions = self.command_where(|s| s.org == org, SessionCommand::RefreshLicense);
        tracing::debug!(organization = %org, sessions, "pushing the new license");
        sessions
    }
}

/// Encodes a snapshot as the binary `reconfigure` frame (the one expensive step, done once per
/// version). It names the control plane, which the node stamps on its telemetry records.
pub fn encode_frame(control_plane: Uuid, snapshot: &ConfigSnapshot) -> anyhow::Result<PushFrame> {
    let config: serde_json::Value =
        serde_json::from_slice(&snapshot.canonical).context("read the canonical config")?;
    let hash = snapshot.hash.to_string();
    let message = CpMessage::Reconfigure {
        version: snapshot.version,
        config_hash: hash.clone(),
        config,
        control_plane_id: Some(control_plane),
    };
    let frame =
        fleetgate_protocol::encode_binary(&message).context("encode the reconfigure frame")?;
    Ok(PushFrame {
        version: snapshot.version,
        hash,
        frame: Bytes::from(frame),
    })
}
