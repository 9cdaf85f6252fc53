//! Fallback config in object storage (docs/architecture.md `cluster_fallback_config_*`): nodes with
//! export on write each config the control plane pushes to `s3://…` or `file:///…`; a brand-
//! new node with import on, no valid cache and an unreachable control plane starts from it.
//! Start-up order stays cache -> `declarative_config` -> fallback -> empty, and a control
//! plane push always replaces an imported config.

mod document;
mod export;
mod settings;
mod storage;

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

pub use document::{encode, major_minor, verify, ExportedConfig, Header};
pub use export::spawn_exporter;
pub use settings::{FallbackSettings, StorageUrl};
pub use storage::{FallbackStorage, Published};

use crate::cluster::ClusterState;
use crate::gateway::{ConfigSource, Gateway};

/// Largest fallback document read or written (same cap as a decompressed `reconfigure`).
pub const MAX_DOCUMENT_BYTES: usize = fleetgate_protocol::MAX_DECOMPRESSED_BYTES;

/// What `/status` shows under `fallback`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FallbackView {
    /// The object this node imports from / exports to.
    pub location: Option<String>,
    /// `waiting` (for the first dial to fail), `imported`, `failed`, `not_needed` (the control
    /// plane answered first); absent when import is off or a cache/declarative config loaded.
    pub import: Option<&'static str>,
    /// Why the import failed.
    pub import_error: Option<String>,
    /// Exports written by this node since it started.
    pub exports: u64,
    /// Hash of the last config this node wrote.
    pub last_export_hash: Option<String>,
    /// Why the last export failed (cleared by the next success).
    pub last_export_error: Option<String>,
}

/// Shared, updated by the import and the exporter, read by `/status`.
#[derive(Debug, Default)]
pub struct FallbackStatus(Mutex<FallbackView>);

impl FallbackStatus {
    /// A status for `location`.
    pub fn new(location: &str) -> Arc<Self> {
        Arc::new(Self(Mutex::new(FallbackView {
            location: Some(location.to_string()),
            ..FallbackView::default()
        })))
    }

    /// A copy for `/status`.
    pub fn view(&self) -> FallbackView {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FallbackView> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn import(&self, state: &'static str, error: Option<String>) {
        let mut view = self.lock();
        view.import = Some(state);
        view.import_error = error;
    }

    fn export_written(&self, hash: &str) {
        let mut view = self.lock();
        view.exports += 1;
        view.last_export_hash = Some(hash.to_string());
        view.last_export_error = None;
    }

    fn export_failed(&self, error: String) {
        self.lock().last_export_error = Some(error);
    }
}

/// The import at start-up, for a node that has nothing to run (no valid cache, no
/// `declarative_config`): waits until a dial to the control plane fails (at once for a
/// standalone node), then loads the fallback config unless a pushed config arrived first.
/// Every outcome marks the node ready; a failed import leaves it empty (404 for everything)
/// while it keeps dialling.
pub async fn import_at_start(
    storage: Arc<FallbackStorage>,
    gateway: Arc<Gateway>,
    cluster: Option<watch::Receiver<ClusterState>>,
    status: Arc<FallbackStatus>,
) {
    let empty = gateway.current();
    status.import("waiting", None);
    if let Some(mut state) = cluster {
        loop {
            if gateway.current().source != ConfigSource::Empty {
                status.import("not_needed", None);
                return;
            }
            let unreachable = {
                let s = state.borrow_and_update();
                !s.connected && s.last_error.is_some()
            };
            if unreachable {
                break;
            }
            if state.changed().await.is_err() {
                // The cluster client stopped (shutdown).
                return;
            }
        }
    }
    let location = storage.location().to_string();
    let outcome = match storage.read(MAX_DOCUMENT_BYTES).await {
        Err(e) => Err(format!("{e:#}")),
        Ok(None) => Err("there is no fallback object".to_string()),
        Ok(Some(bytes)) => tokio::task::spawn_blocking(move || verify(&bytes, MAX_DOCUMENT_BYTES))
            .await
            .unwrap_or_else(|e| Err(format!("checking the document panicked: {e}"))),
    };
    match outcome {
        Ok(document) => {
            let header = document.header;
            match gateway.apply_unless_replaced(
                &empty,
                document.config,
                ConfigSource::Fallback,
                Some(header.config_version),
                header.control_plane_id,
            ) {
                Ok(Some(hash)) => {
                    tracing::info!(%location, %hash, version = header.config_version, exported_by = %header.exported_by, "the control plane is unreachable; running the fallback config from storage");
                    status.import("imported", None);
                }
                Ok(None) => status.import("not_needed", None),
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(%location, %reason, "the fallback config does not compile; running without config until the control plane pushes one");
                    status.import("failed", Some(reason));
                }
            }
        }
        Err(reason) => {
            tracing::warn!(%location, %reason, "could not import the fallback config; running without config (404) until the control plane pushes one");
            status.import("failed", Some(reason));
        }
    }
    gateway.mark_loaded();
}
