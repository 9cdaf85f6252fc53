//! Dev portals of an organisation. Publishing and unpublishing are recorded as intervals in
//! `portal_publications`, in the same transaction, because billing counts published portals.

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::organizations::parse_uuid;
use super::{Store, StoreError, StoreResult, Window};

/// A stored dev portal.
#[derive(Debug, Clone)]
pub struct PortalRecord {
    /// Portal id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// Unique name within the organisation.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Whether developers can see it (and it counts as active for billing).
    pub published: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// Fields of a new portal.
#[derive(Debug, Clone)]
pub struct NewPortal {
    /// Unique name within the organisation.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Published from the start.
    pub published: bool,
}

/// A partial update; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct PortalUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Publish or unpublish.
    pub published: Option<bool>,
}

const COLUMNS: &str = "id, organization_id, name, description, published, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<PortalRecord> {
    Ok(PortalRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        published: row.try_get::<i64, _>("published")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict {
        message: format!("a portal named {name:?} already exists in this organization"),
        field: Some("name".into()),
    }
}

fn map_unique(err: sqlx::Error, name: &str) -> StoreError {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => name_taken(name),
        other => other.into(),
    }
}

async fn fetch(conn: &mut AnyConnection, org: Uuid, id: Uuid) -> StoreResult<PortalRecord> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM portals WHERE organization_id = $1 AND id = $2"
    ))
    .bind(org.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => from_row(&row),
        None => Err(StoreError::NotFound(format!("portal {id}"))),
    }
}

async fn publish(conn: &mut AnyConnection, org: Uuid, id: Uuid, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO portal_publications (organization_id, portal_id, published_at) \
         VALUES ($1, $2, $3)",
    )
    .bind(org.to_string())
    .bind(id.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn unpublish(conn: &mut AnyConnection, id: Uuid, now: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE portal_publications SET unpublished_at = $1 WHERE portal_id = $2 \
         AND unpublished_at IS NULL",
    )
    .bind(now)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Creates a portal (and starts its publication when created published).
    pub async fn create_portal(&self, org: Uuid, new: NewPortal) -> StoreResult<PortalRecord> {
        let now = self.clock().now();
        let record = PortalRecord {
            id: Uuid::new_v4(),
            organization_id: org,
            name: new.name,
            description: new.description,
            published: new.published,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO portals (id, organization_id, name, description, published, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(record.id.to_string())
        .bind(org.to_string())
        .bind(&record.name)
        .bind(&record.description)
        .bind(i64::from(record.published))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, &record.name))?;
        if record.published {
            publish(&mut tx, org, record.id, now).await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    /// One portal of the organisation; another organisation's is "not found".
    pub async fn portal(&self, org: Uuid, id: Uuid) -> StoreResult<PortalRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch(&mut conn, org, id).await
    }

    /// A window of the organisation's portals in creation order, and how many there are.
    pub async fn list_portals(
        &self,
        org: Uuid,
        window: Window,
    ) -> StoreResult<(Vec<PortalRecord>, i64)> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM portals WHERE organization_id = $1 \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        ))
        .bind(org.to_string())
        .bind(window.limit)
        .bind(window.offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM portals WHERE organization_id = $1")
                .bind(org.to_string())
                .fetch_one(self.pool())
                .await?;
        Ok((
            rows.iter().map(from_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    /// Applies a partial update; a change of `published` opens or closes a publication.
    pub async fn update_portal(
        &self,
        org: Uuid,
        id: Uuid,
        update: PortalUpdate,
    ) -> StoreResult<PortalRecord> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        // Claim the row first: on PostgreSQL this row lock orders concurrent publish/unpublish
        // calls of one portal, so the publication history cannot get two open intervals.
        let claimed = sqlx::query(
            "UPDATE portals SET updated_at = $1 WHERE organization_id = $2 AND id = $3",
        )
        .bind(now)
        .bind(org.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("portal {id}")));
        }
        let mut record = fetch(&mut tx, org, id).await?;
        let was_published = record.published;
        if let Some(name) = update.name {
            record.name = name;
        }
        if let Some(description) = update.description {
            record.description = description;
        }
        if let Some(published) = update.published {
            record.published = published;
        }
        sqlx::query("UPDATE portals SET name = $1, description = $2, published = $3 WHERE id = $4")
            .bind(&record.name)
            .bind(&record.description)
            .bind(i64::from(record.published))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| map_unique(e, &record.name))?;
        match (was_published, record.published) {
            (false, true) => publish(&mut tx, org, id, now).await?,
            (true, false) => unpublish(&mut tx, id, now).await?,
            _ => {}
        }
        tx.commit().await?;
        Ok(record)
    }

    /// Deletes a portal; a published one stops counting at this second.
    pub async fn delete_portal(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let now = self.clock().now();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM portals WHERE organization_id = $1 AND id = $2")
            .bind(org.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("portal {id}")));
        }
        unpublish(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
