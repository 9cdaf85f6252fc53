//! The cluster client: the data plane's link to its control plane (docs/architecture.md,
//! docs/clustering.md). It dials `cluster_control_plane` over mutual TLS 1.3, upgrades to a
//! WebSocket on `/v1/outlet`, says `hello`, applies every `reconfigure` (then caches it and
//! answers `applied` or `rejected`), stores pushed licenses and sends a heartbeat. It never
//! gives up: after any failure it waits a random delay in `cluster_reconnect_delay` and dials
//! the next endpoint of the list. A node given `cluster_join_token` instead of a certificate
//! first [enrols](enrol) for one.

pub mod enrol;
mod session;
pub mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;

use crate::fallback::ExportedConfig;
use crate::gateway::Gateway;
use crate::settings::Settings;
use crate::status::NodeInfo;

pub use session::SessionError;

/// How a cluster client dials and paces itself.
#[derive(Clone)]
pub struct ClientSettings {
    /// `host:port` of each control plane endpoint, tried in turn.
    pub endpoints: Vec<String>,
    /// TLS server name; `None` = the endpoint's host.
    pub server_name: Option<String>,
    /// TLS 1.3 client config (client certificate, trusted CA); shareable across clients.
    pub tls: Arc<rustls::ClientConfig>,
    /// Heartbeat interval; the link is dropped after 1.5 intervals without any frame.
    pub ping_interval: Duration,
    /// Random delay range before each reconnect.
    pub reconnect_delay: (Duration, Duration),
    /// Limit on the TCP connect, the TLS handshake and the WebSocket upgrade together.
    pub connect_timeout: Duration,
    /// Labels sent in `hello`.
    pub labels: BTreeMap<String, String>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The TLS config holds the private key: never print it.
        f.debug_struct("ClientSettings")
            .field("endpoints", &self.endpoints)
            .field("server_name", &self.server_name)
            .field("ping_interval", &self.ping_interval)
            .field("reconnect_delay", &self.reconnect_delay)
            .finish_non_exhaustive()
    }
}

impl ClientSettings {
    /// The client settings of a node, or `None` for a standalone node (no
    /// `cluster_control_plane`). Reads and checks the certificate files now, so a bad file
    /// fails start-up naming it.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        if settings.cluster_control_plane.is_empty() {
            return Ok(None);
        }
        // Settings validation guarantees all three once cluster_control_plane is set.
        let (Some(cert), Some(key), Some(ca)) = (
            &settings.cluster_cert,
            &settings.cluster_cert_key,
            &settings.cluster_ca_cert,
        ) else {
            anyhow::bail!("cluster_cert, cluster_cert_key and cluster_ca_cert are required when cluster_control_plane is set");
        };
        let tls = tls::client_config(cert, key, ca).context("load the cluster TLS material")?;
        Ok(Some(Self {
            endpoints: settings.cluster_control_plane.clone(),
            server_name: settings.cluster_server_name.clone(),
            tls,
            ping_interval: settings.cluster_ping_interval,
            reconnect_delay: settings.cluster_reconnect_delay,
            connect_timeout: Duration::from_secs(10),
            labels: BTreeMap::new(),
        }))
    }

    /// A random delay in `reconnect_delay`.
    fn reconnect_delay(&self) -> Duration {
        let (lo, hi) = self.reconnect_delay;
        if hi <= lo {
            return lo;
        }
        rand::thread_rng().gen_range(lo..=hi)
    }
}

/// What the link is doing, for `/status` and for tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterState {
    /// A session with a control plane is open.
    pub connected: bool,
    /// Unix seconds of the last `pong` from the control plane.
    pub last_ping_unix: Option<i64>,
    /// Why the last attempt or session failed (no secrets).
    pub last_error: Option<String>,
    /// Hash of the last config this client applied (or confirmed it already ran).
    pub applied_hash: Option<String>,
    /// Sessions opened so far (each successful upgrade counts).
    pub sessions: u64,
}

/// A running cluster client.
#[derive(Debug)]
pub struct ClusterHandle {
    state: watch::Receiver<ClusterState>,
    applied: watch::Receiver<Option<Arc<ExportedConfig>>>,
    failure: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ClusterHandle {
    /// Resolves with a one-line reason if the client gave up for good (its join token was
    /// refused); never resolves otherwise. The node should then exit.
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.clone();
        let reason = match failure.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The client ended without failing (shutdown): nothing to report, ever.
            Err(_) => return std::future::pending().await,
        };
        reason
    }

    /// The link's state; `changed()` wakes on every update.
    pub fn state(&self) -> watch::Receiver<ClusterState> {
        self.state.clone()
    }

    /// The newest config this client applied from a push (for the fallback exporter);
    /// `changed()` wakes on each one.
    pub fn applied(&self) -> watch::Receiver<Option<Arc<ExportedConfig>>> {
        self.applied.clone()
    }

    /// Closes the session (if any) and stops reconnecting.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The cluster client task.
