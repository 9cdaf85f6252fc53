//! Node heartbeats (`ping`, `applied`) recorded in batches: every session writing its own row
//! per heartbeat made 1,000 nodes 2,000 single-row transactions per config change, and each
//! session waited for its write before it could forward the next push. Sessions now leave
//! the newest facts per node here and one task writes them all in one transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::store::{NodeHeartbeat, Store};

/// How long the writer gathers heartbeats before one transaction writes them.
const GATHER: Duration = Duration::from_millis(50);

/// The newest unwritten heartbeat of each node.
#[derive(Debug, Default)]
pub struct HeartbeatWriter {
    pending: Mutex<HashMap<(Uuid, Uuid), NodeHeartbeat>>,
    wake: Notify,
    /// Held while a batch is written, so a session's end can wait for a batch that may
    /// still mark its node connected, and write "disconnected" after it.
    flushing: tokio::sync::Mutex<()>,
}

impl HeartbeatWriter {
    /// Records a heartbeat; a newer one of the same node replaces it (keeping a buffer fill
    /// the newer one does not report).
    pub fn record(&self, beat: NodeHeartbeat) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (beat.control_plane_id, beat.node_id);
        let fill = beat
            .telemetry_buffer_fill
            .or_else(|| pending.get(&key).and_then(|b| b.telemetry_buffer_fill));
        pending.insert(
            key,
            NodeHeartbeat {
                telemetry_buffer_fill: fill,
                ..beat
            },
        );
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<NodeHeartbeat> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.drain().map(|(_, b)| b).collect()
    }

    /// Writes gathered heartbeats until `stop`, then once more.
    pub fn spawn(
        self: Arc<Self>,
        store: Arc<Store>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                tokio::time::sleep(GATHER).await;
                self.flush(&store).await;
            }
            self.flush(&store).await;
        })
    }

    /// Marks the node disconnected after any heartbeat of it still on its way to the store.
    pub async fn node_gone(&self, store: &Store, control_plane_id: Uuid, node_id: Uuid) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(control_plane_id, node_id));
        let _flushed = self.flushing.lock().await;
        if let Err(err) = store.set_node_disconnected(control_plane_id, node_id).await {
            tracing::warn!(node_id = %node_id, error = %err, "could not mark the node disconnected");
        }
    }

    async fn flush(&self, store: &Store) {
        let _flushing = self.flushing.lock().await;
        let beats = self.take();
        if beats.is_empty() {
            return;
        }
        if let Err(err) = store.record_node_heartbeats(&beats).await {
            tracing::warn!(nodes = beats.len(), error = %err, "could not record node heartbeats");
        }
    }
}
