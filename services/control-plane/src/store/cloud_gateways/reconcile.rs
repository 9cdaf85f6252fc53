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

/// Sets a row's reason and nothing else.
async fn write_reason(store: &Store, table: &str, id: Uuid, reason: &str) -> StoreResult<()> {
    sqlx::query(&format!(
        "UPDATE {table} SET state_reason = $1, updated_at = $2 WHERE id = $3"
    ))
    .bind(reason)
    .bind(store.clock().now())
    .bind(id.to_string())
    .execute(store.pool())
    .await?;
    Ok(())
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
    /// Shows why the last pass over a network failed, keeping its state (the next pass
    /// retries, and its observation replaces the reason).
    pub async fn record_network_failure(&self, id: Uuid, reason: &str) -> StoreResult<()> {
        write_reason(self, "cloud_networks", id, reason).await
    }

    /// As [`Store::record_network_failure`], for a dataplane group.
    pub async fn record_dataplane_group_failure(&self, id: Uuid, reason: &str) -> StoreResult<()> {
        write_reason(self, "cloud_dataplane_groups", id, reason).await
    }

    /// As [`Store::record_network_failure`], for a transit-gateway attachment.
    pub async fn record_transit_gateway_failure(&self, id: Uuid, reason: &str) -> StoreResult<()> {
        write_reason(self, "cloud_transit_gateways", id, reason).await
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
        let now = self.clock().now();
        let mut tx = self.pool().begin().await?;
        let found = sqlx::query("UPDATE cloud_networks SET provider_metadata = $1 WHERE id = $2")
            .bind(to_json(&report.observed, "network provider metadata")?)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("network {id}")));
        }
        let taken = write_state(
            &mut tx,
            "cloud_networks",
            id,
            report.state.as_str(),
            report.reason.as_deref(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Removes a network whose cloud resources are gone (it must be terminating or
    /// terminated); answers whether a row was removed.
    pub async fn remove_network(&self, id: Uuid) -> StoreResult<bool> {
        let mut conn = self.pool().acquire().await?;
        remove_finished(&mut conn, "cloud_networks", id).await
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
        let now = self.clock().now();
        let mut tx = self.pool().begin().await?;
        let found =
            sqlx::query("UPDATE cloud_transit_gateways SET provider_metadata = $1 WHERE id = $2")
                .bind(to_json(
                    &report.observed,
                    "transit gateway provider metadata",
                )?)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("transit gateway {id}")));
        }
        let taken = write_state(
            &mut tx,
            "cloud_transit_gateways",
            id,
            report.state.as_str(),
            report.reason.as_deref(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Removes an attachment whose routes and provider attachment are gone.
    pub async fn remove_transit_gateway(&self, id: Uuid) -> StoreResult<bool> {
        let mut conn = self.pool().acquire().await?;
        remove_finished(&mut conn, "cloud_transit_gateways", id).await
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
        let now = self.clock().now();
        let mut tx = self.pool().begin().await?;
        let found = sqlx::query("UPDATE cloud_dataplane_groups SET nodes = $1 WHERE id = $2")
            .bind(to_json(&report.nodes, "dataplane group nodes")?)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("dataplane group {id}")));
        }
        let taken = write_state(
            &mut tx,
            "cloud_dataplane_groups",
            id,
            report.state.as_str(),
            report.reason.as_deref(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// Removes a dataplane group whose nodes are gone, and its configuration too when that
    /// was deleted and this was its last group. Answers whether the group was removed.
    pub async fn remove_dataplane_group(&self, id: Uuid) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query("SELECT configuration_id FROM cloud_dataplane_groups WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let configuration: String = sqlx::Row::try_get(&row, "configuration_id")?;
        if !remove_finished(&mut tx, "cloud_dataplane_groups", id).await? {
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
