//! Running the API server: bind, serve, shut down gracefully.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::{ApiSettings, AppState};
use crate::store::Store;

/// Where the server keeps its state and listens.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Data directory (SQLite file, generated keys).
    pub data_dir: PathBuf,
    /// Database URL; the SQLite file in the data dir when absent.
    pub database_url: Option<String>,
    /// Address of the REST API.
    pub api_listen: SocketAddr,
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
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, finishes in-flight requests, and waits.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .context("join the API server task")?
            .context("serve the API")
    }
}

/// Binds `addr` and serves the API over `store` in a background task.
pub async fn start(
    store: Store,
    addr: SocketAddr,
    settings: ApiSettings,
) -> anyhow::Result<RunningServer> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the API listener on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("read the bound API address")?;
    let app = crate::api::app(AppState::new(store, settings));
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(RunningServer { addr, stop, task })
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
    let server = start(store, settings.api_listen, ApiSettings::default()).await?;
    tracing::info!(addr = %server.addr, "API listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}
