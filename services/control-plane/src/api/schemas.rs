//! `/v2/control-planes/{id}/core-entities/schemas/plugins/{name}`: the config schema of each
//! plugin the data plane runs.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::plugins::{plugin_schema, PLUGIN_NAMES};
use serde_json::json;

use super::extract::{parse_id, PathParams, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Plugin schema routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/control-planes/{control_plane_id}/core-entities/schemas/plugins/{plugin_name}",
            get(plugin),
        )
        // A core-entities path: Kong's 401 body, like the entities themselves.
        .layer(axum::middleware::map_response(
            super::entities::kong_unauthorized,
        ))
}

/// The JSON Schema of a plugin's `config`.
pub async fn plugin(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, name)): PathParams<(String, String)>,
    query: QueryParams,
) -> ApiResult<Json<serde_json::Value>> {
    query.only(&[])?;
    let cp = parse_id(&cp, "control plane")?;
    state
        .store
        .control_plane(caller.organization_id, cp)
        .await?;
    let schema = plugin_schema(&name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no plugin named {name:?}; available: {}",
            PLUGIN_NAMES.join(", ")
        ))
    })?;
    Ok(Json(json!({ "name": name, "config": schema })))
}
