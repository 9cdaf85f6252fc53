//! `/v2/cloud-gateways/configurations`: per control plane, the whole desired set of dataplane
//! groups (PUT replaces it; one configuration per control plane). Each group reports its
//! state and the private IPs and host names of its nodes once a reconciler has seen them.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::FieldError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{body_id, require_fields, StateMetadata};
use crate::api::extract::{parse_body, parse_id, JsonBody, Page, PageOf, PathParams, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{
    CloudProvider, ConfigurationRecord, DataplaneGroupRecord, DesiredConfiguration,
    DesiredDataplaneGroup,
};

/// The collection path (GET lists, PUT sets a control plane's configuration).
pub const COLLECTION: &str = "/v2/cloud-gateways/configurations";
/// One configuration's path.
pub const ITEM: &str = "/v2/cloud-gateways/configurations/{configuration_id}";
/// The only autoscale kind.
pub const AUTOSCALE_STATIC: &str = "static";
/// Most nodes one group may ask for.
pub const MAX_INSTANCES: i64 = 20;

/// Configuration routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).put(put))
        .route(ITEM, get(show).delete(remove))
}

/// How many nodes a group runs.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscale {
    /// `static`: a fixed number of nodes.
    pub kind: String,
    /// Provider instance type, e.g. `t3.small`.
    pub instance_type: String,
    /// Nodes to run, 0 to 20.
    pub requested_instances: i64,
}

/// One desired dataplane group.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutDataplaneGroup {
    /// `aws` or `local`; must be the network's provider.
    pub provider: String,
    /// Must be the network's region.
    pub region: String,
    /// The network the nodes run in.
    pub cloud_gateway_network_id: String,
    /// How many nodes.
    pub autoscale: Autoscale,
}

/// Body of `PUT /v2/cloud-gateways/configurations`: the whole desired state.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConfiguration {
    /// The control plane whose config the nodes run.
    pub control_plane_id: String,
    /// The groups (at most one per network); an empty list terminates every node.
    pub dataplane_groups: Vec<PutDataplaneGroup>,
}

