//! Transit-gateway attachments of a network: the customer's TGW (shared through RAM) and the
//! customer CIDRs routed through it. The CIDR rules run here, inside the write transaction
//! that holds the network's lock, so two concurrent creates cannot both pass the overlap check.

use fleetgate_provisioner::cidr::{self, CidrError, ExistingAttachment};
use fleetgate_provisioner::state::TransitGatewayState;
use fleetgate_provisioner::types::{TransitGatewayObserved, TransitGatewaySpec};
use ipnet::Ipv4Net;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::super::organizations::parse_uuid;
use super::super::{Store, StoreError, StoreResult};
use super::networks::{claim_network, NetworkRecord};
use super::{from_json, parse_state, to_json, TERMINATED, TERMINATING};

/// A stored transit-gateway attachment with its last observed state.
#[derive(Debug, Clone)]
pub struct TransitGatewayRecord {
    /// Fleetgate id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// The network it attaches.
    pub network_id: Uuid,
    /// That network's region (the reconciler needs it).
    pub region: String,
    /// Unique name within the network.
    pub name: String,
    /// Customer CIDRs routed through the transit gateway.
    pub cidr_blocks: Vec<Ipv4Net>,
    /// Konnect's DNS settings, stored as given.
    pub dns_config: Option<serde_json::Value>,
    /// The customer's transit gateway, `tgw-…`.
    pub transit_gateway_id: String,
    /// The RAM share it was shared through.
    pub ram_share_arn: String,
    /// Last state.
    pub state: TransitGatewayState,
    /// Why, when that needs saying.
    pub reason: Option<String>,
    /// What the reconciler found.
    pub provider_metadata: TransitGatewayObserved,
    /// Bumped by every change the API makes (Konnect's `entity_version`).
    pub entity_version: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl TransitGatewayRecord {
    /// The desired state the transit-gateway reconciler converges to.
    pub fn spec(&self) -> TransitGatewaySpec {
        TransitGatewaySpec {
            id: self.id,
            network_id: self.network_id,
            name: self.name.clone(),
            cidr_blocks: self.cidr_blocks.clone(),
            transit_gateway_id: self.transit_gateway_id.clone(),
            ram_share_arn: self.ram_share_arn.clone(),
        }
    }
}

/// Fields of a new attachment (shape-checked by the API; CIDRs are checked here).
#[derive(Debug, Clone)]
pub struct NewTransitGateway {
    /// Unique name within the network.
    pub name: String,
    /// Customer CIDRs as given.
    pub cidr_blocks: Vec<String>,
    /// DNS settings, stored as given.
    pub dns_config: Option<serde_json::Value>,
    /// `tgw-…`.
    pub transit_gateway_id: String,
    /// `arn:…`.
    pub ram_share_arn: String,
}

pub(super) const SELECT: &str = "SELECT t.id, t.organization_id, t.network_id, n.region, \
    t.name, t.cidr_blocks, t.dns_config, t.transit_gateway_id, t.ram_share_arn, t.state, \
    t.state_reason, t.provider_metadata, t.entity_version, t.created_at, t.updated_at \
    FROM cloud_transit_gateways t JOIN cloud_networks n ON n.id = t.network_id";

pub(super) fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<TransitGatewayRecord> {
    let blocks: Vec<String> = from_json(&row.try_get::<String, _>("cidr_blocks")?, "cidr_blocks")?;
    let dns_config: Option<String> = row.try_get("dns_config")?;
    Ok(TransitGatewayRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        network_id: parse_uuid(row.try_get("network_id")?)?,
        region: row.try_get("region")?,
        name: row.try_get("name")?,
        cidr_blocks: blocks
            .iter()
            .map(|b| {
                b.parse().map_err(|e| {
                    StoreError::Internal(anyhow::anyhow!("stored cidr block {b:?}: {e}"))
                })
            })
            .collect::<StoreResult<_>>()?,
        dns_config: dns_config
            .map(|raw| from_json(&raw, "dns_config"))
            .transpose()?,
        transit_gateway_id: row.try_get("transit_gateway_id")?,
        ram_share_arn: row.try_get("ram_share_arn")?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        reason: row.try_get("state_reason")?,
        provider_metadata: from_json(
            &row.try_get::<String, _>("provider_metadata")?,
            "transit gateway provider metadata",
        )?,
        entity_version: row.try_get("entity_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

async fn fetch(
    conn: &mut AnyConnection,
    org: Uuid,
    network: Uuid,
    id: Uuid,
) -> StoreResult<TransitGatewayRecord> {
    let row = sqlx::query(&format!(
        "{SELECT} WHERE t.organization_id = $1 AND t.network_id = $2 AND t.id = $3"
    ))
    .bind(org.to_string())
    .bind(network.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => from_row(&row),
        None => Err(StoreError::NotFound(format!("transit gateway {id}"))),
    }
}

/// The network, locked, and refused when it is going away.
async fn usable_network(
    conn: &mut AnyConnection,
    org: Uuid,
    network: Uuid,
) -> StoreResult<NetworkRecord> {
    let record = claim_network(conn, org, network)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("network {network}")))?;
    if matches!(record.state.as_str(), TERMINATING | TERMINATED) {
        return Err(StoreError::Conflict {
            message: format!(
                "network {network} is {}; it cannot take transit gateway changes",
                record.state
            ),
            field: None,
        });
    }
    Ok(record)
}

/// The CIDRs checked against the network and its other attachments (terminating ones too:
/// their routes are still in place until the reconciler removes them).
async fn checked_cidrs(
    conn: &mut AnyConnection,
    network: &NetworkRecord,
    attachment_id: Uuid,
    cidr_blocks: &[String],
) -> StoreResult<Vec<Ipv4Net>> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE t.network_id = $1 AND t.state <> $2 ORDER BY t.id"
    ))
    .bind(network.id.to_string())
    .bind(TERMINATED)
    .fetch_all(&mut *conn)
    .await?;
    let existing = rows
        .iter()
        .map(|row| {
            let r = from_row(row)?;
            Ok(ExistingAttachment {
                id: r.id,
                name: r.name,
                cidr_blocks: r.cidr_blocks,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    cidr::validate_attachment_cidrs(network.cidr_block, attachment_id, cidr_blocks, &existing)
        .map_err(
            |CidrError { field, message }| StoreError::InvalidReference {
                field,
                reason: message,
            },
        )
}

fn encode_cidrs(cidrs: &[Ipv4Net]) -> StoreResult<String> {
    let strings: Vec<String> = cidrs.iter().map(Ipv4Net::to_string).collect();
    to_json(&strings, "cidr_blocks")
}

impl Store {
    /// Stores a new attachment in state `created` after the CIDR rules pass.
    pub async fn create_transit_gateway(
        &self,
        org: Uuid,
        network_id: Uuid,
        new: NewTransitGateway,
    ) -> StoreResult<TransitGatewayRecord> {
        let now = self.clock().now();
        let id = Uuid::new_v4();
        let mut tx = self.begin_write().await?;
        let network = usable_network(&mut tx, org, network_id).await?;
        let cidrs = checked_cidrs(&mut tx, &network, id, &new.cidr_blocks).await?;
        sqlx::query(
            "INSERT INTO cloud_transit_gateways (id, organization_id, network_id, name, \
             cidr_blocks, dns_config, transit_gateway_id, ram_share_arn, state, state_reason, \
             provider_metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12)",
        )
        .bind(id.to_string())
        .bind(org.to_string())
        .bind(network_id.to_string())
        .bind(&new.name)
        .bind(encode_cidrs(&cidrs)?)
        .bind(
            new.dns_config
                .as_ref()
                .map(|v| to_json(v, "dns_config"))
                .transpose()?,
        )
        .bind(&new.transit_gateway_id)
        .bind(&new.ram_share_arn)
        .bind(TransitGatewayState::Created.as_str())
        .bind(to_json(
            &TransitGatewayObserved::default(),
            "transit gateway provider metadata",
        )?)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
                message: format!(
                    "a transit gateway named {:?} already exists in network {network_id}",
                    new.name
                ),
                field: Some("name".into()),
            },
            other => other.into(),
        })?;
        let record = fetch(&mut tx, org, network_id, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// One attachment of one of the organisation's networks.
    pub async fn transit_gateway(
        &self,
        org: Uuid,
        network_id: Uuid,
        id: Uuid,
    ) -> StoreResult<TransitGatewayRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch(&mut conn, org, network_id, id).await
    }

    /// Every attachment of a network, oldest first (a network has a few at most, so lists
    /// filter and page them in memory); "not found" when the network is not the
    /// organisation's.
    pub async fn list_transit_gateways(
        &self,
        org: Uuid,
        network_id: Uuid,
    ) -> StoreResult<Vec<TransitGatewayRecord>> {
        let mut conn = self.pool().acquire().await?;
        super::networks::fetch(&mut conn, org, network_id).await?;
        let rows = sqlx::query(&format!(
            "{SELECT} WHERE t.organization_id = $1 AND t.network_id = $2 \
             ORDER BY t.created_at, t.id"
        ))
        .bind(org.to_string())
        .bind(network_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Replaces an attachment's CIDRs (the only field that may change) after the CIDR rules
    /// pass; the reconciler moves the routes.
    pub async fn update_transit_gateway_cidrs(
        &self,
        org: Uuid,
        network_id: Uuid,
        id: Uuid,
        cidr_blocks: &[String],
    ) -> StoreResult<TransitGatewayRecord> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        let network = usable_network(&mut tx, org, network_id).await?;
        let current = fetch(&mut tx, org, network_id, id).await?;
        if current.state.as_str() == TERMINATING || current.state.as_str() == TERMINATED {
            return Err(StoreError::Conflict {
                message: format!(
                    "transit gateway {id} is {}; it cannot change",
                    current.state
                ),
                field: None,
            });
        }
        let cidrs = checked_cidrs(&mut tx, &network, id, cidr_blocks).await?;
        sqlx::query(
            "UPDATE cloud_transit_gateways SET cidr_blocks = $1, \
             entity_version = entity_version + 1, updated_at = $2 WHERE id = $3",
        )
        .bind(encode_cidrs(&cidrs)?)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let record = fetch(&mut tx, org, network_id, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Asks for an attachment's removal: it becomes `terminating`; the reconciler removes its
    /// routes and the attachment, then the row. A second delete is a no-op.
    pub async fn delete_transit_gateway(
        &self,
        org: Uuid,
        network_id: Uuid,
        id: Uuid,
    ) -> StoreResult<()> {
        let now = self.clock().now();
        let done = sqlx::query(
            "UPDATE cloud_transit_gateways SET state = $1, state_reason = NULL, updated_at = $2 \
             WHERE organization_id = $3 AND network_id = $4 AND id = $5 AND state <> $6",
        )
        .bind(TERMINATING)
        .bind(now)
        .bind(org.to_string())
        .bind(network_id.to_string())
        .bind(id.to_string())
        .bind(TERMINATED)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            // Either absent (404) or already terminated (nothing left to do).
            let mut conn = self.pool().acquire().await?;
            fetch(&mut conn, org, network_id, id).await?;
        }
        Ok(())
    }
}
