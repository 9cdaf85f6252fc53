//! The REST API: one module per resource, merged here into one router.

pub mod analytics;
pub mod billing;
pub mod cloud_gateways;
pub mod control_planes;
pub mod declarative;
pub mod dp_certificates;
pub mod entities;
pub mod extract;
pub mod health;
pub mod join_tokens;
pub mod licenses;
pub mod nodes;
pub mod organizations;
pub mod paging;
pub mod portals;
pub mod schemas;
pub mod timestamps;
pub mod tokens;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest JSON body of an ordinary API call.
pub const MAX_JSON_BYTES: usize = 2 * 1024 * 1024;

/// The whole HTTP API over the given state.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(organizations::router())
        .merge(tokens::router())
        .merge(control_planes::router())
        .merge(dp_certificates::router())
        .merge(join_tokens::router())
        .merge(licenses::router())
        .merge(nodes::router())
        .merge(entities::router())
        .merge(schemas::router())
        .merge(analytics::router())
        .merge(portals::router())
        .merge(billing::router())
        .merge(
            cloud_gateways::router().layer(axum::middleware::from_fn_with_state(
                state.clone(),
                cloud_gateways::wake_reconciler,
            )),
        )
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES))
        // Mounted after the limit above so its own, larger limit applies.
        .merge(declarative::router())
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn openapi_json() -> Json<serde_json::Value> {
    Json(crate::openapi::document_json())
}

async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::NotFound(format!("no API resource at {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
