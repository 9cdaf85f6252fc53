//! `/v2/organizations/me` and `/v2/organizations` (operators only).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::extract::QueryParams;
use super::paging::{NumberedList, NumberedPage, NUMBERED_PAGE_PARAMS};
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
) -> ApiResult<Json<NumberedList<Organization>>> {
    caller.require_operator()?;
    query.only(&NUMBERED_PAGE_PARAMS)?;
    let page = NumberedPage::from_query(&query)?;
    let (orgs, total) = state.store.list_organizations(page.window()).await?;
    Ok(Json(page.finish(orgs, total)))
}