/// A dataplane group as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DataplaneGroup {
    /// Fleetgate id.
    pub id: Uuid,
    /// `aws` or `local`.
    pub provider: String,
    /// Provider region.
    pub region: String,
    /// The network the nodes run in.
    pub cloud_gateway_network_id: Uuid,
    /// How many nodes.
    pub autoscale: Autoscale,
    /// `created`, `initializing`, `ready`, `terminating`, `terminated` or `error`.
    pub state: String,
    /// Why it is in that state.
    pub state_metadata: StateMetadata,
    /// Private IPv4 addresses of the live nodes.
    pub private_ips: Vec<String>,
    /// Host names of the live nodes.
    pub hostnames: Vec<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// A configuration as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Configuration {
    /// Fleetgate id.
    pub id: Uuid,
    /// The control plane.
    pub control_plane_id: Uuid,
    /// Bumped by every PUT.
    pub version: i64,
    /// Its groups, including ones still terminating after a PUT dropped them.
    pub dataplane_groups: Vec<DataplaneGroup>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl From<DataplaneGroupRecord> for DataplaneGroup {
    fn from(g: DataplaneGroupRecord) -> Self {
        Self {
            id: g.id,
            provider: g.provider.as_str().into(),
            region: g.region,
            cloud_gateway_network_id: g.network_id,
            autoscale: Autoscale {
                kind: AUTOSCALE_STATIC.into(),
                instance_type: g.instance_type,
                requested_instances: i64::from(g.requested_instances),
            },
            state: g.state.as_str().into(),
            state_metadata: StateMetadata { reason: g.reason },
            private_ips: g
                .nodes
                .iter()
                .filter_map(|n| n.private_ip.clone())
                .collect(),
            hostnames: g.nodes.iter().filter_map(|n| n.hostname.clone()).collect(),
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

impl From<ConfigurationRecord> for Configuration {
    fn from(c: ConfigurationRecord) -> Self {
        Self {
            id: c.id,
            control_plane_id: c.control_plane_id,
            version: c.version,
            dataplane_groups: c
                .dataplane_groups
                .into_iter()
                .map(DataplaneGroup::from)
                .collect(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Shape checks; whether the control plane and networks exist (and match) is checked by the
/// store under their locks.
fn validate(body: PutConfiguration) -> ApiResult<DesiredConfiguration> {
    let mut errors = Vec::new();
    let control_plane_id = body_id("control_plane_id", &body.control_plane_id)
        .map_err(|e| errors.push(e))
        .ok();
    let mut groups = Vec::new();
    let mut networks = HashSet::new();
    for (i, group) in body.dataplane_groups.into_iter().enumerate() {
        let field = |name: &str| format!("dataplane_groups[{i}].{name}");
        let mut push = |name: &str, reason: String| {
            errors.push(FieldError {
                field: field(name),
                reason,
            })
        };
        let provider = CloudProvider::parse(&group.provider);
        if provider.is_none() {
            push(
                "provider",
                format!("{:?} is not a provider; use aws or local", group.provider),
            );
        }
        if group.region.trim().is_empty() {
            push("region", "is required".into());
        }
        let network = match body_id(
            &field("cloud_gateway_network_id"),
            &group.cloud_gateway_network_id,
        ) {
            Ok(id) if !networks.insert(id) => {
                push(
                    "cloud_gateway_network_id",
                    format!("network {id} has another group in this configuration already"),
                );
                None
            }
            Ok(id) => Some(id),
            Err(e) => {
                push("cloud_gateway_network_id", e.reason);
                None
            }
        };
        let autoscale = group.autoscale;
        if autoscale.kind != AUTOSCALE_STATIC {
            push(
                "autoscale.kind",
                format!("{:?} is not supported; use static", autoscale.kind),
            );
        }
        let instance_type = autoscale.instance_type.trim().to_string();
        if instance_type.is_empty() || instance_type.len() > 64 {
            push(
                "autoscale.instance_type",
                "must be an instance type such as t3.small (1 to 64 characters)".into(),
            );
        }
        let requested = u32::try_from(autoscale.requested_instances)
            .ok()
            .filter(|n| i64::from(*n) <= MAX_INSTANCES);
        if requested.is_none() {
            push(
                "autoscale.requested_instances",
                format!(
                    "{} is out of range; use 0 to {MAX_INSTANCES}",
                    autoscale.requested_instances
                ),
            );
        }
        if let (Some(provider), Some(network_id), Some(requested_instances)) =
            (provider, network, requested)
        {
            groups.push(DesiredDataplaneGroup {
                provider,
                region: group.region.trim().to_string(),
                network_id,
                instance_type,
                requested_instances,
            });
        }
    }
    match control_plane_id {
        Some(control_plane_id) if errors.is_empty() => Ok(DesiredConfiguration {
            control_plane_id,
            dataplane_groups: groups,
        }),
        _ => Err(ApiError::fields(errors)),
    }
}

/// The organisation's configurations.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<PageOf<Configuration>>> {
    let page = Page::from_query(&query)?;
    let records = state
        .store
        .list_configurations(
            caller.organization_id,
            page.after.as_deref(),
            page.fetch_limit(),
        )
        .await?;
    let items = records.into_iter().map(Configuration::from).collect();
    Ok(Json(
        page.finish(items, |c: &Configuration| c.id.to_string()),
    ))
}

/// Sets a control plane's whole desired configuration: 201 when it had none, 200 when an
/// existing one was replaced.
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Configuration>)> {
    caller.require_write()?;
    require_fields(&body, &["control_plane_id", "dataplane_groups"])?;
    let desired = validate(parse_body(body)?)?;
    let (record, created) = state
        .store
        .put_configuration(caller.organization_id, desired)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record.into())))
}

/// One configuration.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Configuration>> {
    let id = parse_id(&id, "configuration")?;
    let record = state
        .store
        .configuration(caller.organization_id, id)
        .await?;
    Ok(Json(record.into()))
}

/// Deletes a configuration; its nodes terminate.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let id = parse_id(&id, "configuration")?;
    state
        .store
        .delete_configuration(caller.organization_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
