//! Fleetgate's data-plane node: a gateway proxy that runs a gateway config (from a
//! `declarative_config` file now; pushed by the control plane in clustered mode).

pub mod balancer;
pub mod cache;
pub mod cluster;
pub mod connector;
pub mod fallback;
pub mod fastpath;
pub mod gateway;
pub mod idle;
pub mod license;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod settings;
pub mod status;
pub mod telemetry;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

pub use cluster::{ClientSettings, ClusterClient, ClusterHandle, ClusterState};
pub use gateway::{ApplyError, ConfigSource, Gateway};

/// The proxy and config apply are allocation-heavy (headers, parsed configs); mimalloc's
/// per-thread caches measured clearly faster than glibc malloc here, and it suits the
/// one-event-loop-per-worker design.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// The cluster client, when `cluster_control_plane` is set.
    pub cluster: Option<ClusterHandle>,
    settings: Settings,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Fallback import/export: stopped, not awaited, at shutdown (an export window may be
    /// a minute long).
    fallback_tasks: Vec<tokio::task::JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
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
        let mut node = status::NodeInfo {
            node_id: node_id(&settings.prefix)?,
            hostname: hostname(),
            version: env!("CARGO_PKG_VERSION"),
            cluster: None,
            fallback: None,
        };
        // Read the cluster material before anything binds, so a bad file fails start-up. A
        // node with only a join token enrols in the background (below), so the proxy serves
        // whatever config it has while the control plane is unreachable.
        let (cluster_settings, enrolment) = cluster::enrol::prepare(&settings, &node.hostname)?;
        let client_settings = match enrolment {
            Some(_) => None,
            None => ClientSettings::from_settings(&cluster_settings)?,
        };
        let gateway = Gateway::with_telemetry(telemetry::TelemetrySettings {
            buffer_limit: settings.analytics_buffer_size_limit,
            flush_interval: settings.analytics_flush_interval,
        })?;
        // Keeps the buffer bounded even while no control plane session drains it.
        gateway.telemetry.start_flusher();
        load_license(&gateway, &settings.prefix);
        let loaded = load_startup_config(&gateway, &settings)?;
        let fallback_storage = open_fallback_storage(&settings)?;
        node.fallback = fallback_storage
            .as_ref()
            .map(|storage| fallback::FallbackStatus::new(storage.location()));
        // Dial the control plane regardless of what was loaded: a pushed config always
        // replaces a local one.
        let cluster = match (client_settings, enrolment) {
            (Some(client), _) => Some(ClusterClient::spawn(
                client,
                gateway.clone(),
                settings.prefix.clone(),
                node.clone(),
            )),
            (None, Some(enrolment)) => Some(ClusterClient::spawn_enrolling(
                enrolment,
                cluster_settings,
                gateway.clone(),
                node.clone(),
            )),
            (None, None) => None,
        };
        node.cluster = cluster.as_ref().map(ClusterHandle::state);
        let mut fallback_tasks = Vec::new();
        if let (Some(storage), Some(status)) = (&fallback_storage, &node.fallback) {
            if settings.fallback.import && !loaded {
                fallback_tasks.push(tokio::spawn(fallback::import_at_start(
                    storage.clone(),
                    gateway.clone(),
                    cluster.as_ref().map(ClusterHandle::state),
                    status.clone(),
                )));
            }
            match (&cluster, settings.fallback.export) {
                (Some(cluster), true) => fallback_tasks.push(fallback::spawn_exporter(
                    storage.clone(),
                    settings.fallback.export_delay,
                    node.node_id,
                    cluster.applied(),
                    status.clone(),
                )),
                (None, true) => tracing::warn!(
                    "cluster_fallback_config_export is on but this node has no cluster_control_plane: only configs pushed by a control plane are exported"
                ),
                _ => {}
            }
        }
        // With an import pending, the node is ready once the import has had its chance (the
        // import logs its own outcome).
        let import_pending = settings.fallback.import && fallback_storage.is_some();
        if !loaded && !import_pending {
            tracing::info!("no cached, declarative or fallback config: every request gets 404 until the control plane pushes one");
            gateway.mark_loaded();
        }
        let node = Arc::new(node);
        let (stop, stopped) = watch::channel(false);
        let workers = settings.proxy_workers.max(1);
        let (proxy_listeners, proxy_addr) =
            server::bind_shared(settings.proxy_listen, workers, "proxy_listen").await?;
        let (mut tls_listeners, proxy_tls_addr) = match settings.proxy_listen_tls {
            Some(addr) => {
                let (listeners, bound) =
                    server::bind_shared(addr, workers, "proxy_listen_tls").await?;
                (listeners.into_iter().map(Some).collect(), Some(bound))
            }
            None => (Vec::new(), None),
        };
        tls_listeners.resize_with(workers, || None);
        let status_listener = server::bind(settings.status_listen, "status_listen").await?;
        let status_addr = status_listener.local_addr()?;
        let tasks = vec![tokio::spawn(server::serve_status(
            status_listener,
            gateway.clone(),
            node,
            stopped.clone(),
        ))];
        let tls_config = proxy_tls_addr.map(|_| tls::server_config(gateway.clone()));
        let mut workers_threads = Vec::with_capacity(workers);
        for (i, (listener, tls_listener)) in
            proxy_listeners.into_iter().zip(tls_listeners).enumerate()
        {
            let tls = tls_listener.zip(tls_config.clone());
            workers_threads.push(server::spawn_worker(
                i,
                listener,
                tls,
                gateway.clone(),
                stopped.clone(),
            )?);
        }
        Ok(Self {
            gateway,
            proxy_addr,
            proxy_tls_addr,
            status_addr,
            cluster,
            settings,
            stop,
            tasks,
            fallback_tasks,
            workers: workers_threads,
        })
    }

    /// Re-reads `declarative_config` (what SIGHUP does); a bad file leaves the running
    /// config in place and returns why. A config from the control plane (pushed or cached)
    /// is never replaced by the local file.
    pub fn reload(&self) -> Result<(), ApplyError> {
        let Some(path) = &self.settings.declarative_config else {
            return Ok(());
        };
        let source = self.gateway.current().source;
        if matches!(source, ConfigSource::Cp | ConfigSource::Cache) {
            tracing::warn!(
                ?source,
                file = %path.display(),
                "not reloading declarative_config: the running config came from the control plane, which always wins"
            );
            return Ok(());
        }
        self.gateway.apply_declarative_file(path).map(|_| ())
    }

    /// Resolves with a one-line reason if the cluster client gave up for good (its join
    /// token was refused); never resolves otherwise.
    pub async fn cluster_failed(&self) -> String {
        match &self.cluster {
            Some(cluster) => cluster.failed().await,
            None => std::future::pending().await,
        }
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the listeners.
    pub async fn shutdown(self) {
        for task in &self.fallback_tasks {
            task.abort();
        }
        if let Some(cluster) = self.cluster {
            cluster.shutdown().await;
        }
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
    }
}

