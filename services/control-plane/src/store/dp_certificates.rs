//! dp-client-certificates: the certificates data-plane nodes authenticate with (a pinned leaf,
//! or a CA in pki mode), and the CA Fleetgate keeps per control plane for `generate`.

use sqlx::Row;
use uuid::Uuid;

use super::organizations::parse_uuid;
use super::{now_unix, Store, StoreError, StoreResult};

/// A registered dp-client-certificate (public certificate only).
#[derive(Debug, Clone)]
pub struct DpCertificateRecord {
    /// Certificate id.
    pub id: Uuid,
    /// The control plane it admits nodes to.
    pub control_plane_id: Uuid,
    /// The certificate, PEM.
    pub cert: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
    /// Subject DN.
    pub subject: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// Konnect's optional title.
    pub title: Option<String>,
    /// Registration time, Unix seconds.
    pub created_at: i64,
}

/// What is known about a certificate before it is registered.
#[derive(Debug, Clone)]
pub struct NewDpCertificate {
    /// The certificate, PEM.
    pub cert: String,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
    /// Subject DN.
    pub subject: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// Konnect's optional title.
    pub title: Option<String>,
}

/// Who a registered certificate admits a node to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateOwner {
    /// The registered certificate.
    pub certificate_id: Uuid,
    /// Its control plane.
    pub control_plane_id: Uuid,
    /// The control plane's organisation.
    pub organization_id: Uuid,
    /// The registered certificate, PEM (a pki CA is checked against it).
    pub cert: String,
    /// The registered certificate's expiry, Unix seconds.
    pub not_after: i64,
}

