//! `/v2/control-planes/{id}/dp-join-tokens`: single-use, short-lived tokens a node redeems on
//! the cluster listener's `/v1/enrol` for its cluster certificate (docs/clustering.md,
//! "Joining with a token"). The token text is shown once; only its hash is stored.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{parse_body, parse_id, PathParams};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::NewJoinToken;

/// The collection path, as registered and as documented.
pub const COLLECTION: &str = "/v2/control-planes/{control_plane_id}/dp-join-tokens";
/// Lifetime of a token when the body names none, seconds.
pub const DEFAULT_TTL_SECONDS: u64 = 900;
/// Longest lifetime a token may have, seconds (a day).
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// dp-join-token routes.
pub fn router() -> Router<AppState> {
    Router::new().route(COLLECTION, post(create))
}

/// Body of `POST …/dp-join-tokens` (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// How long the token can be redeemed, seconds: 1 to 86400, default 900.
    pub ttl_seconds: Option<u64>,
}

/// Answer of `POST …/dp-join-tokens`. The token is shown this once: give it to the node as
/// `cluster_join_token`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedJoinToken {
    /// Token id (logged by the control plane when the token is redeemed or refused).
    pub id: Uuid,
    /// The token (`fgjt_…`), single-use.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Mints a join token for a control plane.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<CreatedJoinToken>)> {
    caller.require_write()?;
    let cp = parse_id(&cp, "control plane")?;
    // 404 for another organisation's control plane before saying anything about the body.
    state
        .store
        .control_plane(caller.organization_id, cp)
        .await?;
    let body: CreateJoinToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateJoinToken::default()
    } else {
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the request body is not JSON: {e}")))?;
        parse_body(value)?
    };
    let ttl = body.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
    if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
        return Err(ApiError::field(
            "ttl_seconds",
            format!("must be from 1 to {MAX_TTL_SECONDS} seconds (a day)"),
        ));
    }
    let (record, token) = state
        .store
        .create_join_token(
            caller.organization_id,
            cp,
            NewJoinToken {
                ttl: Duration::from_secs(ttl),
                configuration_id: None,
                slot: None,
            },
        )
        .await?;
    tracing::info!(token_id = %record.id, control_plane_id = %cp, expires_at = record.expires_at, "created a dp join token");
    Ok((
        StatusCode::CREATED,
        Json(CreatedJoinToken {
            id: record.id,
            token,
            expires_at: record.expires_at,
        }),
    ))
}
