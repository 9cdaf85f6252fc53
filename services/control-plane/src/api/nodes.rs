//! `/v2/control-planes/{id}/nodes`: the data-plane nodes of a control plane (Konnect shape).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use uuid::Uuid;

use super::extract::{parse_id, Page, PageOf, PathParams, QueryParams};
use crate::auth::Caller;
use crate::cluster::nodes::{sync_status, SyncStatus};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::NodeRecord;

/// Node routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/control-planes/{control_plane_id}/nodes", get(list))
        .route(
            "/v2/control-planes/{control_plane_id}/nodes/{node_id}",
            get(show).delete(remove),
        )
}

/// A data-plane node as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Node {
    /// Node id (chosen by the node, stable across restarts).
    pub id: Uuid,
    /// The node's hostname.
    pub hostname: String,
    /// The node's software version.
    pub version: String,
    /// Last time the node was heard from, Unix seconds.
    pub last_ping: i64,
    /// Hash of the config the node runs.
    pub config_hash: String,
    /// The node's config against the control plane's latest.
    pub sync_status: SyncStatus,
    /// Why the node is `incompatible`.
    pub sync_reason: Option<String>,
    /// The node's errors when it rejected the latest config (`sync_status` = `rejected`).
    pub errors: Vec<String>,
    /// The last config hash the node rejected; it is not sent to the node again.
    pub rejected_config_hash: Option<String>,
    /// Whether the node is connected right now.
    pub connected: bool,
    /// Expiry of the node's client certificate, Unix seconds.
    pub cert_expiry: Option<i64>,
    /// First seen, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// Telemetry records the node dropped because its buffer was full (total, counted once
    /// per batch even when a batch is re-sent).
    pub telemetry_dropped: i64,
    /// Records waiting in the node's telemetry buffer (buffered and unacknowledged) at its
    /// last ping; `null` when the node does not report it.
    pub telemetry_buffer_fill: Option<i64>,
}

impl Node {
    fn from_record(record: NodeRecord, latest_hash: &str) -> Self {
        let status = sync_status(&record, latest_hash);
        Self {
            id: record.id,
            sync_status: status,
            errors: if status == SyncStatus::Rejected {
                record.rejected_errors
            } else {
                Vec::new()
            },
            hostname: record.hostname,
            version: record.version,
            last_ping: record.last_ping,
            config_hash: record.config_hash,
            sync_reason: record.sync_reason,
            rejected_config_hash: record.rejected_hash,
            connected: record.connected,
            cert_expiry: record.cert_expiry,
            created_at: record.created_at,
            updated_at: record.updated_at,
            telemetry_dropped: record.telemetry_dropped,
            telemetry_buffer_fill: record.telemetry_buffer_fill,
        }
    }
}

async fn latest_hash(state: &AppState, org: Uuid, cp: Uuid) -> ApiResult<String> {
    let snapshot = state.snapshots.get(&state.store, org, cp).await?;
    Ok(snapshot.hash.to_string())
}

/// The control plane's nodes.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    query: QueryParams,
) -> ApiResult<Json<PageOf<Node>>> {
    let cp = parse_id(&cp, "control plane")?;
    let page = Page::from_query(&query)?;
    let records = state
        .store
        .list_nodes(
            caller.organization_id,
            cp,
            page.after.as_deref(),
            page.fetch_limit(),
        )
        .await?;
    let latest = latest_hash(&state, caller.organization_id, cp).await?;
    let items = records
        .into_iter()
        .map(|r| Node::from_record(r, &latest))
        .collect();
    Ok(Json(page.finish(items, |n: &Node| n.id.to_string())))
}

/// One node.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, node)): PathParams<(String, String)>,
) -> ApiResult<Json<Node>> {
    let cp = parse_id(&cp, "control plane")?;
    let node = parse_id(&node, "node")?;
    let record = state.store.node(caller.organization_id, cp, node).await?;
    let latest = latest_hash(&state, caller.organization_id, cp).await?;
    Ok(Json(Node::from_record(record, &latest)))
}

/// Forgets a node that is gone. A connected node is refused: it would be back at its next
/// ping, so deleting it would only hide it.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, node)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let cp = parse_id(&cp, "control plane")?;
    let node = parse_id(&node, "node")?;
    let record = state.store.node(caller.organization_id, cp, node).await?;
    if record.connected {
        return Err(ApiError::Conflict {
            detail: format!(
                "node {node} is connected; stop it (or delete its dp-client-certificate) before deleting it"
            ),
            field: None,
        });
    }
    state
        .store
        .delete_node(caller.organization_id, cp, node)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
