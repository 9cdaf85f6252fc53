//! `/v2/control-planes/{id}/dp-client-certificates`: the certificates data-plane nodes of a
//! control plane authenticate with (Konnect's shape), and `generate`, which hands out a
//! certificate with its private key exactly once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{parse_body, parse_id, JsonBody, PathParams, QueryParams};
use super::nodes::Item;
use super::paging::{CursorList, CursorPage, CURSOR_PAGE_PARAMS};
use crate::auth::Caller;
use crate::cluster::enrol::ensure_control_plane_ca;
use crate::cluster::identity::CertificateInfo;
use crate::cluster::tls;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_unix, DpCertificateRecord, NewDpCertificate};

/// The collection path, as registered and as documented.
pub const COLLECTION: &str = "/v2/control-planes/{control_plane_id}/dp-client-certificates";

/// dp-client-certificate routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).post(create))
        .route(&format!("{COLLECTION}/generate"), post(generate))
        .route(
            &format!("{COLLECTION}/{{certificate_id}}"),
            get(show).delete(remove),
        )
}

/// Body of `POST …/dp-client-certificates`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDpCertificate {
    /// The certificate, PEM: the node's own certificate (pinned_client_certs) or the CA that
    /// signs nodes' certificates (pki_client_certs).
    pub cert: String,
    /// A title for the certificate (Konnect's optional `title`).
    #[serde(default)]
    pub title: Option<String>,
}

/// A registered dp-client-certificate: Konnect's fields (`id`, `cert`, `title`, `created_at`,
/// `updated_at`), then what Fleetgate read from the certificate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DpClientCertificate {
    /// Certificate id.
    pub id: Uuid,
    /// The certificate, PEM.
    pub cert: String,
    /// The title given at registration; absent when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Registration time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds: registrations do not change, so `created_at`.
    pub updated_at: i64,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint_sha256: String,
    /// Subject DN.
    pub subject: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
}

impl From<DpCertificateRecord> for DpClientCertificate {
    fn from(r: DpCertificateRecord) -> Self {
        Self {
            id: r.id,
            cert: r.cert,
            title: r.title,
            created_at: r.created_at,
            updated_at: r.created_at,
            fingerprint_sha256: r.fingerprint_sha256,
            subject: r.subject,
            not_after: r.not_after,
        }
    }
}

/// Answer of `POST …/dp-client-certificates/generate`. The key is shown this once and never
/// stored: keep it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GeneratedDpCertificate {
    /// The certificate to configure as `cluster_cert`. In pinned mode it is the registered
    /// certificate itself. In pki mode it is a certificate signed by the control plane's CA;
    /// `id` is then the CA's registration (deleting it revokes every certificate it signed).
    pub item: DpClientCertificate,
    /// The private key to configure as `cluster_cert_key` (PEM, PKCS#8).
    pub key: String,
}

/// Longest `title` accepted.
const MAX_TITLE_LEN: usize = 255;

/// Checks a PEM body names one current certificate; every failure names `cert`.
fn inspect(pem: &str, title: Option<String>) -> ApiResult<NewDpCertificate> {
    if let Some(title) = &title {
        if title.trim().is_empty() || title.chars().count() > MAX_TITLE_LEN {
            return Err(ApiError::field(
                "title",
                format!("must be 1 to {MAX_TITLE_LEN} characters, not blank"),
            ));
        }
    }
    if pem.trim().is_empty() {
        return Err(ApiError::field("cert", "must be a PEM certificate"));
    }
    let info = CertificateInfo::from_pem(pem).map_err(|reason| ApiError::field("cert", reason))?;
    let now = now_unix();
    if info.not_after < now {
        return Err(ApiError::field(
            "cert",
            "the certificate has expired (its notAfter is in the past)",
        ));
    }
    Ok(NewDpCertificate {
        cert: pem.trim().to_string() + "\n",
        fingerprint_sha256: info.fingerprint_sha256,
        subject: info.subject,
        not_after: info.not_after,
        title,
    })
}

