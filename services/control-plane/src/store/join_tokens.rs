//! dp-join-tokens: single-use, short-lived secrets a node redeems on the cluster listener's
//! `/v1/enrol` for a certificate of its own key (docs/clustering.md, "Joining with a token").
//! Only the SHA-256 of a token is stored, as for API tokens.

use base64::Engine as _;
use rand::RngCore;
use sqlx::Row;
use uuid::Uuid;

use super::dp_certificates::{check_control_plane, insert as insert_certificate};
use super::organizations::parse_uuid;
use super::{DpCertificateRecord, NewDpCertificate, Store, StoreError, StoreResult};
use crate::auth::hash_token;

/// Every join token starts with this, so leaked tokens are easy to scan for.
pub const JOIN_TOKEN_PREFIX: &str = "fgjt_";

/// Expired tokens are kept this long (seconds) so a late node still hears "expired" rather
/// than "unknown"; housekeeping deletes them afterwards.
const KEEP_EXPIRED_FOR: i64 = 24 * 60 * 60;

/// What a new join token is for.
#[derive(Debug, Clone)]
pub struct NewJoinToken {
    /// How long the token can be redeemed (whole seconds, at least one).
    pub ttl: std::time::Duration,
    /// The cloud-gateway configuration it was minted for, if any.
    pub configuration_id: Option<Uuid>,
    /// The node slot within that configuration, if any.
    pub slot: Option<u32>,
}

/// A stored join token (never the token text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRecord {
    /// Token id (safe to log).
    pub id: Uuid,
    /// The control plane's organisation.
    pub organization_id: Uuid,
    /// The control plane a node joins with it.
    pub control_plane_id: Uuid,
    /// The cloud-gateway configuration it was minted for, if any.
    pub configuration_id: Option<Uuid>,
    /// The node slot within that configuration, if any.
    pub slot: Option<u32>,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds: redeemable strictly before it.
    pub expires_at: i64,
    /// Redemption, Unix seconds.
    pub used_at: Option<i64>,
}

/// Why a join token was not redeemed. The Display text is what the node is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinTokenRefusal {
    /// No token has this text.
    #[error("unknown join token")]
    Unknown,
    /// Redeemed before (tokens are single-use).
    #[error("join token already used")]
    AlreadyUsed {
        /// The token's id.
        id: Uuid,
    },
    /// Past its expiry.
    #[error("join token expired")]
    Expired {
        /// The token's id.
        id: Uuid,
    },
}

impl JoinTokenRefusal {
    /// The token's id, when the token is known.
    pub fn token_id(&self) -> Option<Uuid> {
        match self {
            Self::Unknown => None,
            Self::AlreadyUsed { id } | Self::Expired { id } => Some(*id),
        }
    }
}

const COLUMNS: &str =
    "id, organization_id, control_plane_id, configuration_id, slot, created_at, expires_at, used_at";

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<JoinTokenRecord> {
    let configuration_id: Option<String> = row.try_get("configuration_id")?;
    let slot: Option<i64> = row.try_get("slot")?;
    Ok(JoinTokenRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        control_plane_id: parse_uuid(row.try_get("control_plane_id")?)?,
        configuration_id: configuration_id.map(parse_uuid).transpose()?,
        slot: slot.and_then(|s| u32::try_from(s).ok()),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get::<Option<i64>, _>("used_at")?,
    })
}

/// A fresh token text: the prefix and 32 random bytes, base64url (43 characters).
fn new_token_text() -> String {
    let mut random = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut random);
    format!(
        "{JOIN_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    )
}

/// Why the token with this hash cannot be redeemed at `now`, or its record when it can.
fn verdict(record: Option<JoinTokenRecord>, now: i64) -> Result<JoinTokenRecord, JoinTokenRefusal> {
    match record {
        None => Err(JoinTokenRefusal::Unknown),
        Some(r) if r.used_at.is_some() => Err(JoinTokenRefusal::AlreadyUsed { id: r.id }),
        Some(r) if r.expires_at <= now => Err(JoinTokenRefusal::Expired { id: r.id }),
        Some(r) => Ok(r),
    }
}

async fn by_hash(
    conn: &mut sqlx::AnyConnection,
    token_hash: &str,
) -> StoreResult<Option<JoinTokenRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dp_join_tokens WHERE token_hash = $1"
    ))
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

