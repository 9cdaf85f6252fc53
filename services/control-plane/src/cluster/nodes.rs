//! Node bookkeeping outside a session: the sync status shown by `/nodes`, the clean-up at
//! start-up and the purge of nodes gone for long.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{now_unix, NodeRecord, Store, NODE_STATUS_INCOMPATIBLE};

/// Konnect's sync status of a node, derived from its row and the control plane's latest hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Runs the latest config.
    InSync,
    /// Runs an older config (or has not reported the latest yet).
    OutOfSync,
    /// Refused the latest config; see `errors`.
    Rejected,
    /// Refused by the control plane for version skew; see `sync_reason`.
    Incompatible,
}

/// The node's sync status against `latest_hash`.
pub fn sync_status(node: &NodeRecord, latest_hash: &str) -> SyncStatus {
    if node.sync_status == NODE_STATUS_INCOMPATIBLE {
        SyncStatus::Incompatible
    } else if node.config_hash == latest_hash {
        SyncStatus::InSync
    } else if node.rejected_hash.as_deref() == Some(latest_hash) {
        SyncStatus::Rejected
    } else {
        SyncStatus::OutOfSync
    }
}

/// No session survives a restart: clears `connected` left set by a crashed control plane.
pub async fn mark_all_disconnected(store: &Store) -> anyhow::Result<()> {
    let cleared = store.mark_all_nodes_disconnected().await?;
    if cleared > 0 {
        tracing::info!(
            nodes = cleared,
            "marked nodes of the previous run disconnected"
        );
    }
    Ok(())
}

/// Removes nodes unseen for longer than `purge_after`, checking a few times per period (at
/// least every hour), until `stop` turns true. Join tokens expired for over a day go in the
/// same pass.
pub fn spawn_purge(
    store: Arc<Store>,
    purge_after: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let every = (purge_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let purge_secs = i64::try_from(purge_after.as_secs()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        loop {
            match store
                .purge_nodes_unseen_since(now_unix().saturating_sub(purge_secs))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(nodes = n, "purged nodes unseen for {purge_after:?}"),
                Err(err) => tracing::warn!(error = %err, "could not purge old nodes"),
            }
            match store.delete_expired_join_tokens().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tokens = n, "deleted join tokens expired over a day ago"),
                Err(err) => tracing::warn!(error = %err, "could not delete expired join tokens"),
            }
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// Resolves once `stop` turns true (or its sender is gone). Returns `()` rather than the
/// `watch::Ref`, which holds a lock and must not live across an await.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
