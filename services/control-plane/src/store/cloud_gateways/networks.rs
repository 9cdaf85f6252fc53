//! Cloud-gateway networks: one VPC (or the local machine) per region, in a provider account.

use fleetgate_provisioner::reconcile::NetworkInUse;
use fleetgate_provisioner::state::NetworkState;
use fleetgate_provisioner::types::{NetworkObserved, NetworkSpec};
use ipnet::Ipv4Net;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::super::organizations::parse_uuid;
use super::super::{Store, StoreError, StoreResult};
use super::{claim, from_json, parse_state, to_json, CloudProvider, TERMINATED, TERMINATING};

/// A stored network with its last observed state.
#[derive(Debug, Clone)]
pub struct NetworkRecord {
    /// Fleetgate id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// The provider account (Fleetgate id) it lives in.
    pub provider_account_id: Uuid,
    /// That account's provider.
    pub provider: CloudProvider,
    /// Unique name within the organisation.
    pub name: String,
    /// Provider region.
    pub region: String,
    /// Zones, in the user's order.
    pub availability_zones: Vec<String>,
    /// The network's range.
    pub cidr_block: Ipv4Net,
    /// Last state (API- or reconciler-written).
    pub state: NetworkState,
    /// Why, when that needs saying.
    pub reason: Option<String>,
    /// What the reconciler found at the provider.
    pub provider_metadata: NetworkObserved,
    /// Attachments that are not terminated.
    pub transit_gateway_count: i64,
    /// Configurations with a group in it that is not terminated.
    pub configuration_reference_count: i64,
    /// Bumped by every change the API makes (Konnect's `entity_version`).
    pub entity_version: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl NetworkRecord {
    /// The desired state the network reconciler converges to.
    pub fn spec(&self) -> NetworkSpec {
        NetworkSpec {
            id: self.id,
            name: self.name.clone(),
            region: self.region.clone(),
            availability_zones: self.availability_zones.clone(),
            cidr_block: self.cidr_block,
        }
    }
}

/// Fields of a new network (validated by the API).
#[derive(Debug, Clone)]
pub struct NewNetwork {
    /// The provider account (Fleetgate id).
    pub provider_account_id: Uuid,
    /// Unique name within the organisation.
    pub name: String,
    /// Provider region.
    pub region: String,
    /// Zones, in the user's order.
    pub availability_zones: Vec<String>,
    /// The network's range.
    pub cidr_block: Ipv4Net,
}

pub(super) const SELECT: &str = "SELECT n.id, n.organization_id, n.provider_account_id, \
    a.provider, n.name, n.region, n.availability_zones, n.cidr_block, n.state, n.state_reason, \
    n.provider_metadata, n.entity_version, n.created_at, n.updated_at, \
    (SELECT COUNT(*) FROM cloud_transit_gateways t WHERE t.network_id = n.id \
     AND t.state <> 'terminated') AS transit_gateway_count, \
    (SELECT COUNT(DISTINCT g.configuration_id) FROM cloud_dataplane_groups g \
     WHERE g.network_id = n.id AND g.state <> 'terminated') AS configuration_reference_count \
    FROM cloud_networks n JOIN cloud_provider_accounts a ON a.id = n.provider_account_id";

pub(super) fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<NetworkRecord> {
    let provider: String = row.try_get("provider")?;
    let cidr: String = row.try_get("cidr_block")?;
    Ok(NetworkRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        provider_account_id: parse_uuid(row.try_get("provider_account_id")?)?,
        provider: CloudProvider::parse(&provider).ok_or_else(|| {
            StoreError::Internal(anyhow::anyhow!("stored provider {provider:?} is unknown"))
        })?,
        name: row.try_get("name")?,
        region: row.try_get("region")?,
        availability_zones: from_json(
            &row.try_get::<String, _>("availability_zones")?,
            "availability zones",
        )?,
        cidr_block: cidr.parse().map_err(|e| {
            StoreError::Internal(anyhow::anyhow!("stored cidr_block {cidr:?}: {e}"))
        })?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        reason: row.try_get("state_reason")?,
        provider_metadata: from_json(
            &row.try_get::<String, _>("provider_metadata")?,
            "network provider metadata",
        )?,
        transit_gateway_count: row.try_get("transit_gateway_count")?,
        configuration_reference_count: row.try_get("configuration_reference_count")?,
        entity_version: row.try_get("entity_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn fetch(
    conn: &mut AnyConnection,
    org: Uuid,
    id: Uuid,
) -> StoreResult<NetworkRecord> {
    let row = sqlx::query(&format!(
        "{SELECT} WHERE n.organization_id = $1 AND n.id = $2"
    ))
    .bind(org.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => from_row(&row),
        None => Err(StoreError::NotFound(format!("network {id}"))),
    }
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict {
        message: format!("a network named {name:?} already exists in this organization"),
        field: Some("name".into()),
    }
}

fn map_unique(err: sqlx::Error, name: &str) -> StoreError {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => name_taken(name),
        other => other.into(),
    }
}

impl Store {
    /// Stores a new network in state `created`; the provider account must be the
    /// organisation's.
    pub async fn create_network(&self, org: Uuid, new: NewNetwork) -> StoreResult<NetworkRecord> {
        let now = self.clock().now();
        let id = Uuid::new_v4();
        let mut tx = self.begin_write().await?;
        let account = sqlx::query(
            "SELECT id FROM cloud_provider_accounts WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.to_string())
        .bind(new.provider_account_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if account.is_none() {
            return Err(StoreError::InvalidReference {
                field: "provider_account_id".into(),
                reason: format!(
                    "provider account {} does not exist in this organization",
                    new.provider_account_id
                ),
            });
        }
        sqlx::query(
            "INSERT INTO cloud_networks (id, organization_id, provider_account_id, name, region, \
             availability_zones, cidr_block, state, state_reason, provider_metadata, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11)",
        )
        .bind(id.to_string())
        .bind(org.to_string())
        .bind(new.provider_account_id.to_string())
        .bind(&new.name)
        .bind(&new.region)
        .bind(to_json(&new.availability_zones, "availability zones")?)
        .bind(new.cidr_block.to_string())
        .bind(NetworkState::Created.as_str())
        .bind(to_json(
            &NetworkObserved::default(),
            "network provider metadata",
        )?)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, &new.name))?;
        let record = fetch(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// One network of the organisation.
    pub async fn network(&self, org: Uuid, id: Uuid) -> StoreResult<NetworkRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch(&mut conn, org, id).await
    }

    /// Every network of the organisation, oldest first. An organisation has a handful at
    /// most, so lists filter and page them in memory.
    pub async fn list_networks(&self, org: Uuid) -> StoreResult<Vec<NetworkRecord>> {
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE n.organization_id = $1 ORDER BY n.created_at, n.id"
        ))
        .bind(org.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Renames a network (the only field that may change).
    pub async fn rename_network(
        &self,
        org: Uuid,
        id: Uuid,
        name: &str,
    ) -> StoreResult<NetworkRecord> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE cloud_networks SET name = $1, entity_version = entity_version + 1, \
             updated_at = $2 WHERE organization_id = $3 AND id = $4",
        )
        .bind(name)
        .bind(now)
        .bind(org.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, name))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("network {id}")));
        }
        let record = fetch(&mut tx, org, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Asks for a network's removal: it becomes `terminating` and the reconciler removes its
    /// cloud resources. Refused while a dataplane group (even a terminating one, whose nodes
    /// still run in it) or a transit gateway uses it. Deleting a network that is already
    /// terminating is a no-op.
    pub async fn delete_network(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        // Under this lock a configuration PUT or transit-gateway create cannot start using
        // the network between the checks below and the state change.
        let claimed = sqlx::query(
            "UPDATE cloud_networks SET updated_at = updated_at \
             WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("network {id}")));
        }
        let record = fetch(&mut tx, org, id).await?;
        if record.state.as_str() == TERMINATING || record.state.as_str() == TERMINATED {
            return Ok(());
        }
        let configurations = sqlx::query(
            "SELECT DISTINCT configuration_id FROM cloud_dataplane_groups \
             WHERE network_id = $1 AND state <> $2 ORDER BY configuration_id",
        )
        .bind(id.to_string())
        .bind(TERMINATED)
        .fetch_all(&mut *tx)
        .await?;
        if !configurations.is_empty() {
            let in_use = NetworkInUse {
                network_id: id,
                configuration_ids: configurations
                    .iter()
                    .map(|r| parse_uuid(r.try_get("configuration_id")?))
                    .collect::<StoreResult<_>>()?,
            };
            return Err(StoreError::Conflict {
                message: in_use.to_string(),
                field: None,
            });
        }
        let attachments = sqlx::query(
            "SELECT name, state FROM cloud_transit_gateways WHERE network_id = $1 ORDER BY name",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        if !attachments.is_empty() {
            let names = attachments
                .iter()
                .map(|r| {
                    Ok(format!(
                        "{:?} ({})",
                        r.try_get::<String, _>("name")?,
                        r.try_get::<String, _>("state")?
                    ))
                })
                .collect::<StoreResult<Vec<_>>>()?;
            return Err(StoreError::Conflict {
                message: format!(
                    "network {id} still has transit gateway(s) {}; delete them and wait until \
                     they are gone",
                    names.join(", ")
                ),
                field: None,
            });
        }
        sqlx::query(
            "UPDATE cloud_networks SET state = $1, state_reason = NULL, updated_at = $2 \
             WHERE id = $3",
        )
        .bind(TERMINATING)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Takes the network's row lock inside a write transaction and returns it; for writers
/// that must not race with its delete.
pub(super) async fn claim_network(
    conn: &mut AnyConnection,
    org: Uuid,
    id: Uuid,
) -> StoreResult<Option<NetworkRecord>> {
    if claim(conn, "cloud_networks", id).await? == 0 {
        return Ok(None);
    }
    match fetch(conn, org, id).await {
        Ok(record) => Ok(Some(record)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
