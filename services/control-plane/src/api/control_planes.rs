//! `/v2/control-planes`: Konnect-shaped control planes.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::extract::{parse_body, parse_id, JsonBody, Page, PageOf, PathParams, QueryParams};
use crate::auth::Caller;
use crate::cluster::tls::cluster_server_name;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{ControlPlaneRecord, ControlPlaneUpdate, NewControlPlane};

/// Control plane routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/control-planes", get(list).post(create))
        .route(
            "/v2/control-planes/{control_plane_id}",
            get(show).patch(update).delete(remove),
        )
        .route(
            "/v2/control-planes/{control_plane_id}/expected-config-hash",
            get(expected_config_hash),
        )
}

/// How data-plane nodes prove which control plane they belong to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// The node's certificate must be one registered with the control plane.
    #[default]
    PinnedClientCerts,
    /// The node's certificate must be signed by the control plane's CA.
    PkiClientCerts,
}

impl AuthType {
    fn as_str(self) -> &'static str {
        match self {
            AuthType::PinnedClientCerts => "pinned_client_certs",
            AuthType::PkiClientCerts => "pki_client_certs",
        }
    }
}

/// The kind of cluster; hybrid (self-managed or Fleetgate-provisioned nodes) is the only one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ClusterType {
    /// Control plane with data-plane nodes connecting over mutual TLS.
    #[default]
    #[serde(rename = "CLUSTER_TYPE_HYBRID")]
    Hybrid,
}

/// Body of `POST /v2/control-planes`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateControlPlane {
    /// Unique name within the organisation (1–100 characters).
    pub name: String,
    /// Free text (up to 250 characters).
    #[serde(default)]
    pub description: String,
    /// Cluster type.
    #[serde(default)]
    pub cluster_type: ClusterType,
    /// How data-plane nodes authenticate.
    #[serde(default)]
    pub auth_type: AuthType,
    /// Key/value labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Body of `PATCH /v2/control-planes/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateControlPlane {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New auth type.
    pub auth_type: Option<AuthType>,
    /// New labels (replace all).
    pub labels: Option<BTreeMap<String, String>>,
}

/// A control plane as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlPlane {
    /// Control plane id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Cluster settings.
    pub config: ControlPlaneConfig,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// Cluster settings of a control plane.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlPlaneConfig {
    /// Where data-plane nodes connect (`cluster_control_plane`).
    pub control_plane_endpoint: String,
    /// Where data-plane nodes send telemetry (the same link).
    pub telemetry_endpoint: String,
    /// Cluster type.
    pub cluster_type: String,
    /// How data-plane nodes authenticate.
    pub auth_type: String,
    /// Current config version (bumped by every config write).
    pub config_version: i64,
    /// PEM of the CA that signs the cluster listener's certificate: a node's
    /// `cluster_ca_cert`.
    pub cluster_ca_cert: String,
    /// `<id>.cluster.fleetgate.internal`: as a node's `cluster_server_name`, the listener
    /// refuses certificates of any other control plane.
    pub cluster_server_name: String,
}

impl ControlPlane {
    fn from_record(record: ControlPlaneRecord, state: &AppState) -> Self {
        let endpoint = format!("https://{}", state.settings.cluster_endpoint);
        Self {
            id: record.id,
            name: record.name,
            description: record.description,
            labels: record.labels,
            config: ControlPlaneConfig {
                control_plane_endpoint: endpoint.clone(),
                telemetry_endpoint: endpoint,
                cluster_type: record.cluster_type,
                auth_type: record.auth_type,
                config_version: record.config_version,
                cluster_ca_cert: state.cluster_tls.ca_pem().to_string(),
                cluster_server_name: cluster_server_name(record.id),
            },
            created_at: record.created_at,
            updated_at: record.updated_at,
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

fn check_labels(labels: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    if labels.len() > 50 {
        errors.push(FieldError {
            field: "labels".into(),
            reason: "at most 50 labels".into(),
        });
    }
    for (key, value) in labels {
        let key_ok = (1..=63).contains(&key.len())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !key_ok {
            errors.push(FieldError {
                field: format!("labels.{key}"),
                reason: "label keys are 1 to 63 characters of letters, digits, '-', '_', '.'"
                    .into(),
            });
        }
        if value.len() > 63 {
            errors.push(FieldError {
                field: format!("labels.{key}"),
                reason: "label values are at most 63 characters".into(),
            });
        }
    }
}

/// The organisation's control planes.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<PageOf<ControlPlane>>> {
    let page = Page::from_query(&query)?;
    let records = state
        .store
        .list_control_planes(
            caller.organization_id,
            page.after.as_deref(),
            page.fetch_limit(),
        )
        .await?;
    let items = records
        .into_iter()
        .map(|r| ControlPlane::from_record(r, &state))
        .collect();
    Ok(Json(
        page.finish(items, |c: &ControlPlane| c.id.to_string()),
    ))
}

/// Creates a control plane.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ControlPlane>)> {
    caller.require_write()?;
    let body: CreateControlPlane = parse_body(body)?;
    let mut errors = Vec::new();
    check_name(&body.name, &mut errors);
    check_description(&body.description, &mut errors);
    check_labels(&body.labels, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let record = state
        .store
        .create_control_plane(
            caller.organization_id,
            NewControlPlane {
                name: body.name.trim().to_string(),
                description: body.description,
                labels: body.labels,
                cluster_type: "CLUSTER_TYPE_HYBRID".into(),
                auth_type: body.auth_type.as_str().into(),
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ControlPlane::from_record(record, &state)),
    ))
}

/// One control plane.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<ControlPlane>> {
    let id = parse_id(&id, "control plane")?;
    let record = state
        .store
        .control_plane(caller.organization_id, id)
        .await?;
    Ok(Json(ControlPlane::from_record(record, &state)))
}

/// Changes name, description, labels or auth type.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<ControlPlane>> {
    caller.require_write()?;
    let id = parse_id(&id, "control plane")?;
    let body: UpdateControlPlane = parse_body(body)?;
    let mut errors = Vec::new();
    if let Some(name) = &body.name {
        check_name(name, &mut errors);
    }
    if let Some(description) = &body.description {
        check_description(description, &mut errors);
    }
    if let Some(labels) = &body.labels {
        check_labels(labels, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let record = state
        .store
        .update_control_plane(
            caller.organization_id,
            id,
            ControlPlaneUpdate {
                name: body.name.map(|n| n.trim().to_string()),
                description: body.description,
                labels: body.labels,
                auth_type: body.auth_type.map(|a| a.as_str().to_string()),
            },
        )
        .await?;
    Ok(Json(ControlPlane::from_record(record, &state)))
}

/// Deletes a control plane and its whole gateway config.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let id = parse_id(&id, "control plane")?;
    state
        .store
        .delete_control_plane(caller.organization_id, id)
        .await?;
    state.snapshots.forget(id);
    state.cluster.close_sessions_for_control_plane(id);
    Ok(StatusCode::NO_CONTENT)
}

/// The hash of exactly the config a data-plane node of this control plane will receive.
pub async fn expected_config_hash(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = parse_id(&id, "control plane")?;
    let record = state
        .store
        .control_plane(caller.organization_id, id)
        .await?;
    let snapshot = state
        .snapshots
        .get(&state.store, caller.organization_id, id)
        .await?;
    Ok(Json(json!({
        "expected_hash": snapshot.hash.to_string(),
        "version": snapshot.version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    })))
}
