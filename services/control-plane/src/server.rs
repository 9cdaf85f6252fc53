//! Running the API server: bind, serve, shut down gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::hub::LicenseSource;
use crate::cluster::license::LicenseAuthority;
use crate::cluster::listener::{self, ClusterSettings};
use crate::cluster::tls::ClusterTlsFlags;
use crate::state::{ApiSettings, AppState};
use crate::store::Store;
use crate::telemetry::AnalyticsSettings;

/// Where the server keeps its state and listens.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Data directory (SQLite file, generated keys).
    pub data_dir: PathBuf,
    /// Database URL; the SQLite file in the data dir when absent.
    pub database_url: Option<String>,
    /// Address of the REST API.
    pub api_listen: SocketAddr,
    /// The cluster listener data planes dial.
    pub cluster: ClusterSettings,
    /// Cluster TLS files replacing the generated ones.
    pub cluster_tls: ClusterTlsFlags,
    /// `host:port` data planes dial; default: the cluster listen address.
    pub cluster_endpoint: Option<String>,
    /// Analytics retention and rollup cadence.
    pub analytics: AnalyticsSettings,
    /// Dedicated cloud gateways (`None`: no reconciler).
    pub cloud: Option<crate::cloud::CloudSettings>,
}

impl ServerSettings {
    /// The database URL to use: the given one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url_in(&self.data_dir))
    }
}

/// Creates the data dir (owner-only: it holds the database and keys) and opens the store.
pub async fn open_store(data_dir: &Path, database_url: Option<&str>) -> anyhow::Result<Store> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("create data dir {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restrict permissions of {}", data_dir.display()))?;
    }
    let url = database_url
        .map(str::to_string)
        .unwrap_or_else(|| Store::sqlite_url_in(data_dir));
    Store::connect(&url).await
}

/// A running API server; dropping the handle does not stop it, `shutdown` does.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The bound cluster listener address (data planes dial it).
    pub cluster_addr: SocketAddr,
    /// The state the API serves (tests reach the cluster hub and CA through it).
    pub state: AppState,
    /// The cloud-gateway providers, when the server runs the reconciler.
    pub cloud: Option<Arc<crate::cloud::Providers>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, finishes in-flight requests, ends data-plane sessions, and waits.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.background {
            task.await.context("join a cluster task")?;
        }
        self.task
            .await
            .context("join the API server task")?
            .context("serve the API")
    }
}

/// The license authority as the cluster hub's license source.
struct AuthorityLicenses {
    authority: Arc<LicenseAuthority>,
    store: Arc<Store>,
}

impl LicenseSource for AuthorityLicenses {
    fn current_blob(
        &self,
        org: uuid::Uuid,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = anyhow::Result<Option<String>>> + Send + '_>,
    > {
        Box::pin(async move {
            let license = self.authority.current_for(&self.store, org).await?;
            Ok(Some(license.blob))
        })
    }
}

/// Binds `addr` and serves the API over `store` in a background task, with the cluster
/// listener on an ephemeral loopback port (for in-process servers).
pub async fn start(
    store: Store,
    addr: SocketAddr,
    settings: ApiSettings,
) -> anyhow::Result<RunningServer> {
    let cluster = ClusterSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ClusterSettings::default()
    };
    start_with(store, addr, settings, cluster).await
}

/// Binds the API on `addr` and the cluster listener on `cluster.listen`, and serves both in
/// background tasks.
pub async fn start_with(
    store: Store,
    addr: SocketAddr,
    settings: ApiSettings,
    cluster: ClusterSettings,
) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the API listener on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("read the bound API address")?;
    // No session survives a restart, whatever a crashed predecessor left in the table.
    crate::cluster::nodes::mark_all_disconnected(&store)
        .await
        .context("mark the nodes of the previous run disconnected")?;
    settings
        .analytics
        .retention
        .validate()
        .map_err(anyhow::Error::msg)
        .context("check the analytics retention")?;
    let state = AppState::new(store, settings)?;
    state
        .cluster
        .set_analytics_retention(state.settings.analytics.retention);
    state
        .cluster
        .set_license_source(Arc::new(AuthorityLicenses {
            authority: state.licenses.clone(),
            store: state.store.clone(),
        }));
    state
        .cluster
        .set_dp_artifact(Arc::new(crate::cluster::artifacts::DpArtifact::new(
            cluster.dp_artifact.clone(),
        )));
    let (stop, mut stopped) = watch::channel(false);
    let (cluster_addr, cluster_task) = listener::start(
        state.cluster.clone(),
        state.cluster_tls.server_config(),
        cluster.clone(),
        stop.subscribe(),
    )
    .await?;
    let purge_task = crate::cluster::nodes::spawn_purge(
        state.store.clone(),
        cluster.node_purge_after,
        stop.subscribe(),
    );
    let rollup_task = crate::telemetry::rollup::spawn(
        state.store.clone(),
        state.settings.analytics,
        stop.subscribe(),
    );
    let heartbeat_task = state
        .cluster
        .heartbeats()
        .clone()
        .spawn(state.store.clone(), stop.subscribe());
    let mut background = vec![cluster_task, purge_task, rollup_task, heartbeat_task];
    let cloud = match state.settings.cloud.clone() {
        Some(mut cloud) => {
            if cloud.node_cluster_endpoint.is_none() && cluster.listen.port() == 0 {
                // Nodes must dial the port the listener actually got.
                cloud.node_cluster_endpoint = Some(cluster_addr.to_string());
            }
            let providers = Arc::new(crate::cloud::Providers::open(&cloud).await?);
            background.push(crate::cloud::spawn(
                state.clone(),
                providers.clone(),
                cloud,
                stop.subscribe(),
            ));
            Some(providers)
        }
        None => None,
    };
    let app = crate::api::app(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(RunningServer {
        addr,
        cluster_addr,
        state,
        cloud,
        stop,
        task,
        background,
    })
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `fleetgate serve`: runs until a shutdown signal.
pub async fn serve(settings: ServerSettings) -> anyhow::Result<()> {
    let store = open_store(&settings.data_dir, settings.database_url.as_deref()).await?;
    tracing::info!(
        backend = ?store.backend(),
        database = %crate::store::redact_url(&settings.effective_database_url()),
        "store ready"
    );
    let api = ApiSettings {
        data_dir: Some(settings.data_dir.clone()),
        cluster_tls: settings.cluster_tls.clone(),
        cluster_endpoint: settings
            .cluster_endpoint
            .clone()
            .unwrap_or_else(|| settings.cluster.listen.to_string()),
        analytics: settings.analytics,
        cloud: settings.cloud.clone(),
    };
    let server = start_with(store, settings.api_listen, api, settings.cluster.clone()).await?;
    tracing::info!(addr = %server.addr, "API listening");
    tracing::info!(addr = %server.cluster_addr, "cluster listener ready");
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}
