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
use super::{from_json, parse_state, to_json, CloudProvider, TERMINATED, TERMINATING};

/// A configuration as the API shows it.
#[derive(Debug, Clone)]
pub struct ConfigurationRecord {
    /// Fleetgate id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// The control plane whose config the nodes run (one configuration each).
    pub control_plane_id: Uuid,
    /// Bumped by every PUT (Konnect's `entity_version`).
    pub version: i64,
    /// Konnect's control-plane geo (`us`, `eu`, …), as given.
    pub control_plane_geo: String,
    /// The gateway (node software) version the nodes run, `MAJOR.MINOR`.
    pub gateway_version: String,
    /// `private`, `public` or `private+public`.
    pub api_access: String,
    /// Deleted: its groups are terminating and the row goes once their nodes are gone.
    pub deleted: bool,
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
    /// Konnect's instance size (`small`, `medium`, `large`).
    pub instance_type: String,
    /// How many nodes should run: the static count, or autopilot's current decision.
    pub requested_instances: u32,
    /// How the node count is decided.
    pub autoscale: Autoscale,
    /// Node environment variables, as given.
    pub environment: Vec<EnvironmentVariable>,
    /// Autopilot's last decision, once one was made.
    pub autopilot: Option<AutopilotDecision>,
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
            instance_type: crate::cloud::catalogue::provider_instance_type(
                self.provider,
                &self.instance_type,
            ),
            requested_instances: if terminating {
                0
            } else {
                self.requested_instances
            },
            bootstrap,
        }
    }
}

/// How a group's node count is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Autoscale {
    /// A fixed count of nodes of one size.
    Static {
        /// Konnect's size name.
        instance_type: String,
        /// Nodes to run.
        requested_instances: u32,
    },
    /// The count follows measured requests per second between the bounds the rates give.
    Autopilot {
        /// Requests per second the group must always carry (sets the fewest nodes).
        base_rps: u32,
        /// Requests per second it may grow to (sets the most nodes); 10 x `base_rps` when
        /// not given, as Konnect.
        max_rps: u32,
    },
}

/// The size autopilot nodes run as (Konnect's autopilot names no size).
pub const AUTOPILOT_SIZE: &str = "medium";

/// The kind names stored and shown.
pub const AUTOSCALE_STATIC: &str = "static";
/// See [`AUTOSCALE_STATIC`].
pub const AUTOSCALE_AUTOPILOT: &str = "autopilot";

/// One node environment variable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EnvironmentVariable {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// What autopilot last decided for a group, and from what.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AutopilotDecision {
    /// Requests per second measured over the telemetry window the decision used.
    pub measured_rps: f64,
    /// The node count it decided.
    pub desired_instances: u32,
    /// When, Unix seconds.
    pub decided_at: i64,
    /// When a decision last changed the count (the cooldowns count from it), Unix seconds.
    #[serde(default)]
    pub changed_at: Option<i64>,
}

/// The whole desired state of a PUT (shape-checked by the API; references are checked here).
#[derive(Debug, Clone)]
pub struct DesiredConfiguration {
    /// The control plane, which must be the organisation's.
    pub control_plane_id: Uuid,
    /// Konnect's control-plane geo.
    pub control_plane_geo: String,
    /// The gateway version the nodes run.
    pub gateway_version: String,
    /// `private`, `public` or `private+public`.
    pub api_access: String,
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
    /// How many nodes, of what size.
    pub autoscale: Autoscale,
    /// Node environment variables.
    pub environment: Vec<EnvironmentVariable>,
}

impl DesiredDataplaneGroup {
    /// The stored size and node count: autopilot starts at (or keeps, within its new bounds)
    /// the count it had.
    fn sizing(&self, current: Option<u32>) -> (String, u32) {
        match &self.autoscale {
            Autoscale::Static {
                instance_type,
                requested_instances,
            } => (instance_type.clone(), *requested_instances),
            Autoscale::Autopilot { base_rps, max_rps } => {
                let (low, high) = crate::cloud::autopilot::bounds(*base_rps, *max_rps);
                (
                    AUTOPILOT_SIZE.to_string(),
                    current.unwrap_or(low).clamp(low, high),
                )
            }
        }
    }

