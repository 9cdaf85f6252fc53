//! Each organisation's current license (claims and the signed blob data planes receive).

use sqlx::Row;
use uuid::Uuid;

use super::organizations::parse_uuid;
use super::{Store, StoreResult};

/// A stored license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseRecord {
    /// The organisation.
    pub organization_id: Uuid,
    /// Unique per issued license.
    pub license_id: Uuid,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// `fgl1.<payload>.<signature>`.
    pub signed_blob: String,
}

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<LicenseRecord> {
    Ok(LicenseRecord {
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        license_id: parse_uuid(row.try_get("license_id")?)?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        signed_blob: row.try_get("signed_blob")?,
    })
}

impl Store {
    /// The organisation's current license, if one was ever issued.
    pub async fn license(&self, org: Uuid) -> StoreResult<Option<LicenseRecord>> {
        let row = sqlx::query(
            "SELECT organization_id, license_id, issued_at, expires_at, signed_blob \
             FROM licenses WHERE organization_id = $1",
        )
        .bind(org.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Stores the license as the organisation's current one; with `replace` false an existing
    /// license wins (two replicas issuing a default at once agree on one). Returns the current
    /// license after the write.
    pub async fn put_license(
        &self,
        license: &LicenseRecord,
        replace: bool,
    ) -> StoreResult<LicenseRecord> {
        let conflict = if replace {
            "DO UPDATE SET license_id = excluded.license_id, issued_at = excluded.issued_at, \
             expires_at = excluded.expires_at, signed_blob = excluded.signed_blob"
        } else {
            "DO NOTHING"
        };
        sqlx::query(&format!(
            "INSERT INTO licenses (organization_id, license_id, issued_at, expires_at, signed_blob) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (organization_id) {conflict}"
        ))
        .bind(license.organization_id.to_string())
        .bind(license.license_id.to_string())
        .bind(license.issued_at)
        .bind(license.expires_at)
        .bind(&license.signed_blob)
        .execute(self.pool())
        .await?;
        Ok(self
            .license(license.organization_id)
            .await?
            .unwrap_or_else(|| license.clone()))
    }
}
