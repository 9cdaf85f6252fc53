//! `/v2/tokens`: the organisation's API tokens. The secret is shown once, at creation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::{parse_body, parse_id, JsonBody, PathParams, QueryParams};
use super::paging::{NumberedList, NumberedPage, NUMBERED_PAGE_PARAMS};
use crate::auth::{issue_token, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_unix, Role, TokenRecord};

/// Token routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/tokens", get(list).post(create))
        .route("/v2/tokens/{token_id}", get(show).delete(remove))
}

/// Body of `POST /v2/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Human name of the token.
    pub name: String,
    /// `admin` or `viewer`; only an operator may mint `operator` tokens.
    pub role: Role,
    /// Expiry, Unix seconds (optional).
    pub expires_at: Option<i64>,
}

/// A created token: the only time its secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The stored token.
    #[serde(flatten)]
    pub record: TokenRecord,
    /// The bearer secret; store it now, it cannot be shown again.
    pub token: String,
}

/// Lists the organisation's tokens (no secrets).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<TokenRecord>>> {
    query.only(&NUMBERED_PAGE_PARAMS)?;
    let page = NumberedPage::from_query(&query)?;
    let (tokens, total) = state
        .store
        .list_tokens(caller.organization_id, page.window())
        .await?;
    Ok(Json(page.finish(tokens, total)))
}

/// Mints a token in the caller's organisation.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require_write()?;
    let body: CreateToken = parse_body(body)?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::field("name", "must be 1 to 128 characters"));
    }
    if body.role == Role::Operator && caller.role != Role::Operator {
        return Err(ApiError::Forbidden(
            "only an operator token can create operator tokens".into(),
        ));
    }
    if body.expires_at.is_some_and(|t| t <= now_unix()) {
        return Err(ApiError::field("expires_at", "must be in the future"));
    }
    let issued = issue_token(
        &state.store,
        caller.organization_id,
        name,
        body.role,
        body.expires_at,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            record: issued.record,
            token: issued.secret,
        }),
    ))
}

/// One token (no secret).
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<TokenRecord>> {
    let id = parse_id(&id, "token")?;
    Ok(Json(state.store.token(caller.organization_id, id).await?))
}

/// Revokes a token.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let id = parse_id(&id, "token")?;
    state.store.delete_token(caller.organization_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
