//! `GET /v2/cloud-gateways/nodes` (docs/architecture.md, a Fleetgate addition): every gateway node
//! of the organisation's dataplane groups as the reconciler last observed it, filtered by
//! configuration, network or region, in Konnect's numbered pages.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use uuid::Uuid;

use super::filters::{self, FilterField, EQUALS_OPS};
use crate::api::extract::QueryParams;
use crate::api::paging::{NumberedList, NumberedPage};
use crate::api::timestamps::rfc3339;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

/// The collection path.
pub const COLLECTION: &str = "/v2/cloud-gateways/nodes";
/// Filters of the node list.
pub const FILTERS: [FilterField; 3] = [
    FilterField {
        name: "configuration_id",
        ops: EQUALS_OPS,
        values: None,
    },
    FilterField {
        name: "cloud_gateway_network_id",
        ops: EQUALS_OPS,
        values: None,
    },
    FilterField {
        name: "region",
        ops: EQUALS_OPS,
        values: None,
    },
];

/// Node routes.
pub fn router() -> Router<AppState> {
    Router::new().route(COLLECTION, get(list))
}

/// A gateway node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CloudGatewayNode {
    /// The provider's instance id (an EC2 id, or the local process's id).
    pub id: String,
    /// The configuration it belongs to.
    pub configuration_id: Uuid,
    /// Its dataplane group.
    pub dataplane_group_id: Uuid,
    /// The control plane it joins.
    pub control_plane_id: Uuid,
    /// The network it runs in.
    pub cloud_gateway_network_id: Uuid,
    /// `aws` or `local`.
    pub provider: String,
    /// Provider region.
    pub region: String,
    /// Its slot in the group (0 to the requested count - 1).
    pub slot: u32,
    /// Provider instance state (`pending`, `running`, …).
    pub state: String,
    /// Private IPv4 address, once assigned.
    pub private_ip_address: Option<String>,
    /// Private host name, once assigned.
    pub hostname: Option<String>,
    /// Launch time (RFC 3339), once known.
    pub launched_at: Option<String>,
}

/// The organisation's gateway nodes.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<CloudGatewayNode>>> {
    filters::check_params(&query, &FILTERS)?;
    let page = NumberedPage::from_query(&query)?;
    let configuration = filters::filter(&query, &FILTERS[0])?;
    let network = filters::filter(&query, &FILTERS[1])?;
    let region = filters::filter(&query, &FILTERS[2])?;
    let configurations = state
        .store
        .list_configurations(caller.organization_id)
        .await?;
    let mut nodes = Vec::new();
    for c in configurations {
        if !filters::passes(&configuration, &c.id.to_string()) {
            continue;
        }
        for g in c.dataplane_groups {
            if !filters::passes(&network, &g.network_id.to_string())
                || !filters::passes(&region, &g.region)
            {
                continue;
            }
            for n in &g.nodes {
                nodes.push(CloudGatewayNode {
                    id: n.instance_id.clone(),
                    configuration_id: c.id,
                    dataplane_group_id: g.id,
                    control_plane_id: c.control_plane_id,
                    cloud_gateway_network_id: g.network_id,
                    provider: g.provider.as_str().into(),
                    region: g.region.clone(),
                    slot: n.slot,
                    state: serde_json::to_value(n.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    private_ip_address: n.private_ip.clone(),
                    hostname: n.hostname.clone(),
                    launched_at: n
                        .launched_at
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| rfc3339(d.as_secs() as i64)),
                });
            }
        }
    }
    Ok(Json(page.slice(nodes)))
}