/// Start-up order (docs/architecture.md): a valid cache, then `declarative_config`; false when neither
/// gave a config (fallback storage, then empty, come next). A corrupt cache is moved aside by
/// [`cache::load`] and the next source is tried.
fn load_startup_config(gateway: &Gateway, settings: &Settings) -> anyhow::Result<bool> {
    match cache::load(&settings.prefix) {
        cache::CacheLoad::Valid(valid) => {
            let cache::ValidCache {
                version,
                hash,
                config,
            } = *valid;
            let control_plane = telemetry::load_control_plane_id(&settings.prefix);
            match gateway.apply_from_control_plane(
                config,
                ConfigSource::Cache,
                Some(version),
                control_plane,
            ) {
                Ok(_) => {
                    tracing::info!(%hash, version, "running the cached config from the control plane");
                    return Ok(true);
                }
                // Intact but not compilable by this build (e.g. written by another version):
                // treat like a bad cache and fall through.
                Err(e) => {
                    tracing::warn!(error = %e, "the cached config does not compile; trying the next source")
                }
            }
        }
        cache::CacheLoad::Missing => {}
        // Already logged (file and reason) when it was moved aside.
        cache::CacheLoad::Corrupt { .. } => {}
    }
    if let Some(path) = &settings.declarative_config {
        gateway.apply_declarative_file(path)?;
        return Ok(true);
    }
    Ok(false)
}

/// Opens `cluster_fallback_config_storage` when import or export uses it; a storage that
/// cannot be opened (bad directory, bad S3 settings) fails start-up naming it.
fn open_fallback_storage(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<fallback::FallbackStorage>>> {
    let fallback = &settings.fallback;
    match &fallback.storage {
        Some(url) if fallback.import || fallback.export => Ok(Some(Arc::new(
            fallback::FallbackStorage::open(url).context("cluster_fallback_config_storage")?,
        ))),
        _ => Ok(None),
    }
}

/// Installs the license stored with the cache, if any; a bad file is logged and ignored.
fn load_license(gateway: &Gateway, prefix: &Path) {
    match cache::read_license(prefix) {
        Ok(None) => {}
        Ok(Some(blob)) => match fleetgate_protocol::verify_license(&blob) {
            Ok(claims) => gateway.license.set(claims),
            Err(e) => {
                tracing::warn!(file = %prefix.join(cache::LICENSE_FILE).display(), error = %e, "ignoring the stored license")
            }
        },
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "ignoring the stored license"),
    }
}

/// `fleetgate-dp`: runs until SIGINT/SIGTERM; SIGHUP reloads `declarative_config`.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let dp = DataPlane::start(settings).await?;
    let mut failure = None;
    tracing::info!(proxy = %dp.proxy_addr, status = %dp.status_addr, tls = ?dp.proxy_tls_addr, "data plane listening");
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("listen for SIGHUP")?;
        let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
        loop {
            tokio::select! {
                _ = hup.recv() => match dp.reload() {
                    Ok(()) => tracing::info!("SIGHUP handled"),
                    Err(e) => tracing::error!(error = %e, "reload rejected; the running config stays"),
                },
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                reason = dp.cluster_failed() => {
                    failure = Some(reason);
                    break;
                }
            }
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        reason = dp.cluster_failed() => failure = Some(reason),
    }
    dp.shutdown().await;
    match failure {
        // A node that can never join (its join token was refused) exits non-zero.
        Some(reason) => Err(anyhow::anyhow!(reason)),
        None => Ok(()),
    }
}

/// The machine's host name, as the control plane's `/nodes` shows it: `$HOSTNAME` when set
/// (containers set it), else the kernel's (`$HOSTNAME` is a shell variable most service
/// managers do not export), else `localhost`.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
