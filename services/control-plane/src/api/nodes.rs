//! `/v2/control-planes/{id}/nodes`: the data-plane nodes of a control plane (Konnect shape).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use uuid::Uuid;

use super::extract::{parse_id, PathParams, QueryParams};
use super::paging::{CursorList, CursorPage, CURSOR_PAGE_PARAMS};
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

/// Konnect's `{item}` wrapper of a single node or dp-client-certificate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Item<T> {
    /// The resource.
    pub item: T,
}

/// The `type` Konnect gives a Kong Gateway data-plane node; every Fleetgate node is one.
pub const NODE_TYPE: &str = "kong-proxy";

/// Konnect's `compatibility_status.state` values, as Fleetgate derives them from the sync
/// status: a node that runs (or refused) the latest config has told us whether it can run it;
/// one that has not reported the latest yet has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum CompatibilityState {
    /// Runs the latest config (`sync_status` = `in_sync`).
    #[serde(rename = "COMPATIBILITY_STATE_FULLY_COMPATIBLE")]
    FullyCompatible,
    /// Refused for version skew (`incompatible`) or refused the latest config (`rejected`);
    /// `issues` says why.
    #[serde(rename = "COMPATIBILITY_STATE_INCOMPATIBLE")]
    Incompatible,
    /// Has not reported the latest config yet (`out_of_sync`).
    #[serde(rename = "COMPATIBILITY_STATE_UNKNOWN")]
    Unknown,
}

/// One reason a node is incompatible (Konnect's `NodeCompatibilityIssue`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompatibilityIssue {
    /// `version_incompatible` (version skew) or `config_rejected` (the node refused the
    /// latest config).
    pub code: String,
    /// Always `error`: the node does not run the latest config.
    pub severity: String,
    /// What is wrong, in the node's or the control plane's words.
    pub description: String,
    /// What to do about it.
    pub resolution: String,
}

/// Konnect's `compatibility_status` of a node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CompatibilityStatus {
    /// The node's state.
    pub state: CompatibilityState,
    /// Why it is incompatible; empty otherwise.
    pub issues: Vec<CompatibilityIssue>,
}

impl CompatibilityStatus {
    fn of(status: SyncStatus, record: &NodeRecord) -> Self {
        let (state, issues) = match status {
            SyncStatus::InSync => (CompatibilityState::FullyCompatible, Vec::new()),
            SyncStatus::OutOfSync => (CompatibilityState::Unknown, Vec::new()),
            SyncStatus::Incompatible => (
                CompatibilityState::Incompatible,
                vec![CompatibilityIssue {
                    code: "version_incompatible".into(),
                    severity: "error".into(),
                    description: record
                        .sync_reason
                        .clone()
                        .unwrap_or_else(|| "the node's version is not supported".into()),
                    resolution: "Run a data-plane version with the control plane's major \
                                 version and a minor version not newer than it."
                        .into(),
                }],
            ),
            SyncStatus::Rejected => (
                CompatibilityState::Incompatible,
                vec![CompatibilityIssue {
                    code: "config_rejected".into(),
                    severity: "error".into(),
                    description: if record.rejected_errors.is_empty() {
                        "the node refused the latest configuration".into()
                    } else {
                        record.rejected_errors.join("; ")
                    },
                    resolution: "Fix the configuration; the node keeps its previous one and \
                                 receives the next version."
                        .into(),
                }],
            ),
        };
        Self { state, issues }
    }
}

/// A data-plane node as the API shows it: Konnect's fields first, then Fleetgate's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Node {
    /// Node id (chosen by the node, stable across restarts).
    pub id: Uuid,
    /// The node's software version.
    pub version: String,
    /// The node's hostname.
    pub hostname: String,
    /// Last time the node was heard from, Unix seconds.
    pub last_ping: i64,
    /// The kind of node: always `kong-proxy`.
    #[serde(rename = "type")]
    #[schema(example = "kong-proxy")]
    pub node_type: &'static str,
    /// Hash of the config the node runs.
    pub config_hash: String,
    /// The dp-client-certificate the node connected with (for a node admitted through a pki
    /// CA, the CA's registration); null for a node not seen since this field was added.
    pub data_plane_cert_id: Option<Uuid>,
    /// Konnect's compatibility status, derived from `sync_status`.
    pub compatibility_status: CompatibilityStatus,
    /// First seen, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
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
        let compatibility_status = CompatibilityStatus::of(status, &record);
        Self {
            id: record.id,
            version: record.version,
            hostname: record.hostname,
            last_ping: record.last_ping,
            node_type: NODE_TYPE,
            config_hash: record.config_hash,
            data_plane_cert_id: record.data_plane_cert_id,
            compatibility_status,
            created_at: record.created_at,
            updated_at: record.updated_at,
            sync_status: status,
            sync_reason: record.sync_reason,
            errors: if status == SyncStatus::Rejected {
                record.rejected_errors
            } else {
                Vec::new()
            },
            rejected_config_hash: record.rejected_hash,
            connected: record.connected,
            cert_expiry: record.cert_expiry,
            telemetry_dropped: record.telemetry_dropped,
            telemetry_buffer_fill: record.telemetry_buffer_fill,
        }
    }
}

async fn latest_hash(state: &AppState, org: Uuid, cp: Uuid) -> ApiResult<String> {
    let snapshot = state.snapshots.get(&state.store, org, cp).await?;
    Ok(snapshot.hash.to_string())
}

/// The control plane's nodes in id order: `{items, page: {total, next}}`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    query: QueryParams,
) -> ApiResult<Json<CursorList<Node>>> {
    query.only(&CURSOR_PAGE_PARAMS)?;
    let cp = parse_id(&cp, "control plane")?;
    let page = CursorPage::from_query(&query)?;
    // Counted before listing: nodes only appear (purges are rare), so a total read first
    // never exceeds what the list then sees, and a client that saw `total` nodes can page
    // through all of them. (Nothing is answered if the list refuses the control plane.)
    let total = state.store.count_nodes(cp).await?;
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
    Ok(Json(page.finish(items, total, |n: &Node| n.id.to_string())))
}

/// One node: `{item}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, node)): PathParams<(String, String)>,
) -> ApiResult<Json<Item<Node>>> {
    let cp = parse_id(&cp, "control plane")?;
    let node = parse_id(&node, "node")?;
    let record = state.store.node(caller.organization_id, cp, node).await?;
    let latest = latest_hash(&state, caller.organization_id, cp).await?;
    Ok(Json(Item {
        item: Node::from_record(record, &latest),
    }))
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
