//! The state every request handler shares.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::cloud::{CloudSettings, CloudWake};
use crate::cluster::license::LicenseAuthority;
use crate::cluster::tls::{ClusterTls, ClusterTlsFlags};
use crate::cluster::ClusterHub;
use crate::snapshot::SnapshotCache;
use crate::store::Store;
use crate::telemetry::AnalyticsSettings;

/// Settings the API needs to describe itself (e.g. where data planes connect).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `host:port` data planes dial, shown as a control plane's `control_plane_endpoint`.
    pub cluster_endpoint: String,
    /// Where the cluster TLS material and the license signing key live (generated at first
    /// start). `None`: fresh ones in memory, for in-process servers that never restart.
    pub data_dir: Option<PathBuf>,
    /// Cluster TLS files given on the command line instead of the generated ones.
    pub cluster_tls: ClusterTlsFlags,
    /// Analytics retention and rollup cadence.
    pub analytics: AnalyticsSettings,
    /// Dedicated cloud gateways: `None` runs no reconciler (in-process servers of tests that
    /// do not provision anything).
    pub cloud: Option<CloudSettings>,
}

impl ApiSettings {
    /// The host part of `cluster_endpoint` (what data planes use as the server name).
    pub fn cluster_endpoint_host(&self) -> &str {
        let endpoint = self.cluster_endpoint.as_str();
        if let Some(rest) = endpoint.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        match endpoint.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => endpoint,
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            cluster_endpoint: "127.0.0.1:8005".into(),
            data_dir: None,
            cluster_tls: ClusterTlsFlags::default(),
            analytics: AnalyticsSettings::default(),
            cloud: None,
        }
    }
}

/// Cloneable handle to everything the API uses; cheap to clone (all `Arc`s).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<Store>,
    /// Built config snapshots, one per control plane and version.
    pub snapshots: Arc<SnapshotCache>,
    /// Static settings.
    pub settings: Arc<ApiSettings>,
    /// Connected data planes and the config frames pushed to them.
    pub cluster: Arc<ClusterHub>,
    /// The cluster listener's TLS material (its CA is shown on every control plane).
    pub cluster_tls: Arc<ClusterTls>,
    /// Signs each organisation's license.
    pub licenses: Arc<LicenseAuthority>,
    /// Wakes the cloud-gateway reconciler after a desired-state change.
    pub cloud_wake: Arc<CloudWake>,
}

impl AppState {
    /// State over a connected store; loads (or generates) the cluster TLS material and the
    /// license signing key.
    pub fn new(store: Store, settings: ApiSettings) -> anyhow::Result<Self> {
        let host = settings.cluster_endpoint_host().to_string();
        let (cluster_tls, licenses) = match &settings.data_dir {
            Some(dir) => (
                ClusterTls::load_or_generate(dir, &settings.cluster_tls, &host)
                    .context("load the cluster TLS material")?,
                LicenseAuthority::load_or_generate(dir).context("load the license signing key")?,
            ),
            None => (
                ClusterTls::ephemeral(&host).context("generate cluster TLS material")?,
                LicenseAuthority::ephemeral(),
            ),
        };
        let store = Arc::new(store);
        let snapshots = Arc::new(SnapshotCache::default());
        Ok(Self {
            cluster: Arc::new(ClusterHub::new(store.clone(), snapshots.clone())),
            cluster_tls: Arc::new(cluster_tls),
            licenses: Arc::new(licenses),
            store,
            snapshots,
            settings: Arc::new(settings),
            cloud_wake: Arc::new(CloudWake::default()),
        })
    }
}