/// The CA Fleetgate keeps for a control plane in pki mode.
#[derive(Clone)]
pub struct ControlPlaneCa {
    /// Its registration as a dp-client-certificate.
    pub certificate: DpCertificateRecord,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for ControlPlaneCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneCa")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "d.id, d.control_plane_id, d.cert, d.fingerprint_sha256, d.subject, \
    d.not_after, d.title, d.created_at";

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<DpCertificateRecord> {
    Ok(DpCertificateRecord {
        id: parse_uuid(row.try_get("id")?)?,
        control_plane_id: parse_uuid(row.try_get("control_plane_id")?)?,
        cert: row.try_get("cert")?,
        fingerprint_sha256: row.try_get("fingerprint_sha256")?,
        subject: row.try_get("subject")?,
        not_after: row.try_get("not_after")?,
        title: row.try_get("title")?,
        created_at: row.try_get("created_at")?,
    })
}

fn owner_from_row(row: &sqlx::any::AnyRow) -> StoreResult<CertificateOwner> {
    Ok(CertificateOwner {
        certificate_id: parse_uuid(row.try_get("id")?)?,
        control_plane_id: parse_uuid(row.try_get("control_plane_id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        cert: row.try_get("cert")?,
        not_after: row.try_get("not_after")?,
    })
}

fn duplicate() -> StoreError {
    StoreError::Conflict {
        message: "this certificate is already registered with the control plane".into(),
        field: Some("cert".into()),
    }
}

pub(super) async fn insert(
    conn: &mut sqlx::AnyConnection,
    control_plane_id: Uuid,
    new: NewDpCertificate,
) -> StoreResult<DpCertificateRecord> {
    let record = DpCertificateRecord {
        id: Uuid::new_v4(),
        control_plane_id,
        cert: new.cert,
        fingerprint_sha256: new.fingerprint_sha256,
        subject: new.subject,
        not_after: new.not_after,
        title: new.title,
        created_at: now_unix(),
    };
    let result = sqlx::query(
        "INSERT INTO dp_client_certificates (id, control_plane_id, cert, fingerprint_sha256, \
         subject, not_after, title, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.id.to_string())
    .bind(control_plane_id.to_string())
    .bind(&record.cert)
    .bind(&record.fingerprint_sha256)
    .bind(&record.subject)
    .bind(record.not_after)
    .bind(&record.title)
    .bind(record.created_at)
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(record),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(duplicate()),
        Err(e) => Err(e.into()),
    }
}

/// Fails with "not found" unless the control plane belongs to the organisation. (Callers
/// run it in a [`Store::begin_write`] transaction, which on SQLite already holds the write
/// lock, so the write that follows cannot fail on a concurrent writer.)
pub(super) async fn check_control_plane(
    conn: &mut sqlx::AnyConnection,
    org: Uuid,
    control_plane_id: Uuid,
) -> StoreResult<()> {
    let row = sqlx::query("SELECT id FROM control_planes WHERE organization_id = $1 AND id = $2")
        .bind(org.to_string())
        .bind(control_plane_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!(
            "control plane {control_plane_id}"
        ))),
    }
}

impl Store {
    /// Registers a certificate with a control plane of the organisation.
    pub async fn create_dp_certificate(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
        new: NewDpCertificate,
    ) -> StoreResult<DpCertificateRecord> {
        let mut tx = self.begin_write().await?;
        check_control_plane(&mut tx, org, control_plane_id).await?;
        let record = insert(&mut tx, control_plane_id, new).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// One registered certificate; another organisation's is "not found".
    pub async fn dp_certificate(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
        id: Uuid,
    ) -> StoreResult<DpCertificateRecord> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dp_client_certificates d \
             JOIN control_planes c ON c.id = d.control_plane_id \
             WHERE c.organization_id = $1 AND d.control_plane_id = $2 AND d.id = $3"
        ))
        .bind(org.to_string())
        .bind(control_plane_id.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => from_row(&row),
            None => Err(StoreError::NotFound(format!("dp-client-certificate {id}"))),
        }
    }

    /// The control plane's certificates in id order, after the cursor.
    pub async fn list_dp_certificates(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
        after: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<DpCertificateRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dp_client_certificates d \
             JOIN control_planes c ON c.id = d.control_plane_id \
             WHERE c.organization_id = $1 AND d.control_plane_id = $2 AND d.id > $3 \
             ORDER BY d.id LIMIT $4"
        ))
        .bind(org.to_string())
        .bind(control_plane_id.to_string())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// How many certificates the control plane has (`page.total` of the list).
    pub async fn count_dp_certificates(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
    ) -> StoreResult<i64> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM dp_client_certificates d \
             JOIN control_planes c ON c.id = d.control_plane_id \
             WHERE c.organization_id = $1 AND d.control_plane_id = $2",
        )
        .bind(org.to_string())
        .bind(control_plane_id.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(total)
    }

    /// Removes a registration. When it was the control plane's generated CA, the CA (and its
    /// key) goes too: every certificate it issued stops working, and `generate` starts anew.
    pub async fn delete_dp_certificate(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
        id: Uuid,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        check_control_plane(&mut tx, org, control_plane_id).await?;
        let done = sqlx::query(
            "DELETE FROM dp_client_certificates WHERE control_plane_id = $1 AND id = $2",
        )
        .bind(control_plane_id.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("dp-client-certificate {id}")));
        }
        sqlx::query(
            "DELETE FROM control_plane_cas WHERE control_plane_id = $1 AND certificate_id = $2",
        )
        .bind(control_plane_id.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The control plane's generated CA, if it has one.
    pub async fn control_plane_ca(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
    ) -> StoreResult<Option<ControlPlaneCa>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, k.key_pem FROM control_plane_cas k \
             JOIN dp_client_certificates d ON d.id = k.certificate_id \
             JOIN control_planes c ON c.id = k.control_plane_id \
             WHERE c.organization_id = $1 AND k.control_plane_id = $2"
        ))
        .bind(org.to_string())
        .bind(control_plane_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => Ok(Some(ControlPlaneCa {
                certificate: from_row(&row)?,
                key_pem: row.try_get("key_pem")?,
            })),
            None => Ok(None),
        }
    }

    /// Stores a new generated CA for the control plane and registers its certificate, in one
    /// transaction. If another request created one first, that one is returned instead, so a
    /// control plane never ends up with two.
    pub async fn create_control_plane_ca(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
        certificate: NewDpCertificate,
        key_pem: &str,
    ) -> StoreResult<ControlPlaneCa> {
        let mut tx = self.begin_write().await?;
        check_control_plane(&mut tx, org, control_plane_id).await?;
        let record = insert(&mut tx, control_plane_id, certificate).await?;
        let result = sqlx::query(
            "INSERT INTO control_plane_cas (control_plane_id, certificate_id, key_pem, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(control_plane_id.to_string())
        .bind(record.id.to_string())
        .bind(key_pem)
        .bind(record.created_at)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {
                tx.commit().await?;
                Ok(ControlPlaneCa {
                    certificate: record,
                    key_pem: key_pem.to_string(),
                })
            }
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                tx.rollback().await?;
                self.control_plane_ca(org, control_plane_id)
                    .await?
                    .ok_or_else(|| {
                        StoreError::NotFound(format!("control plane {control_plane_id}"))
                    })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Registrations whose certificate has this fingerprint, in control planes that pin
    /// certificates (`pinned_client_certs`).
    pub async fn pinned_certificate_owners(
        &self,
        fingerprint_sha256: &str,
    ) -> StoreResult<Vec<CertificateOwner>> {
        let rows = sqlx::query(
            "SELECT d.id, d.control_plane_id, c.organization_id, d.cert, d.not_after \
             FROM dp_client_certificates d JOIN control_planes c ON c.id = d.control_plane_id \
             WHERE d.fingerprint_sha256 = $1 AND c.auth_type = 'pinned_client_certs' \
             ORDER BY d.id",
        )
        .bind(fingerprint_sha256)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(owner_from_row).collect()
    }

    /// Registrations whose subject is `issuer` (a leaf's issuer DN), in control planes that
    /// trust CAs (`pki_client_certs`): the CAs that may have signed the leaf.
    pub async fn pki_certificate_owners(&self, issuer: &str) -> StoreResult<Vec<CertificateOwner>> {
        let rows = sqlx::query(
            "SELECT d.id, d.control_plane_id, c.organization_id, d.cert, d.not_after \
             FROM dp_client_certificates d JOIN control_planes c ON c.id = d.control_plane_id \
             WHERE d.subject = $1 AND c.auth_type = 'pki_client_certs' ORDER BY d.id",
        )
        .bind(issuer)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(owner_from_row).collect()
    }
}