#[derive(Debug)]
pub struct ClusterClient;

/// Everything one client's sessions share.
pub(crate) struct Link {
    pub(crate) settings: ClientSettings,
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) prefix: PathBuf,
    pub(crate) node: NodeInfo,
    pub(crate) state: watch::Sender<ClusterState>,
    pub(crate) applied: watch::Sender<Option<Arc<ExportedConfig>>>,
}

impl ClusterClient {
    /// Starts the client on the current tokio runtime. It applies configs to `gateway`, keeps
    /// its cache and license in `prefix`, and identifies itself as `node`.
    pub fn spawn(
        settings: ClientSettings,
        gateway: Arc<Gateway>,
        prefix: PathBuf,
        node: NodeInfo,
    ) -> ClusterHandle {
        // Bounds the telemetry buffer while disconnected (a no-op if the node started it).
        gateway.telemetry.start_flusher();
        let (state, state_rx) = watch::channel(ClusterState::default());
        let (stop, stop_rx) = watch::channel(false);
        let (applied, applied_rx) = watch::channel(None);
        let (_failure, failure_rx) = watch::channel(None);
        let link = Link {
            settings,
            gateway,
            prefix,
            node,
            state,
            applied,
        };
        let task = tokio::spawn(run(link, stop_rx));
        ClusterHandle {
            state: state_rx,
            applied: applied_rx,
            failure: failure_rx,
            stop,
            task,
        }
    }

    /// Like [`spawn`](Self::spawn) for a node that must first enrol with its join token:
    /// enrols (retrying until the control plane answers), then runs the client with the
    /// certificate obtained, built from `settings`. A refusal ends the client and resolves
    /// [`ClusterHandle::failed`].
    pub fn spawn_enrolling(
        enrolment: enrol::Enrolment,
        settings: Settings,
        gateway: Arc<Gateway>,
        node: NodeInfo,
    ) -> ClusterHandle {
        gateway.telemetry.start_flusher();
        let (state, state_rx) = watch::channel(ClusterState::default());
        let (stop, stop_rx) = watch::channel(false);
        let (applied, applied_rx) = watch::channel(None);
        let (failure, failure_rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut stop = stop_rx;
            let fail = |reason: String| {
                tracing::error!(%reason, "the node cannot join its control plane");
                let _ = failure.send(Some(reason));
            };
            let (cert, key) = match enrolment.run(&mut stop, &state).await {
                Ok(Some(paths)) => paths,
                Ok(None) => return,
                Err(e) => return fail(e.to_string()),
            };
            let with_cert = enrol::with_credentials(&settings, &cert, &key);
            let client = match ClientSettings::from_settings(&with_cert) {
                Ok(Some(client)) => client,
                Ok(None) => return,
                Err(e) => return fail(format!("use the enrolled certificate: {e:#}")),
            };
            let link = Link {
                settings: client,
                gateway,
                prefix: settings.prefix.clone(),
                node,
                state,
                applied,
            };
            run(link, stop).await;
        });
        ClusterHandle {
            state: state_rx,
            applied: applied_rx,
            failure: failure_rx,
            stop,
            task,
        }
    }
}

async fn run(link: Link, mut stop: watch::Receiver<bool>) {
    let endpoints = link.settings.endpoints.clone();
    if endpoints.is_empty() {
        tracing::error!("cluster client started without any cluster_control_plane endpoint");
        return;
    }
    for endpoint in endpoints.iter().cycle() {
        if *stop.borrow() {
            break;
        }
        match session::run(&link, endpoint, &mut stop).await {
            Ok(()) => break,
            Err(e) => {
                match &e {
                    SessionError::Refused(reason) => {
                        tracing::error!(%endpoint, %reason, "the control plane refused this node; retrying later");
                    }
                    SessionError::Connect(_) => {
                        tracing::warn!(%endpoint, error = %e, "cannot connect to the control plane");
                    }
                    SessionError::Lost(_) => {
                        tracing::warn!(%endpoint, error = %e, "lost the link to the control plane");
                    }
                }
                let message = e.to_string();
                link.state.send_modify(|s| {
                    s.connected = false;
                    s.last_error = Some(message);
                });
            }
        }
        let delay = link.settings.reconnect_delay();
        tracing::debug!(?delay, "reconnecting to the control plane after a delay");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => break,
        }
    }
    link.state.send_modify(|s| s.connected = false);
}

/// Resolves once `stop` is signalled (the watch guard is dropped before returning, so the
/// future stays `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