    fn autoscale_columns(&self) -> (&'static str, Option<i64>, Option<i64>) {
        match &self.autoscale {
            Autoscale::Static { .. } => (AUTOSCALE_STATIC, None, None),
            Autoscale::Autopilot { base_rps, max_rps } => (
                AUTOSCALE_AUTOPILOT,
                Some(i64::from(*base_rps)),
                Some(i64::from(*max_rps)),
            ),
        }
    }
}

pub(super) const GROUP_SELECT: &str = "SELECT id, configuration_id, organization_id, \
    control_plane_id, provider, region, network_id, instance_type, requested_instances, \
    autoscale_kind, base_rps, max_rps, environment, autopilot, state, state_reason, nodes, \
    created_at, updated_at FROM cloud_dataplane_groups";

pub(super) fn group_from_row(row: &sqlx::any::AnyRow) -> StoreResult<DataplaneGroupRecord> {
    let provider: String = row.try_get("provider")?;
    let requested: i64 = row.try_get("requested_instances")?;
    let instance_type: String = row.try_get("instance_type")?;
    let requested_instances = u32::try_from(requested).map_err(|_| {
        StoreError::Internal(anyhow::anyhow!(
            "stored requested_instances {requested} is out of range"
        ))
    })?;
    let kind: String = row.try_get("autoscale_kind")?;
    let rate = |column: &str| -> StoreResult<u32> {
        let raw: Option<i64> = row.try_get(column)?;
        raw.and_then(|r| u32::try_from(r).ok()).ok_or_else(|| {
            StoreError::Internal(anyhow::anyhow!(
                "stored autopilot {column} {raw:?} is missing or out of range"
            ))
        })
    };
    let autoscale = match kind.as_str() {
        AUTOSCALE_AUTOPILOT => Autoscale::Autopilot {
            base_rps: rate("base_rps")?,
            max_rps: rate("max_rps")?,
        },
        AUTOSCALE_STATIC => Autoscale::Static {
            instance_type: instance_type.clone(),
            requested_instances,
        },
        other => {
            return Err(StoreError::Internal(anyhow::anyhow!(
                "stored autoscale kind {other:?} is unknown"
            )))
        }
    };
    let autopilot: Option<String> = row.try_get("autopilot")?;
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
        instance_type,
        requested_instances,
        autoscale,
        environment: from_json(
            &row.try_get::<String, _>("environment")?,
            "dataplane group environment",
        )?,
        autopilot: autopilot
            .map(|raw| from_json(&raw, "autopilot decision"))
            .transpose()?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        reason: row.try_get("state_reason")?,
        nodes: from_json(&row.try_get::<String, _>("nodes")?, "dataplane group nodes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const CONFIG_COLUMNS: &str = "id, organization_id, control_plane_id, version, \
    control_plane_geo, gateway_version, api_access, deleted_at, created_at, updated_at";

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
        control_plane_geo: row.try_get("control_plane_geo")?,
        gateway_version: row.try_get("gateway_version")?,
        api_access: row.try_get("api_access")?,
        deleted: row.try_get::<Option<i64>, _>("deleted_at")?.is_some(),
        dataplane_groups: groups
            .iter()
            .map(group_from_row)
            .collect::<StoreResult<_>>()?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A configuration, also a deleted one whose groups still terminate (the reconciler removes
/// the row once they are gone; until then it shows them `terminating`).
async fn fetch(conn: &mut AnyConnection, org: Uuid, id: Uuid) -> StoreResult<ConfigurationRecord> {
    let row = sqlx::query(&format!(
        "SELECT {CONFIG_COLUMNS} FROM cloud_configurations \
         WHERE organization_id = $1 AND id = $2"
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
                     control_plane_geo = $1, gateway_version = $2, api_access = $3, \
                     updated_at = $4 WHERE id = $5",
                )
                .bind(&desired.control_plane_geo)
                .bind(&desired.gateway_version)
                .bind(&desired.api_access)
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
                     version, control_plane_geo, gateway_version, api_access, deleted_at, \
                     created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $5, $6, NULL, $7, $8)",
                )
                .bind(id.to_string())
                .bind(org.to_string())
                .bind(&cp)
                .bind(&desired.control_plane_geo)
                .bind(&desired.gateway_version)
                .bind(&desired.api_access)
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
            let kept = live.remove(&group.network_id);
            let (instance_type, requested) = group.sizing(
                kept.as_ref()
                    .filter(|k| matches!(k.autoscale, Autoscale::Autopilot { .. }))
                    .map(|k| k.requested_instances),
            );
            let (kind, base_rps, max_rps) = group.autoscale_columns();
            let environment = to_json(&group.environment, "dataplane group environment")?;
            match kept {
                Some(kept) => {
                    // A group leaving autopilot forgets its last decision.
                    sqlx::query(
                        "UPDATE cloud_dataplane_groups SET provider = $1, region = $2, \
                         instance_type = $3, requested_instances = $4, autoscale_kind = $5, \
                         base_rps = $6, max_rps = $7, environment = $8, \
                         autopilot = CASE WHEN $9 = 'autopilot' THEN autopilot ELSE NULL END, \
                         updated_at = $10 WHERE id = $11",
                    )
                    .bind(group.provider.as_str())
                    .bind(&group.region)
                    .bind(&instance_type)
                    .bind(i64::from(requested))
                    .bind(kind)
                    .bind(base_rps)
                    .bind(max_rps)
                    .bind(&environment)
                    .bind(kind)
                    .bind(now)
                    .bind(kept.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO cloud_dataplane_groups (id, configuration_id, \
                         organization_id, control_plane_id, provider, region, network_id, \
                         instance_type, requested_instances, autoscale_kind, base_rps, max_rps, \
                         environment, autopilot, state, state_reason, nodes, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                         $13, NULL, $14, NULL, '[]', $15, $16)",
                    )
                    .bind(Uuid::new_v4().to_string())
                    .bind(id.to_string())
                    .bind(org.to_string())
                    .bind(&cp)
                    .bind(group.provider.as_str())
                    .bind(&group.region)
                    .bind(group.network_id.to_string())
                    .bind(&instance_type)
                    .bind(i64::from(requested))
                    .bind(kind)
                    .bind(base_rps)
                    .bind(max_rps)
                    .bind(&environment)
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

    /// One configuration of the organisation (a deleted one while its groups terminate).
    pub async fn configuration(&self, org: Uuid, id: Uuid) -> StoreResult<ConfigurationRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch(&mut conn, org, id).await
    }

    /// Every configuration of the organisation (deleted ones while their groups terminate),
    /// oldest first: one per control plane, so lists filter and page them in memory.
    pub async fn list_configurations(&self, org: Uuid) -> StoreResult<Vec<ConfigurationRecord>> {
        let mut conn = self.pool().acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {CONFIG_COLUMNS} FROM cloud_configurations WHERE organization_id = $1 \
             ORDER BY created_at, id"
        ))
        .bind(org.to_string())
        .fetch_all(&mut *conn)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(with_groups(&mut conn, row).await?);
        }
        Ok(records)
    }

    /// Deletes a configuration: its groups become `terminating` (and show so) until the
    /// reconciler has removed their nodes, and then the row goes. Deleting it again meanwhile
    /// is a no-op.
    pub async fn delete_configuration(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE cloud_configurations SET deleted_at = COALESCE(deleted_at, $1), \
             updated_at = $2 WHERE organization_id = $3 AND id = $4",
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

impl Store {
    /// Records autopilot's decision for a group and asks for its node count; answers
    /// whether it was taken (not when the group left autopilot or started terminating
    /// meanwhile: the user's PUT or DELETE wins).
    pub async fn record_autopilot_decision(
        &self,
        id: Uuid,
        decision: &AutopilotDecision,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE cloud_dataplane_groups SET requested_instances = $1, autopilot = $2 \
             WHERE id = $3 AND autoscale_kind = $4 AND state <> $5 AND state <> $6",
        )
        .bind(i64::from(decision.desired_instances))
        .bind(to_json(decision, "autopilot decision")?)
        .bind(id.to_string())
        .bind(AUTOSCALE_AUTOPILOT)
        .bind(TERMINATING)
        .bind(TERMINATED)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
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
