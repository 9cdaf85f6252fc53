//! What the reconciler driver reads and writes: every row that is not terminated yet, the
//! observed state of a pass, and the removal of rows whose cloud resources are gone.
//!
//! An observation never moves a `terminating` (or `terminated`) row to another state: a pass
//! that started before the user's delete must not undo it. Provider metadata and nodes are
//! written either way, since they describe what exists.

use fleetgate_provisioner::types::{DataplaneGroupReport, NetworkReport, TransitGatewayReport};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::super::{Store, StoreError, StoreResult};
use super::configurations::{group_from_row, DataplaneGroupRecord, GROUP_SELECT};
use super::networks::{self, NetworkRecord};
use super::transit_gateways::{self, TransitGatewayRecord};
use super::{to_json, TERMINATED, TERMINATING};

/// The kinds of rows the reconciler drives, and where each keeps what it observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudResource {
    /// `cloud_networks` (observed: `provider_metadata`).
    Network,
    /// `cloud_dataplane_groups` (observed: `nodes`).
    DataplaneGroup,
    /// `cloud_transit_gateways` (observed: `provider_metadata`).
    TransitGateway,
}

impl CloudResource {
    /// The name logs and errors use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::DataplaneGroup => "dataplane group",
            Self::TransitGateway => "transit gateway",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Network => "cloud_networks",
            Self::DataplaneGroup => "cloud_dataplane_groups",
            Self::TransitGateway => "cloud_transit_gateways",
        }
    }

    /// The JSON column a pass's observation goes to.
    fn observed_column(self) -> &'static str {
        match self {
            Self::DataplaneGroup => "nodes",
            Self::Network | Self::TransitGateway => "provider_metadata",
        }
    }
}