/// The control plane's certificates in id order: `{items, page: {total, next}}`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    query: QueryParams,
) -> ApiResult<Json<CursorList<DpClientCertificate>>> {
    query.only(&CURSOR_PAGE_PARAMS)?;
    let cp = parse_id(&cp, "control plane")?;
    let page = CursorPage::from_query(&query)?;
    state
        .store
        .control_plane(caller.organization_id, cp)
        .await?;
    let records = state
        .store
        .list_dp_certificates(
            caller.organization_id,
            cp,
            page.after.as_deref(),
            page.fetch_limit(),
        )
        .await?;
    let total = state
        .store
        .count_dp_certificates(caller.organization_id, cp)
        .await?;
    let items = records.into_iter().map(DpClientCertificate::from).collect();
    Ok(Json(page.finish(
        items,
        total,
        |c: &DpClientCertificate| c.id.to_string(),
    )))
}

/// Registers a certificate: 201 `{item}`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Item<DpClientCertificate>>)> {
    caller.require_write()?;
    let cp = parse_id(&cp, "control plane")?;
    // A body without `cert` names it, as Konnect's 400 does, rather than the whole body.
    if body.as_object().is_some_and(|o| !o.contains_key("cert")) {
        return Err(ApiError::field("cert", "is required: the certificate, PEM"));
    }
    let body: CreateDpCertificate = parse_body(body)?;
    // 404 for another organisation's control plane before saying anything about the body.
    state
        .store
        .control_plane(caller.organization_id, cp)
        .await?;
    let new = inspect(&body.cert, body.title)?;
    let record = state
        .store
        .create_dp_certificate(caller.organization_id, cp, new)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Item {
            item: record.into(),
        }),
    ))
}

/// One certificate: `{item}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, id)): PathParams<(String, String)>,
) -> ApiResult<Json<Item<DpClientCertificate>>> {
    let cp = parse_id(&cp, "control plane")?;
    let id = parse_id(&id, "dp-client-certificate")?;
    let record = state
        .store
        .dp_certificate(caller.organization_id, cp, id)
        .await?;
    Ok(Json(Item {
        item: record.into(),
    }))
}

/// Removes a certificate and closes the sessions of nodes identified through it.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, id)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let cp = parse_id(&cp, "control plane")?;
    let id = parse_id(&id, "dp-client-certificate")?;
    state
        .store
        .delete_dp_certificate(caller.organization_id, cp, id)
        .await?;
    let closed = state.cluster.close_sessions_for_certificate(id);
    if closed > 0 {
        tracing::info!(certificate_id = %id, sessions = closed, "closed sessions of a deleted dp-client-certificate");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a certificate and key for a node: self-signed and registered (pinned mode), or
/// signed by the control plane's CA, created and registered on first use (pki mode).
pub async fn generate(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
) -> ApiResult<(StatusCode, Json<GeneratedDpCertificate>)> {
    caller.require_write()?;
    let cp_id = parse_id(&cp, "control plane")?;
    let org = caller.organization_id;
    let control_plane = state.store.control_plane(org, cp_id).await?;
    if control_plane.auth_type != "pki_client_certs" {
        let issued = tls::self_signed_client_cert()?;
        let record = state
            .store
            .create_dp_certificate(org, cp_id, inspect(&issued.cert_pem, None)?)
            .await?;
        return Ok((
            StatusCode::CREATED,
            Json(GeneratedDpCertificate {
                item: record.into(),
                key: issued.key_pem,
            }),
        ));
    }
    let ca = ensure_control_plane_ca(&state.store, org, cp_id).await?;
    let issued = tls::client_cert_signed_by_control_plane_ca(cp_id, &ca.key_pem)?;
    let leaf = inspect(&issued.cert_pem, None)?;
    let now = now_unix();
    Ok((
        StatusCode::CREATED,
        Json(GeneratedDpCertificate {
            item: DpClientCertificate {
                id: ca.certificate.id,
                cert: leaf.cert,
                title: None,
                created_at: now,
                updated_at: now,
                fingerprint_sha256: leaf.fingerprint_sha256,
                subject: leaf.subject,
                not_after: leaf.not_after,
            },
            key: issued.key_pem,
        }),
    ))
}
