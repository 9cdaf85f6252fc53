//! Fleetgate's data-plane node: a gateway proxy that runs a gateway config (from a
//! `declarative_config` file now; pushed by the control plane in clustered mode).

pub mod balancer;
pub mod connector;
pub mod gateway;
pub mod idle;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod settings;
pub mod status;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

pub use gateway::{ApplyError, ConfigSource, Gateway};
pub use settings::Settings;

/// A running data-plane node.
#[derive(Debug)]
pub struct DataPlane {
    /// The gateway state (current config, metrics).
    pub gateway: Arc<Gateway>,
    /// Bound HTTP proxy address.
    pub proxy_addr: SocketAddr,
    /// Bound HTTPS proxy address, when enabled.
    pub proxy_tls_addr: Option<SocketAddr>,
    /// Bound status address.
    pub status_addr: SocketAddr,
    settings: Settings,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn node_id(prefix: &Path) -> anyhow::Result<uuid::Uuid> {
    let path = prefix.join("node_id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(id) = uuid::Uuid::parse_str(text.trim()) {
            return Ok(id);
        }
    }
    let id = uuid::Uuid::new_v4();
    std::fs::write(&path, id.to_string()).with_context(|| format!("write {}", path.display()))?;
    Ok(id)
}

impl DataPlane {
    /// Loads the start-up config, binds every listener and starts serving. A broken
    /// `declarative_config` fails start-up, naming the file, line and field.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.prefix)
            .with_context(|| format!("create prefix dir {}", settings.prefix.display()))?;
        let node = Arc::new(status::NodeInfo {
            node_id: node_id(&settings.prefix)?,
            hostname: std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
            version: env!("CARGO_PKG_VERSION"),
        });
        let gateway = Gateway::new()?;
        match &settings.declarative_config {
            Some(path) => {
                gateway.apply_declarative_file(path)?;
            }
            // No config at all: run empty (404 for everything) and say so.
            None => gateway.mark_loaded(),
        }
        let (stop, stopped) = watch::channel(false);
        let proxy_listener = server::bind(settings.proxy_listen, "proxy_listen").await?;
        let proxy_addr = proxy_listener.local_addr()?;
        let status_listener = server::bind(settings.status_listen, "status_listen").await?;
        let status_addr = status_listener.local_addr()?;
        let mut tasks = vec![
            tokio::spawn(server::serve_proxy(
                proxy_listener,
                None,
                gateway.clone(),
                stopped.clone(),
            )),
            tokio::spawn(server::serve_status(
                status_listener,
                gateway.clone(),
                node,
                stopped.clone(),
            )),
        ];
        let mut proxy_tls_addr = None;
        if let Some(addr) = settings.proxy_listen_tls {
            let listener = server::bind(addr, "proxy_listen_tls").await?;
            proxy_tls_addr = Some(listener.local_addr()?);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(gateway.clone()));
            tasks.push(tokio::spawn(server::serve_proxy(
                listener,
                Some(acceptor),
                gateway.clone(),
                stopped,
            )));
        }
        Ok(Self {
            gateway,
            proxy_addr,
            proxy_tls_addr,
            status_addr,
            settings,
            stop,
            tasks,
        })
    }

    /// Re-reads `declarative_config` (what SIGHUP does); a bad file leaves the running
    /// config in place and returns why.
    pub fn reload(&self) -> Result<(), ApplyError> {
        match &self.settings.declarative_config {
            Some(path) => self.gateway.apply_declarative_file(path).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the listeners.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// `fleetgate-dp`: runs until SIGINT/SIGTERM; SIGHUP reloads `declarative_config`.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let dp = DataPlane::start(settings).await?;
    tracing::info!(proxy = %dp.proxy_addr, status = %dp.status_addr, tls = ?dp.proxy_tls_addr, "data plane listening");
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("listen for SIGHUP")?;
        let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
        loop {
            tokio::select! {
                _ = hup.recv() => match dp.reload() {
                    Ok(()) => tracing::info!("reloaded declarative_config"),
                    Err(e) => tracing::error!(error = %e, "reload rejected; the running config stays"),
                },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    dp.shutdown().await;
    Ok(())
}
