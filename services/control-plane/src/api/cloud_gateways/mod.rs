//! `/v2/cloud-gateways/...`: dedicated cloud gateways in Konnect's shapes — provider accounts,
//! networks, their transit gateways, and per-control-plane configurations (docs/architecture.md, docs/cloud-gateways.md).
//! Every call is scoped to the caller's organisation; viewers only read.

pub mod availability;
pub mod configurations;
pub mod filters;
pub mod group_body;
pub mod networks;
pub mod nodes;
pub mod provider_accounts;
pub mod transit_gateways;

use axum::Router;
use fleetgate_config::FieldError;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The common prefix.
pub const PREFIX: &str = "/v2/cloud-gateways";

/// All cloud-gateway routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(provider_accounts::router())
        .merge(networks::router())
        .merge(transit_gateways::router())
        .merge(configurations::router())
        .merge(nodes::router())
        .merge(availability::router())
}

/// Starts a reconcile pass at once after a successful change, so users see `initializing`
/// turn into `ready` without waiting for the next timed pass.
pub async fn wake_reconciler(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let changes = request.method() != http::Method::GET && request.method() != http::Method::HEAD;
    let response = next.run(request).await;
    if changes && response.status().is_success() {
        state.cloud_wake.wake();
    }
    response
}

/// Why a resource is in its state, when that needs saying.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateMetadata {
    /// What the backing infrastructure reported: `ERROR` while the last attempt failed.
    pub reported_status: Option<String>,
    /// Human-readable reason (e.g. what the user must fix).
    pub reason: Option<String>,
}

/// The state Konnect's enum shows for a stored state, and its metadata. Konnect's network
/// and dataplane-group enums have no `error`: a failed attempt is retried by the reconciler,
/// so the resource shows `initializing` with `reported_status: ERROR` and the reason.
pub(crate) fn konnect_state(stored: &str, reason: Option<String>) -> (String, StateMetadata) {
    if stored == "error" {
        (
            "initializing".into(),
            StateMetadata {
                reported_status: Some("ERROR".into()),
                reason,
            },
        )
    } else {
        (
            stored.into(),
            StateMetadata {
                reported_status: None,
                reason,
            },
        )
    }
}

/// Checks a name: 1–100 characters, not blank.
pub(crate) fn check_name(field: &str, name: &str, errors: &mut Vec<FieldError>) {
    if name.trim().is_empty() || name.chars().count() > 100 {
        errors.push(FieldError {
            field: field.into(),
            reason: "must be 1 to 100 characters and not blank".into(),
        });
    }
}

/// Fails naming the first required field a JSON object lacks (serde's own message does not
/// name it as a field).
pub(crate) fn require_fields(body: &serde_json::Value, fields: &[&str]) -> Result<(), ApiError> {
    if let Some(map) = body.as_object() {
        for field in fields {
            if !map.contains_key(*field) {
                return Err(ApiError::field(*field, "is required"));
            }
        }
    }
    Ok(())
}

/// For a PATCH that may change only `allowed`: every other key of the body is refused,
/// naming it, and saying whether it is a field that cannot change or one that does not exist.
pub(crate) fn only_changeable(
    body: &serde_json::Value,
    allowed: &[&str],
    immutable: &[&str],
) -> Result<(), ApiError> {
    let Some(map) = body.as_object() else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    let mut errors = Vec::new();
    for key in map.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        let reason = if immutable.contains(&key.as_str()) {
            format!("cannot be changed; only {} may change", allowed.join(", "))
        } else {
            format!("unknown field; only {} may change", allowed.join(", "))
        };
        errors.push(FieldError {
            field: key.clone(),
            reason,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::fields(errors))
    }
}

/// Parses an id given in a body field; a malformed one is a 400 naming the field.
pub(crate) fn body_id(field: &str, raw: &str) -> Result<Uuid, FieldError> {
    Uuid::parse_str(raw).map_err(|_| FieldError {
        field: field.into(),
        reason: format!("{raw:?} is not an id (a UUID)"),
    })
}