impl Store {
    /// Answers the record and the token text (shown once; only its hash is stored).
    pub async fn create_join_token(
        &self,
        org: Uuid,
        control_plane_id: Uuid,
        new: NewJoinToken,
    ) -> StoreResult<(JoinTokenRecord, String)> {
        let ttl = i64::try_from(new.ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let now = self.clock().now();
        let text = new_token_text();
        let record = JoinTokenRecord {
            id: Uuid::new_v4(),
            organization_id: org,
            control_plane_id,
            configuration_id: new.configuration_id,
            slot: new.slot,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            used_at: None,
        };
        let mut tx = self.begin_write().await?;
        check_control_plane(&mut tx, org, control_plane_id).await?;
        sqlx::query(
            "INSERT INTO dp_join_tokens (id, organization_id, control_plane_id, token_hash, \
             configuration_id, slot, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(record.id.to_string())
        .bind(org.to_string())
        .bind(control_plane_id.to_string())
        .bind(hash_token(&text))
        .bind(record.configuration_id.map(|c| c.to_string()))
        .bind(record.slot.map(i64::from))
        .bind(record.created_at)
        .bind(record.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((record, text))
    }

    /// The token's record if it could be redeemed now, else why not; marks nothing. Lets
    /// enrolment refuse early, before signing anything.
    pub async fn check_join_token(
        &self,
        token: &str,
    ) -> StoreResult<Result<JoinTokenRecord, JoinTokenRefusal>> {
        let mut conn = self.pool().acquire().await?;
        let record = by_hash(&mut conn, &hash_token(token)).await?;
        Ok(verdict(record, self.clock().now()))
    }

    /// Atomically marks the token used (`UPDATE … WHERE token_hash = $1 AND used_at IS NULL
    /// AND expires_at > now`), recording the fingerprint of the certificate issued for it;
    /// distinguishes unknown / already used / expired.
    pub async fn redeem_join_token(
        &self,
        token: &str,
        certificate_fingerprint: &str,
    ) -> StoreResult<Result<JoinTokenRecord, JoinTokenRefusal>> {
        let mut tx = self.begin_write().await?;
        let redeemed = redeem(&mut tx, token, certificate_fingerprint, self.clock().now()).await?;
        if redeemed.is_ok() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(redeemed)
    }

    /// Redeems the token and registers `certificate` with its control plane in one
    /// transaction (pinned mode): either both happen or neither, so a failed registration
    /// leaves the token unused and a refused token registers nothing.
    pub async fn redeem_join_token_registering(
        &self,
        token: &str,
        certificate: NewDpCertificate,
    ) -> StoreResult<Result<(JoinTokenRecord, DpCertificateRecord), JoinTokenRefusal>> {
        let mut tx = self.begin_write().await?;
        let record = match redeem(
            &mut tx,
            token,
            &certificate.fingerprint_sha256,
            self.clock().now(),
        )
        .await?
        {
            Ok(record) => record,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(Err(refusal));
            }
        };
        let registered = insert_certificate(&mut tx, record.control_plane_id, certificate).await?;
        tx.commit().await?;
        Ok(Ok((record, registered)))
    }

    /// Deletes tokens expired more than a day ago (housekeeping); answers how many.
    pub async fn delete_expired_join_tokens(&self) -> StoreResult<u64> {
        let before = self.clock().now().saturating_sub(KEEP_EXPIRED_FOR);
        let done = sqlx::query("DELETE FROM dp_join_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

/// The conditional UPDATE at the heart of redemption; on a miss, reads the row (in the same
/// transaction) to say why.
async fn redeem(
    conn: &mut sqlx::AnyConnection,
    token: &str,
    certificate_fingerprint: &str,
    now: i64,
) -> StoreResult<Result<JoinTokenRecord, JoinTokenRefusal>> {
    let token_hash = hash_token(token);
    let done = sqlx::query(
        "UPDATE dp_join_tokens SET used_at = $1, certificate_fingerprint = $2 \
         WHERE token_hash = $3 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(certificate_fingerprint)
    .bind(&token_hash)
    .execute(&mut *conn)
    .await?;
    let record = by_hash(conn, &token_hash).await?;
    if done.rows_affected() == 1 {
        return record
            .map(Ok)
            .ok_or_else(|| StoreError::NotFound("the join token just redeemed".into()));
    }
    match verdict(record, now) {
        // The UPDATE missed but the row looks redeemable: only a clock step between the two
        // statements could do that; treat it as used rather than guess.
        Ok(r) => Ok(Err(JoinTokenRefusal::AlreadyUsed { id: r.id })),
        Err(refusal) => Ok(Err(refusal)),
    }
}
