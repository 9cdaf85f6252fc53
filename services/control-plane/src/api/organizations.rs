//! `/v2/organizations/me` and `/v2/organizations` (operators only).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::{Page, PageOf, QueryParams};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use crate::store::Organization;

/// Organisation routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/organizations/me", get(me))
        .route("/v2/organizations", get(list))
}

/// The caller's organisation.
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Organization>> {
    Ok(Json(
        state.store.organization(caller.organization_id).await?,
    ))
}

/// Every organisation (operator tokens only).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<PageOf<Organization>>> {
    caller.require_operator()?;
    let page = Page::from_query(&query)?;
    let orgs = state
        .store
        .list_organizations(page.after.as_deref(), page.fetch_limit())
        .await?;
    Ok(Json(page.finish(orgs, |o| o.id.to_string())))
}
