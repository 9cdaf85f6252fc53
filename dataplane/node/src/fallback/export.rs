//! The exporter: writes each config the control plane pushes to fallback storage, at most
//! once per `cluster_fallback_config_export_delay` window. Like Kong's exporter, a change
//! after a quiet window is written at once; changes inside a window wait for its end and
//! only the newest of them is written. A failed write is retried a window later.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::document::{self, ExportedConfig};
use super::storage::{FallbackStorage, Published};
use super::FallbackStatus;

/// Starts the exporter for the configs published on `applied`; it ends when the sender
/// (the cluster client) is gone.
pub fn spawn_exporter(
    storage: Arc<FallbackStorage>,
    delay: Duration,
    node_id: Uuid,
    mut applied: watch::Receiver<Option<Arc<ExportedConfig>>>,
    status: Arc<FallbackStatus>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_attempt: Option<Instant> = None;
        let mut exported: Option<String> = None;
        let mut retry = false;
        loop {
            if !retry && applied.changed().await.is_err() {
                break;
            }
            if let Some(at) = last_attempt {
                tokio::time::sleep_until(at + delay).await;
            }
            let Some(newest) = applied.borrow_and_update().clone() else {
                continue;
            };
            if exported.as_deref() == Some(newest.hash.as_str()) {
                retry = false;
                continue;
            }
            last_attempt = Some(Instant::now());
            match export(&storage, &newest, node_id).await {
                Ok(outcome) => {
                    retry = false;
                    exported = Some(newest.hash.clone());
                    match outcome {
                        Published::Written => {
                            tracing::info!(location = storage.location(), config_hash = %newest.hash, version = newest.version, "exported the fallback config");
                            status.export_written(&newest.hash);
                        }
                        Published::Unchanged => {
                            tracing::debug!(location = storage.location(), config_hash = %newest.hash, "the fallback object already holds this config")
                        }
                        Published::NewerPresent(version) => {
                            tracing::info!(
                                location = storage.location(),
                                ours = newest.version,
                                stored = version,
                                "another node already exported a newer config; not overwriting it"
                            )
                        }
                    }
                }
                Err(e) => {
                    retry = true;
                    let error = format!("{e:#}");
                    tracing::warn!(location = storage.location(), config_hash = %newest.hash, %error, retry_in = ?delay, "could not export the fallback config");
                    status.export_failed(error);
                }
            }
        }
    })
}

async fn export(
    storage: &FallbackStorage,
    config: &ExportedConfig,
    node_id: Uuid,
) -> anyhow::Result<Published> {
    let now = crate::license::now_unix();
    let document = document::encode(config, node_id, now)?;
    storage
        .publish(config, document, super::MAX_DOCUMENT_BYTES)
        .await
}
