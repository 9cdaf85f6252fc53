//! `/v2/control-planes/{id}/declarative-config`: the whole gateway config in Kong's
//! declarative format. GET exports it; PUT replaces it atomically (all or nothing).

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::declarative::{self, DeclarativeError};
use fleetgate_config::{FieldError, GatewayConfig};
use http::{header, HeaderMap, HeaderValue};
use serde::Serialize;

use super::extract::{body_bytes, parse_id, PathParams};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::EntityWrite;

/// Largest declarative config accepted (Kong's full config is ~1 MB per 1,000 entities).
pub const MAX_DECLARATIVE_BYTES: usize = 64 * 1024 * 1024;

/// Declarative config routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/control-planes/{control_plane_id}/declarative-config",
            get(export).put(import),
        )
        .layer(DefaultBodyLimit::max(MAX_DECLARATIVE_BYTES))
}

/// Answer of a successful import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    /// The control plane's new config version.
    pub version: i64,
    /// Hash of the imported config (equals `/expected-config-hash`).
    pub config_hash: String,
    /// Entities written, by collection.
    pub entities: std::collections::BTreeMap<String, usize>,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("json") && !accept.contains("yaml"))
}

/// Exports the config as Kong declarative YAML (or JSON with `Accept: application/json`).
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let cp = parse_id(&cp, "control plane")?;
    let snapshot = state
        .snapshots
        .get(&state.store, caller.organization_id, cp)
        .await?;
    if wants_json(&headers) {
        return Ok(Json(declarative::export_value(&snapshot.config)).into_response());
    }
    let mut response = declarative::export_yaml(&snapshot.config).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    Ok(response)
}

/// Every entity of a config as store writes.
pub fn config_writes(config: &GatewayConfig) -> anyhow::Result<Vec<EntityWrite>> {
    let mut writes = Vec::new();
    for e in &config.services {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.routes {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.consumers {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.keyauth_credentials {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.plugins {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.upstreams {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.targets {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.certificates {
        writes.push(EntityWrite::from_entity(e)?);
    }
    for e in &config.snis {
        writes.push(EntityWrite::from_entity(e)?);
    }
    Ok(writes)
}

/// Replaces the control plane's config with the body (YAML or JSON, Kong format).
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    request: Request,
) -> ApiResult<Json<ImportResult>> {
    caller.require_write()?;
    let cp = parse_id(&cp, "control plane")?;
    state
        .store
        .control_plane(caller.organization_id, cp)
        .await?;
    let bytes = body_bytes(request, &state).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::field("body", "the declarative config is not UTF-8 text"))?;
    let config = declarative::import(text).map_err(|err| match err {
        DeclarativeError::Syntax {
            line,
            column,
            message,
        } => ApiError::fields(vec![FieldError {
            field: "body".into(),
            reason: format!("line {line}, column {column}: {message}"),
        }]),
        DeclarativeError::Invalid(errors) => ApiError::fields(errors),
    })?;
    // No database stores NUL in text; YAML can spell it ("\0"), so refuse it up front.
    if config.canonical_json().windows(6).any(|w| w == b"\\u0000") {
        return Err(ApiError::field(
            "body",
            "strings must not contain the NUL character",
        ));
    }
    let mut counts = std::collections::BTreeMap::new();
    for (name, n) in [
        ("services", config.services.len()),
        ("routes", config.routes.len()),
        ("consumers", config.consumers.len()),
        ("keyauth_credentials", config.keyauth_credentials.len()),
        ("plugins", config.plugins.len()),
        ("upstreams", config.upstreams.len()),
        ("targets", config.targets.len()),
        ("certificates", config.certificates.len()),
        ("snis", config.snis.len()),
    ] {
        counts.insert(name.to_string(), n);
    }
    let writes = config_writes(&config)?;
    state
        .store
        .replace_config(caller.organization_id, cp, writes)
        .await?;
    state
        .cluster
        .spawn_config_changed(caller.organization_id, cp);
    let snapshot = state
        .snapshots
        .get(&state.store, caller.organization_id, cp)
        .await?;
    Ok(Json(ImportResult {
        version: snapshot.version,
        config_hash: snapshot.hash.to_string(),
        entities: counts,
    }))
}