/// Writes an observed state into `table`, unless the row is terminating (or terminated) and the
/// new state would move it elsewhere. Answers whether the state was written.
async fn write_state(
    conn: &mut AnyConnection,
    table: &str,
    id: Uuid,
    state: &str,
    reason: Option<&str>,
    now: i64,
) -> StoreResult<bool> {
    let guard = if matches!(state, TERMINATING | TERMINATED) {
        ""
    } else {
        " AND state <> 'terminating' AND state <> 'terminated'"
    };
    let done = sqlx::query(&format!(
        "UPDATE {table} SET state = $1, state_reason = $2, updated_at = $3 WHERE id = $4{guard}"
    ))
    .bind(state)
    .bind(reason)
    .bind(now)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the row of `table` if it is terminating or terminated; answers whether it did.
async fn remove_finished(conn: &mut AnyConnection, table: &str, id: Uuid) -> StoreResult<bool> {
    let done = sqlx::query(&format!(
        "DELETE FROM {table} WHERE id = $1 AND (state = $2 OR state = $3)"
    ))
    .bind(id.to_string())
    .bind(TERMINATING)
    .bind(TERMINATED)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// Shows why the last pass over a row failed, keeping its state (the next pass retries,
    /// and its observation replaces the reason).
    pub async fn record_reconcile_failure(
        &self,
        resource: CloudResource,
        id: Uuid,
        reason: &str,
    ) -> StoreResult<()> {
        sqlx::query(&format!(
            "UPDATE {} SET state_reason = $1, updated_at = $2 WHERE id = $3",
            resource.table()
        ))
        .bind(reason)
        .bind(self.clock().now())
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a reconcile pass over one row: what it observed (JSON) and, unless the row is
    /// going away and the state would move it back, its state and reason — in one
    /// transaction. Answers whether the state was taken.
    async fn record_observation<T: serde::Serialize + ?Sized>(
        &self,
        resource: CloudResource,
        id: Uuid,
        observed: &T,
        state: &str,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(&format!(
            "UPDATE {} SET {} = $1 WHERE id = $2",
            resource.table(),
            resource.observed_column()
        ))
        .bind(to_json(
            observed,
            &format!(
                "{} {}",
                resource.as_str(),
                resource.observed_column().replace('_', " ")
            ),
        )?)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("{} {id}", resource.as_str())));
        }
        let taken = write_state(&mut tx, resource.table(), id, state, reason, now).await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Every network of every organisation that is not terminated, in id order.
    pub async fn networks_to_reconcile(&self) -> StoreResult<Vec<NetworkRecord>> {
        let rows = sqlx::query(&format!(
            "{} WHERE n.state <> $1 ORDER BY n.id",
            networks::SELECT
        ))
        .bind(TERMINATED)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(networks::from_row).collect()
    }

    /// Records a network reconcile pass; answers whether the state was taken (false when the
    /// network was deleted meanwhile and the pass reported a non-terminal state).
    pub async fn record_network_observation(
        &self,
        id: Uuid,
        report: &NetworkReport,
    ) -> StoreResult<bool> {
        self.record_observation(
            CloudResource::Network,
            id,
            &report.observed,
            report.state.as_str(),
            report.reason.as_deref(),
        )
        .await
    }

    /// Removes a network whose cloud resources are gone (it must be terminating or
    /// terminated); answers whether a row was removed.
    pub async fn remove_network(&self, id: Uuid) -> StoreResult<bool> {
        let mut conn = self.pool().acquire().await?;
        remove_finished(&mut conn, CloudResource::Network.table(), id).await
    }

    /// Every transit-gateway attachment that is not terminated, in id order.
    pub async fn transit_gateways_to_reconcile(&self) -> StoreResult<Vec<TransitGatewayRecord>> {
        let rows = sqlx::query(&format!(
            "{} WHERE t.state <> $1 ORDER BY t.id",
            transit_gateways::SELECT
        ))
        .bind(TERMINATED)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(transit_gateways::from_row).collect()
    }

    /// Records a transit-gateway reconcile pass; answers whether the state was taken.
    pub async fn record_transit_gateway_observation(
        &self,
        id: Uuid,
        report: &TransitGatewayReport,
    ) -> StoreResult<bool> {
        self.record_observation(
            CloudResource::TransitGateway,
            id,
            &report.observed,
            report.state.as_str(),
            report.reason.as_deref(),
        )
        .await
    }

    /// Removes an attachment whose routes and provider attachment are gone.
    pub async fn remove_transit_gateway(&self, id: Uuid) -> StoreResult<bool> {
        let mut conn = self.pool().acquire().await?;
        remove_finished(&mut conn, CloudResource::TransitGateway.table(), id).await
    }

    /// Every dataplane group that is not terminated (groups of deleted configurations
    /// included: they are terminating), in id order.
    pub async fn dataplane_groups_to_reconcile(&self) -> StoreResult<Vec<DataplaneGroupRecord>> {
        let rows = sqlx::query(&format!("{GROUP_SELECT} WHERE state <> $1 ORDER BY id"))
            .bind(TERMINATED)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(group_from_row).collect()
    }

    /// Records a dataplane-group reconcile pass (state, reason and the live nodes); answers
    /// whether the state was taken.
    pub async fn record_dataplane_group_observation(
        &self,
        id: Uuid,
        report: &DataplaneGroupReport,
    ) -> StoreResult<bool> {
        self.record_observation(
            CloudResource::DataplaneGroup,
            id,
            &report.nodes,
            report.state.as_str(),
            report.reason.as_deref(),
        )
        .await
    }

    /// Removes a dataplane group whose nodes are gone, and its configuration too when that
    /// was deleted and this was its last group. Answers whether the group was removed.
    pub async fn remove_dataplane_group(&self, id: Uuid) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT configuration_id FROM cloud_dataplane_groups WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let configuration: String = sqlx::Row::try_get(&row, "configuration_id")?;
        if !remove_finished(&mut tx, CloudResource::DataplaneGroup.table(), id).await? {
            return Ok(false);
        }
        sqlx::query(
            "DELETE FROM cloud_configurations WHERE id = $1 AND deleted_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM cloud_dataplane_groups g \
             WHERE g.configuration_id = $2)",
        )
        .bind(&configuration)
        .bind(&configuration)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes configurations that were deleted and have no groups left (e.g. one deleted
    /// while it had none); answers how many.
    pub async fn remove_finished_configurations(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM cloud_configurations WHERE deleted_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM cloud_dataplane_groups g \
             WHERE g.configuration_id = cloud_configurations.id)",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
