//! Control planes: the unit a gateway config (and later its data-plane nodes) belongs to.

use std::collections::BTreeMap;

use anyhow::Context;
use sqlx::Row;
use uuid::Uuid;

use super::organizations::parse_uuid;
use super::{now_unix, Store, StoreError, StoreResult};

/// A stored control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneRecord {
    /// Control plane id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// Unique name within the organisation.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Key/value labels.
    pub labels: BTreeMap<String, String>,
    /// `CLUSTER_TYPE_HYBRID` (the only type so far).
    pub cluster_type: String,
    /// `pinned_client_certs` or `pki_client_certs`.
    pub auth_type: String,
    /// Bumped by every config write.
    pub config_version: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds (config writes included).
    pub updated_at: i64,
}

/// Fields of a new control plane.
#[derive(Debug, Clone)]
pub struct NewControlPlane {
    /// Unique name within the organisation.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Cluster type.
    pub cluster_type: String,
    /// How data planes authenticate.
    pub auth_type: String,
}

/// A partial update; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New labels (replaces all).
    pub labels: Option<BTreeMap<String, String>>,
    /// New auth type.
    pub auth_type: Option<String>,
}

const COLUMNS: &str = "id, organization_id, name, description, labels, cluster_type, auth_type, \
                       config_version, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<ControlPlaneRecord> {
    let labels: String = row.try_get("labels")?;
    Ok(ControlPlaneRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        labels: serde_json::from_str(&labels).context("decode stored control plane labels")?,
        cluster_type: row.try_get("cluster_type")?,
        auth_type: row.try_get("auth_type")?,
        config_version: row.try_get("config_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict {
        message: format!("a control plane named {name:?} already exists in this organization"),
        field: Some("name".into()),
    }
}

impl Store {
    /// Creates a control plane in the organisation.
    pub async fn create_control_plane(
        &self,
        org: Uuid,
        new: NewControlPlane,
    ) -> StoreResult<ControlPlaneRecord> {
        let now = now_unix();
        let record = ControlPlaneRecord {
            id: Uuid::new_v4(),
            organization_id: org,
            name: new.name,
            description: new.description,
            labels: new.labels,
            cluster_type: new.cluster_type,
            auth_type: new.auth_type,
            config_version: 0,
            created_at: now,
            updated_at: now,
        };
        let result = sqlx::query(
            "INSERT INTO control_planes (id, organization_id, name, description, labels, \
             cluster_type, auth_type, config_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(record.id.to_string())
        .bind(org.to_string())
        .bind(&record.name)
        .bind(&record.description)
        .bind(serde_json::to_string(&record.labels).context("encode labels")?)
        .bind(&record.cluster_type)
        .bind(&record.auth_type)
        .bind(record.config_version)
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(self.pool())
        .await;
        match result {
            Ok(_) => Ok(record),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(name_taken(&record.name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One control plane of the organisation; another organisation's is "not found".
    pub async fn control_plane(&self, org: Uuid, id: Uuid) -> StoreResult<ControlPlaneRecord> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM control_planes WHERE organization_id = $1 AND id = $2"
        ))
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound(format!("control plane {id}"))),
        }
    }

    /// The organisation's control planes in id order, after the cursor.
    pub async fn list_control_planes(
        &self,
        org: Uuid,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<ControlPlaneRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM control_planes WHERE organization_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3"
        ))
        .bind(org.to_string())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Applies a partial update.
    pub async fn update_control_plane(
        &self,
        org: Uuid,
        id: Uuid,
        update: ControlPlaneUpdate,
    ) -> StoreResult<ControlPlaneRecord> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM control_planes WHERE organization_id = $1 AND id = $2"
        ))
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let mut record = match row {
            Some(row) => from_row(&row)?,
            None => return Err(StoreError::NotFound(format!("control plane {id}"))),
        };
        if let Some(name) = update.name {
            record.name = name;
        }
        if let Some(description) = update.description {
            record.description = description;
        }
        if let Some(labels) = update.labels {
            record.labels = labels;
        }
        if let Some(auth_type) = update.auth_type {
            record.auth_type = auth_type;
        }
        record.updated_at = now_unix();
        let result = sqlx::query(
            "UPDATE control_planes SET name = $1, description = $2, labels = $3, auth_type = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(&record.name)
        .bind(&record.description)
        .bind(serde_json::to_string(&record.labels).context("encode labels")?)
        .bind(&record.auth_type)
        .bind(record.updated_at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(name_taken(&record.name))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(record)
    }

    /// Deletes a control plane with its whole gateway config.
    pub async fn delete_control_plane(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let cp = id.to_string();
        // Its cloud-gateway nodes must be gone first, or they would be orphaned.
        let cloud = sqlx::query(
            "SELECT id FROM cloud_configurations WHERE control_plane_id = $1 AND organization_id = $2",
        )
            .bind(&cp)
            .bind(org.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if cloud.is_some() {
            return Err(StoreError::Conflict {
                message: format!(
                    "control plane {id} has a cloud-gateway configuration; delete it and wait \
                     until its nodes are gone"
                ),
                field: None,
            });
        }
        let done = sqlx::query("DELETE FROM control_planes WHERE organization_id = $1 AND id = $2")
            .bind(org.to_string())
            .bind(&cp)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("control plane {id}")));
        }
        // Explicit deletes rather than relying on ON DELETE CASCADE, which SQLite only honours
        // when the foreign_keys pragma is on for that connection.
        for table in [
            "entity_references",
            "entity_unique_keys",
            "core_entities",
            "control_plane_cas",
            "dp_client_certificates",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE control_plane_id = $1"))
                .bind(&cp)
                .execute(&mut *tx)
                .await?;
        }
        // Its services stop counting for billing now; their history stays.
        super::billing::close_all_services(&mut tx, id, self.clock().now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The control plane's current config version, scoped to the organisation.
    pub async fn config_version(&self, org: Uuid, id: Uuid) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT config_version FROM control_planes WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => Ok(row.try_get("config_version")?),
            None => Err(StoreError::NotFound(format!("control plane {id}"))),
        }
    }
}
