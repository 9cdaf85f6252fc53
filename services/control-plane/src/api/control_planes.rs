//! `/v2/control-planes`: control planes in Konnect's shapes (`CreateControlPlaneRequest`,
//! `UpdateControlPlaneRequest`, `ControlPlane`, numbered lists with Konnect's filters).
//! Fleetgate runs hybrid control planes only, so of Konnect's cluster types it takes
//! `CLUSTER_TYPE_CONTROL_PLANE` (Konnect's current name for hybrid, and its default) and
//! `CLUSTER_TYPE_HYBRID` (the older name), and shows back the one that was sent.

mod list;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::extract::{parse_body, parse_id, JsonBody, PathParams};
use super::timestamps::as_rfc3339;
use crate::auth::Caller;
use crate::cluster::tls::cluster_server_name;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{ControlPlaneRecord, ControlPlaneUpdate, NewControlPlane, ProxyUrl};

pub use list::{list, LIST_PARAMS};

/// The collection path.
pub const COLLECTION: &str = "/v2/control-planes";
/// One control plane's path.
pub const ITEM: &str = "/v2/control-planes/{control_plane_id}";

/// Cluster types Fleetgate honours: both mean a hybrid control plane.
pub const SUPPORTED_CLUSTER_TYPES: [&str; 2] =
    ["CLUSTER_TYPE_CONTROL_PLANE", "CLUSTER_TYPE_HYBRID"];
/// What a control plane created without `cluster_type` gets (Konnect's default).
pub const DEFAULT_CLUSTER_TYPE: &str = "CLUSTER_TYPE_CONTROL_PLANE";

/// Control plane routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).post(create))
        .route(ITEM, get(show).patch(update).delete(remove))
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

/// A proxy URL as a request sends it; the port is read wide so an out-of-range one gets a
/// clear reason rather than a number-overflow message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyUrlInput {
    /// Host name or address.
    pub host: String,
    /// TCP port, 1 to 65535.
    pub port: i64,
    /// `http` or `https`.
    pub protocol: String,
}

/// Body of `POST /v2/control-planes` (Konnect's `CreateControlPlaneRequest`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "Test Control Plane",
    "description": "A test control plane for exploration.",
    "cluster_type": "CLUSTER_TYPE_CONTROL_PLANE",
    "auth_type": "pinned_client_certs",
    "cloud_gateway": false,
    "proxy_urls": [{"host": "example.com", "port": 443, "protocol": "https"}],
    "labels": {"env": "test"}
}))]
pub struct CreateControlPlane {
    /// Unique name within the organisation (1–100 characters).
    pub name: String,
    /// Free text (up to 250 characters).
    #[serde(default)]
    pub description: String,
    /// `CLUSTER_TYPE_CONTROL_PLANE` (the default) or `CLUSTER_TYPE_HYBRID`; Konnect's other
    /// cluster types are refused. Cannot change later.
    #[serde(default)]
    pub cluster_type: Option<String>,
    /// How data-plane nodes authenticate (default `pinned_client_certs`).
    #[serde(default)]
    pub auth_type: AuthType,
    /// Whether cloud gateways may run this control plane's config (default false).
    #[serde(default)]
    pub cloud_gateway: bool,
    /// Where the data planes can be reached (shown back; not used for routing).
    #[serde(default)]
    pub proxy_urls: Vec<ProxyUrlInput>,
    /// Key/value labels: at most 50; keys 1–63 characters not starting with `kong`,
    /// `konnect`, `mesh`, `kic` or `_`; values 1–63 letters, digits, `-`, `.`, `_`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Body of `PATCH /v2/control-planes/{id}` (Konnect's `UpdateControlPlaneRequest`); absent
/// fields keep their values. The cluster type and `cloud_gateway` cannot change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateControlPlane {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New auth type.
    pub auth_type: Option<AuthType>,
    /// New proxy URLs (replace all).
    pub proxy_urls: Option<Vec<ProxyUrlInput>>,
    /// New labels (replace all).
    pub labels: Option<BTreeMap<String, String>>,
}

/// A control plane as the API shows it (Konnect's `ControlPlane`).
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
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339); config writes count as changes.
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// Cluster settings of a control plane: Konnect's fields, then Fleetgate's own.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ControlPlaneConfig {
    /// Where data-plane nodes connect (`cluster_control_plane`).
    pub control_plane_endpoint: String,
    /// Where data-plane nodes send telemetry (the same link).
    pub telemetry_endpoint: String,
    /// Cluster type, as given at creation.
    pub cluster_type: String,
    /// How data-plane nodes authenticate.
    pub auth_type: AuthType,
    /// Whether cloud gateways may run this control plane's config.
    pub cloud_gateway: bool,
    /// Where the data planes can be reached.
    pub proxy_urls: Vec<ProxyUrl>,
    /// Fleetgate: current config version (bumped by every config write).
    pub config_version: i64,
    /// Fleetgate: PEM of the CA that signs the cluster listener's certificate: a node's
    /// `cluster_ca_cert`.
    pub cluster_ca_cert: String,
    /// Fleetgate: `<id>.cluster.fleetgate.internal`: as a node's `cluster_server_name`, the
    /// listener refuses certificates of any other control plane.
    pub cluster_server_name: String,
}

