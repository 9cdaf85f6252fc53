//! `/v2/portals`: dev portals (Konnect-shaped). A published portal counts as active for
//! billing; publishing, unpublishing and deleting are recorded by the store for that.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::FieldError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::extract::{parse_body, parse_id, JsonBody, PathParams, QueryParams};
use super::paging::{NumberedList, NumberedPage, NUMBERED_PAGE_PARAMS};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{NewPortal, PortalRecord, PortalUpdate};

/// The collection path.
pub const COLLECTION: &str = "/v2/portals";
/// One portal's path.
pub const ITEM: &str = "/v2/portals/{portal_id}";

/// Portal routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).post(create))
        .route(ITEM, get(show).patch(update).delete(remove))
}

/// Body of `POST /v2/portals`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortal {
    /// Unique name within the organisation (1–100 characters).
    pub name: String,
    /// Free text (up to 250 characters).
    #[serde(default)]
    pub description: String,
    /// Whether developers can see it; published portals count as active for billing.
    #[serde(default)]
    pub published: bool,
}

/// Body of `PATCH /v2/portals/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePortal {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Publish (`true`) or unpublish (`false`).
    pub published: Option<bool>,
}

/// A dev portal as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Portal {
    /// Portal id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Whether it is published (counts as an active portal for billing).
    pub published: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl From<PortalRecord> for Portal {
    fn from(r: PortalRecord) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            published: r.published,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) {
    if name.trim().is_empty() || name.chars().count() > 100 {
        errors.push(FieldError {
            field: "name".into(),
            reason: "must be 1 to 100 characters and not blank".into(),
        });
    }
}

fn check_description(description: &str, errors: &mut Vec<FieldError>) {
    if description.chars().count() > 250 {
        errors.push(FieldError {
            field: "description".into(),
            reason: "must be at most 250 characters".into(),
        });
    }
}

/// The organisation's portals.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<Portal>>> {
    query.only(&NUMBERED_PAGE_PARAMS)?;
    let page = NumberedPage::from_query(&query)?;
    let (records, total) = state
        .store
        .list_portals(caller.organization_id, page.window())
        .await?;
    let items = records.into_iter().map(Portal::from).collect();
    Ok(Json(page.finish(items, total)))
}

/// Creates a portal.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Portal>)> {
    caller.require_write()?;
    // serde's own message for a missing field does not say which one is missing in a way
    // that maps to a field; name it explicitly.
    if body.is_object() && body.get("name").is_none() {
        return Err(ApiError::field("name", "is required"));
    }
    let body: CreatePortal = parse_body(body)?;
    let mut errors = Vec::new();
    check_name(&body.name, &mut errors);
    check_description(&body.description, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let record = state
        .store
        .create_portal(
            caller.organization_id,
            NewPortal {
                name: body.name.trim().to_string(),
                description: body.description,
                published: body.published,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One portal.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Portal>> {
    let id = parse_id(&id, "portal")?;
    let record = state.store.portal(caller.organization_id, id).await?;
    Ok(Json(record.into()))
}

/// Changes name, description or publication.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Portal>> {
    caller.require_write()?;
    let id = parse_id(&id, "portal")?;
    let body: UpdatePortal = parse_body(body)?;
    let mut errors = Vec::new();
    if let Some(name) = &body.name {
        check_name(name, &mut errors);
    }
    if let Some(description) = &body.description {
        check_description(description, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let record = state
        .store
        .update_portal(
            caller.organization_id,
            id,
            PortalUpdate {
                name: body.name.map(|n| n.trim().to_string()),
                description: body.description,
                published: body.published,
            },
        )
        .await?;
    Ok(Json(record.into()))
}

/// Deletes a portal.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let id = parse_id(&id, "portal")?;
    state
        .store
        .delete_portal(caller.organization_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
