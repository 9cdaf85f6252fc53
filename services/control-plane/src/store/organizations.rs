//! Organisations and their API tokens.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use super::{now_unix, Store, StoreError, StoreResult, Window};

/// A tenant: every other resource belongs to exactly one organisation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Organization {
    /// Organisation id.
    pub id: Uuid,
    /// Unique organisation name.
    pub name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and writes everything in its organisation.
    Admin,
    /// Reads everything in its organisation, writes nothing.
    Viewer,
    /// Runs the Fleetgate service: an admin of its own organisation that may also list
    /// every organisation.
    Operator,
}

impl Role {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// Parses a stored or user-given role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// Whether the role may change resources.
    pub fn can_write(self) -> bool {
        !matches!(self, Role::Viewer)
    }
}

/// A stored API token (never the secret itself).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenRecord {
    /// Token id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// Human name of the token.
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// The first characters of the token, to tell tokens apart.
    pub display_prefix: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds; none means never.
    pub expires_at: Option<i64>,
}

fn org_from_row(row: &sqlx::any::AnyRow) -> StoreResult<Organization> {
    Ok(Organization {
        id: parse_uuid(row.try_get("id")?)?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

fn token_from_row(row: &sqlx::any::AnyRow) -> StoreResult<TokenRecord> {
    let role: String = row.try_get("role")?;
    Ok(TokenRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        name: row.try_get("name")?,
        role: Role::parse(&role).with_context(|| format!("decode stored token role {role:?}"))?,
        display_prefix: row.try_get("display_prefix")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(crate) fn parse_uuid(s: String) -> StoreResult<Uuid> {
    Uuid::parse_str(&s)
        .with_context(|| format!("decode stored id {s:?}"))
        .map_err(StoreError::Internal)
}

impl Store {
    /// Returns the organisation called `name`, creating it if it does not exist.
    pub async fn ensure_organization(&self, name: &str) -> StoreResult<Organization> {
        if let Some(org) = self.organization_by_name(name).await? {
            return Ok(org);
        }
        let org = Organization {
            id: Uuid::new_v4(),
            name: name.to_string(),
            created_at: now_unix(),
        };
        let inserted = sqlx::query(
            "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(org.id.to_string())
        .bind(&org.name)
        .bind(org.created_at)
        .execute(self.pool())
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(org);
        }
        // Another writer created it between our read and our insert.
        self.organization_by_name(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("organization {name:?}")))
    }

    /// Looks an organisation up by name.
    pub async fn organization_by_name(&self, name: &str) -> StoreResult<Option<Organization>> {
        let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    /// Looks an organisation up by id.
    pub async fn organization(&self, id: Uuid) -> StoreResult<Organization> {
        let row = sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => org_from_row(&row),
            None => Err(StoreError::NotFound(format!("organization {id}"))),
        }
    }

    /// A window of every organisation in creation order, and how many there are; for
    /// operators.
    pub async fn list_organizations(
        &self,
        window: Window,
    ) -> StoreResult<(Vec<Organization>, i64)> {
        let rows = sqlx::query(
            "SELECT id, name, created_at FROM organizations ORDER BY created_at, id \
             LIMIT $1 OFFSET $2",
        )
        .bind(window.limit)
        .bind(window.offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
            .fetch_one(self.pool())
            .await?;
        Ok((
            rows.iter().map(org_from_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    /// Stores a token by the SHA-256 of its secret.
    pub async fn insert_token(&self, token: &TokenRecord, token_hash: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, organization_id, name, role, token_hash, display_prefix, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token.id.to_string())
        .bind(token.organization_id.to_string())
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(token_hash)
        .bind(&token.display_prefix)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The token whose secret hashes to `token_hash`, if any.
    pub async fn token_by_hash(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT id, organization_id, name, role, display_prefix, created_at, expires_at \
             FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The organisation's tokens in id order, after the cursor.
    pub async fn list_tokens(
        &self,
        org: Uuid,
        window: Window,
    ) -> StoreResult<(Vec<TokenRecord>, i64)> {
        let rows = sqlx::query(
            "SELECT id, organization_id, name, role, display_prefix, created_at, expires_at \
             FROM api_tokens WHERE organization_id = $1 ORDER BY created_at, id \
             LIMIT $2 OFFSET $3",
        )
        .bind(org.to_string())
        .bind(window.limit)
        .bind(window.offset)
        .fetch_all(self.pool())
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE organization_id = $1")
                .bind(org.to_string())
                .fetch_one(self.pool())
                .await?;
        Ok((
            rows.iter()
                .map(token_from_row)
                .collect::<StoreResult<_>>()?,
            total,
        ))
    }

    /// One token of the organisation.
    pub async fn token(&self, org: Uuid, id: Uuid) -> StoreResult<TokenRecord> {
        let row = sqlx::query(
            "SELECT id, organization_id, name, role, display_prefix, created_at, expires_at \
             FROM api_tokens WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => token_from_row(&row),
            None => Err(StoreError::NotFound(format!("token {id}"))),
        }
    }

    /// Revokes a token of the organisation.
    pub async fn delete_token(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE organization_id = $1 AND id = $2")
            .bind(org.to_string())
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }
}
