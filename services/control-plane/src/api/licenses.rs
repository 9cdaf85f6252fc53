//! `/v2/organizations/{org_id}/license`: the license data planes of an organisation run
//! under. Members of the organisation read it; only operators change it.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{parse_body, parse_id, JsonBody, PathParams};
use crate::auth::Caller;
use crate::cluster::license::SignedLicense;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::Role;

/// The license path, as registered and as documented.
pub const PATH: &str = "/v2/organizations/{organization_id}/license";

/// Latest expiry accepted (the year 9999), so the value fits every client's date type.
const MAX_EXPIRES_AT: i64 = 253_402_300_799;

/// License routes.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(show).put(replace))
}

/// Body of `PUT /v2/organizations/{org_id}/license`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutLicense {
    /// New expiry, Unix seconds. A time in the past revokes the license: data planes stop
    /// proxying as soon as they receive it.
    pub expires_at: i64,
}

/// An organisation's license.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct License {
    /// The organisation.
    pub organization_id: Uuid,
    /// Unique per issued license.
    pub license_id: Uuid,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// The Ed25519-signed blob data planes receive (`fgl1.<payload>.<signature>`).
    pub signed_blob: String,
}

impl From<SignedLicense> for License {
    fn from(l: SignedLicense) -> Self {
        Self {
            organization_id: l.claims.organization_id,
            license_id: l.claims.license_id,
            issued_at: l.claims.issued_at,
            expires_at: l.claims.expires_at,
            signed_blob: l.blob,
        }
    }
}

/// The organisation named by the path, if the caller may see it: its own, or any for an
/// operator. Another organisation is "not found", as everywhere else.
async fn visible_org(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<Uuid> {
    let org = parse_id(raw, "organization")?;
    if org != caller.organization_id && caller.role != Role::Operator {
        return Err(ApiError::NotFound(format!(
            "organization {org} was not found"
        )));
    }
    state.store.organization(org).await?;
    Ok(org)
}

/// The organisation's current license (a default one is issued on first use).
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
) -> ApiResult<Json<License>> {
    let org = visible_org(&state, &caller, &org).await?;
    let license = state.licenses.current_for(&state.store, org).await?;
    Ok(Json(license.into()))
}

/// Issues a new license with the given expiry (operators only) and pushes it to the
/// organisation's connected data planes.
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<License>> {
    caller.require_operator()?;
    let org = visible_org(&state, &caller, &org).await?;
    if body.get("expires_at").is_none() {
        return Err(ApiError::field("expires_at", "is required (Unix seconds)"));
    }
    let body: PutLicense = parse_body(body)?;
    if !(0..=MAX_EXPIRES_AT).contains(&body.expires_at) {
        return Err(ApiError::field(
            "expires_at",
            format!("must be Unix seconds from 0 to {MAX_EXPIRES_AT}"),
        ));
    }
    let license = state
        .licenses
        .issue(&state.store, org, body.expires_at)
        .await?;
    state.cluster.spawn_license_changed(org);
    Ok(Json(license.into()))
}
