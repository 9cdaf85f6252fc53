//! Provider accounts: the cloud account (or the local machine) an organisation's networks are
//! created in.

use sqlx::Row;
use uuid::Uuid;

use super::super::organizations::parse_uuid;
use super::super::{Store, StoreError, StoreResult};

/// Where gateway nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloudProvider {
    /// Amazon Web Services (EC2), or an EC2-compatible endpoint.
    Aws,
    /// `fleetgate-dp` child processes on this machine (region `local`).
    Local,
}

impl CloudProvider {
    /// The contract name (`aws`, `local`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Local => "local",
        }
    }

    /// Parses a contract name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "aws" => Some(Self::Aws),
            "local" => Some(Self::Local),
            _ => None,
        }
    }
}

/// A stored provider account.
#[derive(Debug, Clone)]
pub struct ProviderAccountRecord {
    /// Fleetgate id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// Which cloud.
    pub provider: CloudProvider,
    /// The AWS account id, or `local`.
    pub provider_account_id: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// Fields of a new provider account.
#[derive(Debug, Clone)]
pub struct NewProviderAccount {
    /// Which cloud.
    pub provider: CloudProvider,
    /// The AWS account id, or `local`.
    pub provider_account_id: String,
}

const COLUMNS: &str = "id, organization_id, provider, provider_account_id, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<ProviderAccountRecord> {
    let provider: String = row.try_get("provider")?;
    Ok(ProviderAccountRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        provider: CloudProvider::parse(&provider).ok_or_else(|| {
            StoreError::Internal(anyhow::anyhow!("stored provider {provider:?} is unknown"))
        })?,
        provider_account_id: row.try_get("provider_account_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Registers a provider account; the same account twice in one organisation conflicts.
    pub async fn create_provider_account(
        &self,
        org: Uuid,
        new: NewProviderAccount,
    ) -> StoreResult<ProviderAccountRecord> {
        let now = self.clock().now();
        let record = ProviderAccountRecord {
            id: Uuid::new_v4(),
            organization_id: org,
            provider: new.provider,
            provider_account_id: new.provider_account_id,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO cloud_provider_accounts (id, organization_id, provider, \
             provider_account_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.id.to_string())
        .bind(org.to_string())
        .bind(record.provider.as_str())
        .bind(&record.provider_account_id)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
                message: format!(
                    "the {} account {:?} is already registered in this organization",
                    record.provider.as_str(),
                    record.provider_account_id
                ),
                field: Some("provider_account_id".into()),
            },
            other => other.into(),
        })?;
        Ok(record)
    }

    /// One provider account of the organisation.
    pub async fn provider_account(
        &self,
        org: Uuid,
        id: Uuid,
    ) -> StoreResult<ProviderAccountRecord> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cloud_provider_accounts WHERE organization_id = $1 AND id = $2"
        ))
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound(format!("provider account {id}"))),
        }
    }

    /// Every provider account of the organisation, oldest first. An organisation has a handful
    /// at most, so lists filter and page them in memory.
    pub async fn list_provider_accounts(
        &self,
        org: Uuid,
    ) -> StoreResult<Vec<ProviderAccountRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM cloud_provider_accounts WHERE organization_id = $1 \
             ORDER BY created_at, id"
        ))
        .bind(org.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The organisation's account of `provider` with this account id, registered first if
    /// it has none yet (every organisation sees the `local` account without creating it).
    pub async fn ensure_provider_account(
        &self,
        org: Uuid,
        new: NewProviderAccount,
    ) -> StoreResult<ProviderAccountRecord> {
        let find = || async {
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM cloud_provider_accounts WHERE organization_id = $1 \
                 AND provider = $2 AND provider_account_id = $3"
            ))
            .bind(org.to_string())
            .bind(new.provider.as_str())
            .bind(&new.provider_account_id)
            .fetch_optional(self.pool())
            .await?;
            row.as_ref().map(from_row).transpose()
        };
        if let Some(found) = find().await? {
            return Ok(found);
        }
        match self.create_provider_account(org, new.clone()).await {
            Ok(created) => Ok(created),
            // A concurrent caller registered it first: that row is the answer.
            Err(StoreError::Conflict { .. }) => find().await?.ok_or_else(|| {
                StoreError::Internal(anyhow::anyhow!("provider account vanished after conflict"))
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes a provider account; refused while any network (even a terminating one, whose
    /// resources still live in the account) uses it.
    pub async fn delete_provider_account(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE cloud_provider_accounts SET updated_at = updated_at \
             WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("provider account {id}")));
        }
        let users = sqlx::query(
            "SELECT name FROM cloud_networks WHERE provider_account_id = $1 ORDER BY name LIMIT 5",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            let names = users
                .iter()
                .map(|r| r.try_get::<String, _>("name").map(|n| format!("{n:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            return Err(StoreError::Conflict {
                message: format!(
                    "provider account {id} is used by network(s) {}; delete those networks first",
                    names.join(", ")
                ),
                field: None,
            });
        }
        sqlx::query("DELETE FROM cloud_provider_accounts WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