impl ControlPlane {
    fn from_record(record: ControlPlaneRecord, state: &AppState) -> Self {
        let endpoint = format!("https://{}", state.settings.cluster_endpoint);
        let auth_type = match record.auth_type.as_str() {
            "pki_client_certs" => AuthType::PkiClientCerts,
            _ => AuthType::PinnedClientCerts,
        };
        Self {
            id: record.id,
            name: record.name,
            description: record.description,
            labels: record.labels,
            config: ControlPlaneConfig {
                control_plane_endpoint: endpoint.clone(),
                telemetry_endpoint: endpoint,
                cluster_type: record.cluster_type,
                auth_type,
                cloud_gateway: record.cloud_gateway,
                proxy_urls: record.proxy_urls,
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

/// Label key prefixes Konnect reserves for its own labels.
const RESERVED_LABEL_PREFIXES: [&str; 5] = ["kong", "konnect", "mesh", "kic", "_"];

/// Konnect's label value pattern: `^[a-zA-Z0-9]([a-zA-Z0-9-._]*[a-zA-Z0-9]+)?$`, 1–63 long.
fn label_value_ok(value: &str) -> bool {
    let bytes = value.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
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
        } else if let Some(prefix) = RESERVED_LABEL_PREFIXES
            .iter()
            .find(|p| key.to_ascii_lowercase().starts_with(*p))
        {
            errors.push(FieldError {
                field: format!("labels.{key}"),
                reason: format!("label keys must not start with {prefix:?} (reserved)"),
            });
        }
        if !label_value_ok(value) {
            errors.push(FieldError {
                field: format!("labels.{key}"),
                reason: "label values are 1 to 63 letters, digits, '-', '.', '_', starting and \
                         ending with a letter or digit"
                    .into(),
            });
        }
    }
}

fn check_proxy_urls(urls: Vec<ProxyUrlInput>, errors: &mut Vec<FieldError>) -> Vec<ProxyUrl> {
    let mut checked = Vec::with_capacity(urls.len());
    for (i, url) in urls.into_iter().enumerate() {
        let host = url.host.trim();
        if host.is_empty() || host.len() > 253 || host.chars().any(char::is_whitespace) {
            errors.push(FieldError {
                field: format!("proxy_urls[{i}].host"),
                reason: "must be a host name or address of 1 to 253 characters".into(),
            });
        }
        let port = u16::try_from(url.port).ok().filter(|p| *p != 0);
        if port.is_none() {
            errors.push(FieldError {
                field: format!("proxy_urls[{i}].port"),
                reason: "must be a port from 1 to 65535".into(),
            });
        }
        if !matches!(url.protocol.as_str(), "http" | "https") {
            errors.push(FieldError {
                field: format!("proxy_urls[{i}].protocol"),
                reason: "must be one of http, https".into(),
            });
        }
        checked.push(ProxyUrl {
            host: host.to_string(),
            port: port.unwrap_or_default(),
            protocol: url.protocol,
        });
    }
    checked
}

fn check_cluster_type(cluster_type: &str, errors: &mut Vec<FieldError>) {
    if !SUPPORTED_CLUSTER_TYPES.contains(&cluster_type) {
        errors.push(FieldError {
            field: "cluster_type".into(),
            reason: format!(
                "must be one of {} (Fleetgate runs hybrid control planes; {cluster_type:?} is \
                 not supported)",
                SUPPORTED_CLUSTER_TYPES.join(", ")
            ),
        });
    }
}

/// Creates a control plane.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<ControlPlane>)> {
    caller.require_write()?;
    // serde's message for a missing field does not map to a field; name it explicitly.
    if body.is_object() && body.get("name").is_none() {
        return Err(ApiError::field("name", "is required"));
    }
    let body: CreateControlPlane = parse_body(body)?;
    let mut errors = Vec::new();
    check_name(&body.name, &mut errors);
    check_description(&body.description, &mut errors);
    check_labels(&body.labels, &mut errors);
    let cluster_type = body
        .cluster_type
        .unwrap_or_else(|| DEFAULT_CLUSTER_TYPE.to_string());
    check_cluster_type(&cluster_type, &mut errors);
    let proxy_urls = check_proxy_urls(body.proxy_urls, &mut errors);
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
                cluster_type,
                auth_type: body.auth_type.as_str().into(),
                cloud_gateway: body.cloud_gateway,
                proxy_urls,
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

/// Changes name, description, auth type, proxy URLs or labels.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<ControlPlane>> {
    caller.require_write()?;
    let id = parse_id(&id, "control plane")?;
    // Konnect's update request has no cluster_type: say why rather than "unknown field".
    for fixed in ["cluster_type", "cloud_gateway"] {
        if body.get(fixed).is_some() {
            return Err(ApiError::field(
                fixed,
                "cannot change after the control plane is created",
            ));
        }
    }
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
    let proxy_urls = body
        .proxy_urls
        .map(|urls| check_proxy_urls(urls, &mut errors));
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
                proxy_urls,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_follow_konnects_pattern() {
        for ok in ["a", "test", "v1.2-rc_3", "A9"] {
            assert!(label_value_ok(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "é", &"a".repeat(64)] {
            assert!(!label_value_ok(bad), "{bad}");
        }
    }
}
