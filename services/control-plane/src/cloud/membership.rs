//! What the dataplane-group reconciler asks the control plane: a join token for each launch,
//! and when a launched node last pinged (never, or how long ago: a node silent for the
//! connect deadline is replaced).

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use fleetgate_provisioner::reconcile::{ClusterMembership, NodeContact};
use fleetgate_provisioner::types::{DataplaneGroupSpec, ObservedNode};
use uuid::Uuid;

use crate::store::{NewJoinToken, Store};

/// Membership of one organisation's groups, answered from the store.
pub(super) struct StoreMembership<'a> {
    pub store: &'a Store,
    pub organization_id: Uuid,
    pub join_token_ttl: std::time::Duration,
}

#[async_trait]
impl ClusterMembership for StoreMembership<'_> {
    async fn join_token(&self, group: &DataplaneGroupSpec, slot: u32) -> anyhow::Result<String> {
        let (record, token) = self
            .store
            .create_join_token(
                self.organization_id,
                group.control_plane_id,
                NewJoinToken {
                    ttl: self.join_token_ttl,
                    configuration_id: Some(group.configuration_id),
                    slot: Some(slot),
                },
            )
            .await?;
        tracing::info!(
            token_id = %record.id,
            configuration_id = %group.configuration_id,
            slot,
            "issued a join token for a gateway node launch"
        );
        Ok(token)
    }

    async fn last_contact(&self, group: &DataplaneGroupSpec, node: &ObservedNode) -> NodeContact {
        let Some(hostname) = node.hostname.as_deref() else {
            return NodeContact::Never;
        };
        // A cloud instance reports its OS host name, the first label of its private DNS name.
        let short = hostname.split('.').next().unwrap_or(hostname);
        let since = node
            .launched_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match self
            .store
            .node_last_ping_with_hostname(group.control_plane_id, &[hostname, short], since)
            .await
        {
            Ok(None) => NodeContact::Never,
            Ok(Some(ping)) => NodeContact::LastPing(
                UNIX_EPOCH + Duration::from_secs(u64::try_from(ping).unwrap_or_default()),
            ),
            Err(e) => {
                // Unknown is not "silent": a store hiccup must not get a healthy node replaced.
                tracing::warn!(error = %e, instance_id = %node.instance_id, "could not check whether a gateway node connected");
                NodeContact::Unknown
            }
        }
    }
}
