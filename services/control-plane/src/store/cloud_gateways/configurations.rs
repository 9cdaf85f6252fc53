//! Cloud-gateway configurations: per control plane, the whole desired set of dataplane
//! groups. A PUT replaces the set: a group whose network is still wanted keeps its id, state
//! and nodes and takes the new autoscale settings; a new network gets a new group; a group no
//! longer wanted becomes `terminating` until the reconciler has removed its nodes.

use std::collections::HashMap;

use fleetgate_provisioner::state::DataplaneGroupState;
use fleetgate_provisioner::types::{DataplaneGroupSpec, NodeBootstrap, ObservedNode};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::super::organizations::parse_uuid;
use super::super::{Store, StoreError, StoreResult};
use super::networks::claim_network;
use super::{from_json, parse_state, CloudProvider, TERMINATED, TERMINATING};

/// A configuration as the API shows it.
#[derive(Debug, Clone)]
pub struct ConfigurationRecord {
    /// Fleetgate id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// The control plane whose config the nodes run (one configuration each).
    pub control_plane_id: Uuid,
    /// Bumped by every PUT.
    pub version: i64,
    /// Its groups, including ones still terminating.
    pub dataplane_groups: Vec<DataplaneGroupRecord>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// A stored dataplane group with its last observed state.
#[derive(Debug, Clone)]
pub struct DataplaneGroupRecord {
    /// Fleetgate id.
    pub id: Uuid,
    /// The configuration it belongs to.
    pub configuration_id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// The control plane the nodes join.
    pub control_plane_id: Uuid,
    /// Where the nodes run.
    pub provider: CloudProvider,
    /// Provider region (equal to the network's).
    pub region: String,
    /// The network the nodes run in.
    pub network_id: Uuid,
    /// Provider instance type.
    pub instance_type: String,
    /// How many nodes should run.
    pub requested_instances: u32,
    /// Last state.
    pub state: DataplaneGroupState,
    /// Why, when that needs saying.
    pub reason: Option<String>,
    /// The live nodes the reconciler last observed.
    pub nodes: Vec<ObservedNode>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl DataplaneGroupRecord {
    /// The desired state the dataplane-group reconciler converges to; a terminating group
    /// wants no nodes.
    pub fn spec(&self, bootstrap: NodeBootstrap) -> DataplaneGroupSpec {
        let terminating = matches!(self.state.as_str(), TERMINATING | TERMINATED);
        DataplaneGroupSpec {
            configuration_id: self.configuration_id,
            control_plane_id: self.control_plane_id,
            region: self.region.clone(),
            network_id: self.network_id,
            instance_type: self.instance_type.clone(),
            requested_instances: if terminating {
                0
            } else {
                self.requested_instances
            },
            bootstrap,
        }
    }
}

/// The whole desired state of a PUT (shape-checked by the API; references are checked here).
#[derive(Debug, Clone)]
pub struct DesiredConfiguration {
    /// The control plane, which must be the organisation's.
    pub control_plane_id: Uuid,
    /// At most one group per network.
    pub dataplane_groups: Vec<DesiredDataplaneGroup>,
}

/// One desired dataplane group.
#[derive(Debug, Clone)]
pub struct DesiredDataplaneGroup {
    /// Must equal the network's provider.
    pub provider: CloudProvider,
    /// Must equal the network's region.
    pub region: String,
    /// A network of the organisation that is not going away.
    pub network_id: Uuid,
    /// Provider instance type.
    pub instance_type: String,
    /// How many nodes should run.
    pub requested_instances: u32,
}

pub(super) const GROUP_SELECT: &str = "SELECT id, configuration_id, organization_id, \
    control_plane_id, provider, region, network_id, instance_type, requested_instances, state, \
    state_reason, nodes, created_at, updated_at FROM cloud_dataplane_groups";

pub(super) fn group_from_row(row: &sqlx::any::AnyRow) -> StoreResult<DataplaneGroupRecord> {
    let provider: String = row.try_get("provider")?;
    let requested: i64 = row.try_get("requested_instances")?;
    Ok(DataplaneGroupRecord {
        id: parse_uuid(row.try_get("id")?)?,
        configuration_id: parse_uuid(row.try_get("configuration_id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        control_plane_id: parse_uuid(row.try_get("control_plane_id")?)?,
        provider: CloudProvider::parse(&provider).ok_or_else(|| {
            StoreError::Internal(anyhow::anyhow!("stored provider {provider:?} is unknown"))
        })?,
        region: row.try_get("region")?,
        network_id: parse_uuid(row.try_get("network_id")?)?,
        instance_type: row.try_get("instance_type")?,
        requested_instances: u32::try_from(requested).map_err(|_| {
            StoreError::Internal(anyhow::anyhow!(
                "stored requested_instances {requested} is out of range"
            ))
        })?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        reason: row.try_get("state_reason")?,
        nodes: from_json(&row.try_get::<String, _>("nodes")?, "dataplane group nodes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const CONFIG_COLUMNS: &str =
    "id, organization_id, control_plane_id, version, created_at, updated_at";

async fn with_groups(
    conn: &mut AnyConnection,
    row: &sqlx::any::AnyRow,
) -> StoreResult<ConfigurationRecord> {
    let id = parse_uuid(row.try_get("id")?)?;
    let groups = sqlx::query(&format!(
        "{GROUP_SELECT} WHERE configuration_id = $1 ORDER BY created_at, id"
    ))
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    Ok(ConfigurationRecord {
        id,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        control_plane_id: parse_uuid(row.try_get("control_plane_id")?)?,
        version: row.try_get("version")?,
        dataplane_groups: groups
            .iter()
            .map(group_from_row)
            .collect::<StoreResult<_>>()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn fetch(conn: &mut AnyConnection, org: Uuid, id: Uuid) -> StoreResult<ConfigurationRecord> {
    let row = sqlx::query(&format!(
        "SELECT {CONFIG_COLUMNS} FROM cloud_configurations \
         WHERE organization_id = $1 AND id = $2 AND deleted_at IS NULL"
    ))
    .bind(org.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => with_groups(conn, &row).await,
        None => Err(StoreError::NotFound(format!("configuration {id}"))),
    }
}

fn invalid(field: String, reason: String) -> StoreError {
    StoreError::InvalidReference { field, reason }
}

/// Locks and checks every group's network (in id order, so two PUTs cannot deadlock).
async fn check_networks(
    conn: &mut AnyConnection,
    org: Uuid,
    groups: &[DesiredDataplaneGroup],
) -> StoreResult<()> {
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&i| groups[i].network_id);
    for i in order {
        let group = &groups[i];
        let field = |name: &str| format!("dataplane_groups[{i}].{name}");
        let Some(network) = claim_network(conn, org, group.network_id).await? else {
            return Err(invalid(
                field("cloud_gateway_network_id"),
                format!(
                    "network {} does not exist in this organization",
                    group.network_id
                ),
            ));
        };
        if matches!(network.state.as_str(), TERMINATING | TERMINATED) {
            return Err(invalid(
                field("cloud_gateway_network_id"),
                format!("network {:?} is {}", network.name, network.state),
            ));
        }
        if network.provider != group.provider {
            return Err(invalid(
                field("provider"),
                format!(
                    "network {:?} is in a {} provider account, not {}",
                    network.name,
                    network.provider.as_str(),
                    group.provider.as_str()
                ),
            ));
        }
        if network.region != group.region {
            return Err(invalid(
                field("region"),
                format!(
                    "must equal the region of network {:?} ({}), not {}",
                    network.name, network.region, group.region
                ),
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Replaces the control plane's configuration with the desired state; answers the stored
    /// configuration and whether it was created (rather than replaced).
    pub async fn put_configuration(
        &self,
        org: Uuid,
        desired: DesiredConfiguration,
    ) -> StoreResult<(ConfigurationRecord, bool)> {
        let now = self.clock().now();
        let cp = desired.control_plane_id.to_string();
        let mut tx = self.begin_write().await?;
        // Locks the control plane: concurrent PUTs for it queue here, and it cannot be deleted
        // meanwhile.
        let claimed = sqlx::query(
            "UPDATE control_planes SET updated_at = updated_at \
             WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.to_string())
        .bind(&cp)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(invalid(
                "control_plane_id".into(),
                format!(
                    "control plane {} does not exist in this organization",
                    desired.control_plane_id
                ),
            ));
        }
        check_networks(&mut tx, org, &desired.dataplane_groups).await?;
        let existing = sqlx::query(
            "SELECT id, deleted_at FROM cloud_configurations WHERE control_plane_id = $1",
        )
        .bind(&cp)
        .fetch_optional(&mut *tx)
        .await?;
        let (id, created) = match existing {
            Some(row) => {
                let id = parse_uuid(row.try_get("id")?)?;
                let was_deleted = row.try_get::<Option<i64>, _>("deleted_at")?.is_some();
                sqlx::query(
                    "UPDATE cloud_configurations SET version = version + 1, deleted_at = NULL, \
                     updated_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                (id, was_deleted)
            }
            None => {
                let id = Uuid::new_v4();
                sqlx::query(
                    "INSERT INTO cloud_configurations (id, organization_id, control_plane_id, \
                     version, deleted_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, 1, NULL, $4, $5)",
                )
                .bind(id.to_string())
                .bind(org.to_string())
                .bind(&cp)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (id, true)
            }
        };
        let live = sqlx::query(&format!(
            "{GROUP_SELECT} WHERE configuration_id = $1 AND state <> $2 AND state <> $3"
        ))
        .bind(id.to_string())
        .bind(TERMINATING)
        .bind(TERMINATED)
        .fetch_all(&mut *tx)
        .await?;
        let mut live: HashMap<Uuid, DataplaneGroupRecord> = live
            .iter()
            .map(|row| group_from_row(row).map(|g| (g.network_id, g)))
            .collect::<StoreResult<_>>()?;
        for group in &desired.dataplane_groups {
            match live.remove(&group.network_id) {
                Some(kept) => {
                    sqlx::query(
                        "UPDATE cloud_dataplane_groups SET provider = $1, region = $2, \
                         instance_type = $3, requested_instances = $4, updated_at = $5 \
                         WHERE id = $6",
                    )
                    .bind(group.provider.as_str())
                    .bind(&group.region)
                    .bind(&group.instance_type)
                    .bind(i64::from(group.requested_instances))
                    .bind(now)
                    .bind(kept.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO cloud_dataplane_groups (id, configuration_id, \
                         organization_id, control_plane_id, provider, region, network_id, \
                         instance_type, requested_instances, state, state_reason, nodes, \
                         created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, '[]', $11, $12)",
                    )
                    .bind(Uuid::new_v4().to_string())
                    .bind(id.to_string())
                    .bind(org.to_string())
                    .bind(&cp)
                    .bind(group.provider.as_str())
                    .bind(&group.region)
                    .bind(group.network_id.to_string())
                    .bind(&group.instance_type)
                    .bind(i64::from(group.requested_instances))
                    .bind(DataplaneGroupState::Created.as_str())
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        for dropped in live.values() {
            terminate_group(&mut tx, dropped.id, now).await?;
        }
        let record = fetch(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok((record, created))
    }

    /// One live configuration of the organisation (a deleted one is "not found").
    pub async fn configuration(&self, org: Uuid, id: Uuid) -> StoreResult<ConfigurationRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch(&mut conn, org, id).await
    }

    /// The organisation's live configurations in id order, after the cursor.
    pub async fn list_configurations(
        &self,
        org: Uuid,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<ConfigurationRecord>> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {CONFIG_COLUMNS} FROM cloud_configurations WHERE organization_id = $1 \
             AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(org.to_string())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(with_groups(&mut conn, row).await?);
        }
        Ok(records)
    }

    /// Deletes a configuration: it disappears from the API at once and its groups terminate;
    /// the reconciler removes the nodes and then the rows.
    pub async fn delete_configuration(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE cloud_configurations SET deleted_at = $1, updated_at = $2 \
             WHERE organization_id = $3 AND id = $4 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(now)
        .bind(org.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("configuration {id}")));
        }
        sqlx::query(
            "UPDATE cloud_dataplane_groups SET state = $1, state_reason = NULL, updated_at = $2 \
             WHERE configuration_id = $3 AND state <> $4",
        )
        .bind(TERMINATING)
        .bind(now)
        .bind(id.to_string())
        .bind(TERMINATED)
        .execute(&mut *tx)
        .await?;
        // Without groups there is nothing for the reconciler to tear down.
        sqlx::query(
            "DELETE FROM cloud_configurations WHERE id = $1 AND NOT EXISTS \
             (SELECT 1 FROM cloud_dataplane_groups g WHERE g.configuration_id = $2)",
        )
        .bind(id.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn terminate_group(conn: &mut AnyConnection, id: Uuid, now: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE cloud_dataplane_groups SET state = $1, state_reason = NULL, updated_at = $2 \
         WHERE id = $3",
    )
    .bind(TERMINATING)
    .bind(now)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
