//! Data-plane nodes: what the cluster listener learned about each connected (or once connected)
//! node of a control plane.

use anyhow::Context;
use sqlx::Row;
use uuid::Uuid;

use super::organizations::parse_uuid;
use super::{now_unix, Store, StoreError, StoreResult};

/// Stored `sync_status` of a node that is served normally.
pub const NODE_STATUS_NORMAL: &str = "normal";
/// Stored `sync_status` of a node refused for version skew.
pub const NODE_STATUS_INCOMPATIBLE: &str = "incompatible";

/// A node row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node id (the DP's `node_id`).
    pub id: Uuid,
    /// The control plane it belongs to.
    pub control_plane_id: Uuid,
    /// The node's hostname.
    pub hostname: String,
    /// Node software version.
    pub version: String,
    /// Unix seconds of the last frame heard from the node.
    pub last_ping: i64,
    /// Hash of the config the node runs.
    pub config_hash: String,
    /// [`NODE_STATUS_NORMAL`] or [`NODE_STATUS_INCOMPATIBLE`].
    pub sync_status: String,
    /// Why the node is incompatible, when it is.
    pub sync_reason: Option<String>,
    /// The last config hash the node rejected.
    pub rejected_hash: Option<String>,
    /// The node's errors for `rejected_hash`.
    pub rejected_errors: Vec<String>,
    /// Whether a session is open right now.
    pub connected: bool,
    /// Expiry of the node's client certificate, Unix seconds.
    pub cert_expiry: Option<i64>,
    /// The registered dp-client-certificate the node connected with (for pki, the CA's).
    pub data_plane_cert_id: Option<Uuid>,
    /// First seen, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// Telemetry records the node dropped because its buffer was full (sum over its batches).
    pub telemetry_dropped: i64,
    /// Records waiting in the node's telemetry buffer at its last ping, if it reports it.
    pub telemetry_buffer_fill: Option<i64>,
}

/// What a node said about itself when it connected.
#[derive(Debug, Clone)]
pub struct NodeHello<'a> {
    /// Node id.
    pub id: Uuid,
    /// Control plane.
    pub control_plane_id: Uuid,
    /// Hostname.
    pub hostname: &'a str,
    /// Software version.
    pub version: &'a str,
    /// Config hash it runs.
    pub config_hash: &'a str,
    /// Expiry of its client certificate.
    pub cert_expiry: Option<i64>,
    /// The registered dp-client-certificate that admitted it.
    pub data_plane_cert_id: Uuid,
    /// `None` for a served node; the reason when refused for version skew.
    pub incompatible: Option<&'a str>,
    /// Whether a session stays open.
    pub connected: bool,
}

const COLUMNS: &str = "n.control_plane_id, n.id, n.hostname, n.version, n.last_ping, \
    n.config_hash, n.sync_status, n.sync_reason, n.rejected_hash, n.rejected_errors, \
    n.connected, n.cert_expiry, n.data_plane_cert_id, n.created_at, n.updated_at, n.telemetry_dropped, \
    n.telemetry_buffer_fill";

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<NodeRecord> {
    let errors: String = row.try_get("rejected_errors")?;
    Ok(NodeRecord {
        control_plane_id: parse_uuid(row.try_get("control_plane_id")?)?,
        id: parse_uuid(row.try_get("id")?)?,
        hostname: row.try_get("hostname")?,
        version: row.try_get("version")?,
        last_ping: row.try_get("last_ping")?,
        config_hash: row.try_get("config_hash")?,
        sync_status: row.try_get("sync_status")?,
        sync_reason: row.try_get("sync_reason")?,
        rejected_hash: row.try_get("rejected_hash")?,
        rejected_errors: serde_json::from_str(&errors).context("decode stored node errors")?,
        connected: row.try_get::<i64, _>("connected")? != 0,
        cert_expiry: row.try_get("cert_expiry")?,
        data_plane_cert_id: row
            .try_get::<Option<String>, _>("data_plane_cert_id")?
            .map(parse_uuid)
            .transpose()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        telemetry_dropped: row.try_get("telemetry_dropped")?,
        telemetry_buffer_fill: row.try_get("telemetry_buffer_fill")?,
    })
}

/// A node's heartbeat: it is alive at `at` and runs `config_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHeartbeat {
    /// Its control plane.
    pub control_plane_id: Uuid,
    /// The node.
    pub node_id: Uuid,
    /// The config it runs.
    pub config_hash: String,
    /// Records in its telemetry buffer, when it said.
    pub telemetry_buffer_fill: Option<u64>,
    /// When, Unix seconds.
    pub at: i64,
}

impl Store {
    /// Records a node that just said hello: creates its row or refreshes it, keeping what it
    /// rejected earlier so a reconnect does not bring that config back.
    pub async fn upsert_node(&self, hello: NodeHello<'_>) -> StoreResult<NodeRecord> {
        let now = now_unix();
        let (status, reason) = match hello.incompatible {
            Some(reason) => (NODE_STATUS_INCOMPATIBLE, Some(reason)),
            None => (NODE_STATUS_NORMAL, None),
        };
        sqlx::query(
            "INSERT INTO nodes (control_plane_id, id, hostname, version, last_ping, config_hash, \
             sync_status, sync_reason, rejected_hash, rejected_errors, connected, cert_expiry, \
             data_plane_cert_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, '[]', $9, $10, $11, $5, $5) \
             ON CONFLICT (control_plane_id, id) DO UPDATE SET hostname = $3, version = $4, \
             last_ping = $5, config_hash = $6, sync_status = $7, sync_reason = $8, \
             connected = $9, cert_expiry = $10, data_plane_cert_id = $11, updated_at = $5",
        )
        .bind(hello.control_plane_id.to_string())
        .bind(hello.id.to_string())
        .bind(hello.hostname)
        .bind(hello.version)
        .bind(now)
        .bind(hello.config_hash)
        .bind(status)
        .bind(reason)
        .bind(i64::from(hello.connected))
        .bind(hello.cert_expiry)
        .bind(hello.data_plane_cert_id.to_string())
        .execute(self.pool())
        .await?;
        self.node_unscoped(hello.control_plane_id, hello.id).await
    }

