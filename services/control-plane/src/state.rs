//! The state every request handler shares.

use std::sync::Arc;

use crate::snapshot::SnapshotCache;
use crate::store::Store;

/// Settings the API needs to describe itself (e.g. where data planes connect).
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `host:port` data planes dial, shown as a control plane's `control_plane_endpoint`.
    pub cluster_endpoint: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            cluster_endpoint: "127.0.0.1:8005".into(),
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
}

impl AppState {
    /// State over a connected store.
    pub fn new(store: Store, settings: ApiSettings) -> Self {
        Self {
            store: Arc::new(store),
            snapshots: Arc::new(SnapshotCache::default()),
            settings: Arc::new(settings),
        }
    }
}
