//! What every control-plane bench starts from: a fresh store (SQLite in a temp dir, or the
//! PostgreSQL server named by `FLEETGATE_BENCH_DATABASE_URL`) holding one organisation and
//! one control plane.

use fleetgate_control_plane::store::{NewControlPlane, Store};
use uuid::Uuid;

/// A store with one organisation and one control plane in it.
pub struct BenchStore {
    pub store: Store,
    pub org: Uuid,
    pub cp: Uuid,
    /// Keeps the SQLite file alive for the bench's duration.
    pub _dir: tempfile::TempDir,
}

/// Opens the store and creates the organisation and control plane.
pub async fn bench_store() -> BenchStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = match std::env::var("FLEETGATE_BENCH_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => Store::sqlite_url_in(dir.path()),
    };
    let store = Store::connect(&url).await.expect("connect");
    let org = store
        .ensure_organization(&format!("bench-{}", Uuid::new_v4()))
        .await
        .expect("org");
    let cp = store
        .create_control_plane(
            org.id,
            NewControlPlane {
                name: "bench".into(),
                description: String::new(),
                labels: Default::default(),
                cluster_type: "CLUSTER_TYPE_CONTROL_PLANE".into(),
                auth_type: "pinned_client_certs".into(),
                cloud_gateway: false,
                proxy_urls: Vec::new(),
            },
        )
        .await
        .expect("cp");
    BenchStore {
        store,
        org: org.id,
        cp: cp.id,
        _dir: dir,
    }
}