    async fn node_unscoped(&self, cp: Uuid, id: Uuid) -> StoreResult<NodeRecord> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM nodes n WHERE n.control_plane_id = $1 AND n.id = $2"
        ))
        .bind(cp.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound(format!("node {id}"))),
        }
    }

    /// Heartbeats of many nodes in one transaction (see `cluster::heartbeats`, which orders
    /// them before a session's "disconnected").
    pub async fn record_node_heartbeats(&self, beats: &[NodeHeartbeat]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for beat in beats {
            sqlx::query(
                "UPDATE nodes SET last_ping = $1, config_hash = $2, connected = 1, updated_at = $1, \
                 telemetry_buffer_fill = COALESCE($3, telemetry_buffer_fill) \
                 WHERE control_plane_id = $4 AND id = $5",
            )
            .bind(beat.at)
            .bind(&beat.config_hash)
            .bind(
                beat.telemetry_buffer_fill
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            )
            .bind(beat.control_plane_id.to_string())
            .bind(beat.node_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The node refused `rejected_hash` with these errors.
    pub async fn record_node_rejection(
        &self,
        cp: Uuid,
        id: Uuid,
        rejected_hash: &str,
        errors: &[String],
    ) -> StoreResult<()> {
        let now = now_unix();
        sqlx::query(
            "UPDATE nodes SET last_ping = $1, rejected_hash = $2, rejected_errors = $3, \
             updated_at = $1 WHERE control_plane_id = $4 AND id = $5",
        )
        .bind(now)
        .bind(rejected_hash)
        .bind(serde_json::to_string(errors).context("encode node errors")?)
        .bind(cp.to_string())
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The node's session ended.
    pub async fn set_node_disconnected(&self, cp: Uuid, id: Uuid) -> StoreResult<()> {
        sqlx::query(
            "UPDATE nodes SET connected = 0, updated_at = $1 \
             WHERE control_plane_id = $2 AND id = $3",
        )
        .bind(now_unix())
        .bind(cp.to_string())
        .bind(id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// At start-up no session is open yet, whatever a crashed predecessor left behind.
    ///
    /// With several replicas on one PostgreSQL database this also clears rows of sessions held
    /// by the other replicas; they set `connected` again on the node's next ping.
    pub async fn mark_all_nodes_disconnected(&self) -> StoreResult<u64> {
        let done = sqlx::query("UPDATE nodes SET connected = 0 WHERE connected <> 0")
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Removes nodes not heard from since `before` (Unix seconds); returns how many.
    pub async fn purge_nodes_unseen_since(&self, before: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM nodes WHERE last_ping < $1 AND connected = 0")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// The control plane's nodes in id order, after the cursor.
    pub async fn list_nodes(
        &self,
        org: Uuid,
        cp: Uuid,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<NodeRecord>> {
        self.control_plane(org, cp).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM nodes n WHERE n.control_plane_id = $1 AND n.id > $2 \
             ORDER BY n.id LIMIT $3"
        ))
        .bind(cp.to_string())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// How many nodes the control plane has (`page.total` of the list); the caller has
    /// already checked the control plane belongs to the organisation.
    pub async fn count_nodes(&self, cp: Uuid) -> StoreResult<i64> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE control_plane_id = $1")
                .bind(cp.to_string())
                .fetch_one(self.pool())
                .await?;
        Ok(total)
    }

    /// One node of one of the organisation's control planes.
    pub async fn node(&self, org: Uuid, cp: Uuid, id: Uuid) -> StoreResult<NodeRecord> {
        self.control_plane(org, cp).await?;
        self.node_unscoped(cp, id).await
    }

    /// Forgets a node (it reappears if it connects again).
    pub async fn delete_node(&self, org: Uuid, cp: Uuid, id: Uuid) -> StoreResult<()> {
        self.control_plane(org, cp).await?;
        let done = sqlx::query("DELETE FROM nodes WHERE control_plane_id = $1 AND id = $2")
            .bind(cp.to_string())
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("node {id}")));
        }
        Ok(())
    }

    /// The latest ping (Unix seconds) at or after `since` of a node of the control plane with
    /// one of these host names, if any: how the provisioner tells that a gateway node it
    /// launched has joined, and whether it has gone silent since.
    pub async fn node_last_ping_with_hostname(
        &self,
        cp: Uuid,
        hostnames: &[&str],
        since: i64,
    ) -> StoreResult<Option<i64>> {
        let mut latest: Option<i64> = None;
        for hostname in hostnames {
            let row = sqlx::query(
                "SELECT MAX(last_ping) AS last_ping FROM nodes WHERE control_plane_id = $1 \
                 AND hostname = $2 AND last_ping >= $3",
            )
            .bind(cp.to_string())
            .bind(*hostname)
            .bind(since)
            .fetch_one(self.pool())
            .await?;
            let ping: Option<i64> = row.try_get("last_ping")?;
            latest = latest.max(ping);
        }
        Ok(latest)
    }
}
