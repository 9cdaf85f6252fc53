//! `/v2/cloud-gateways/configurations`: per control plane, the whole desired set of dataplane
//! groups in Konnect's shapes (PUT `CreateConfigurationRequest` replaces it and answers the
//! `ConfigurationManifest`; one configuration per control plane). Each group reports its
//! state and the private IPs of its nodes once a reconciler has seen them. A deleted
//! configuration keeps answering, its groups `terminating`, until their nodes are gone.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::FieldError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::filters::{self, FilterField, EQUALS_OPS};
use super::group_body::{self, Autoscale as AutoscaleView, EnvironmentField};
use super::{body_id, konnect_state, require_fields, StateMetadata};
use crate::api::extract::{parse_body, parse_id, JsonBody, PathParams, QueryParams};
use crate::api::paging::{NumberedList, NumberedPage};
use crate::api::timestamps::{as_rfc3339, rfc3339};
use crate::auth::Caller;
use crate::cloud::catalogue;
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
/// The only deployment kind (Konnect's `ConfigurationKind`; serverless is not offered).
pub const KIND_DEDICATED: &str = "dedicated.v0";
/// Filters of the configuration list (Konnect's `ConfigurationsFilterParameters`).
pub const FILTERS: [FilterField; 2] = [
    FilterField {
        name: "control_plane_id",
        ops: EQUALS_OPS,
        values: None,
    },
    FilterField {
        name: "control_plane_geo",
        ops: &["eq"],
        values: Some(&catalogue::CONTROL_PLANE_GEOS),
    },
];

/// Configuration routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).put(put))
        .route(ITEM, get(show).delete(remove))
}

/// One desired dataplane group (Konnect's `CreateConfigurationDataPlaneGroup`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutDataplaneGroup {
    /// `aws` or `local`; must be the network's provider.
    pub provider: String,
    /// Must be the network's region.
    pub region: String,
    /// The network the nodes run in.
    pub cloud_gateway_network_id: String,
    /// How many nodes: `{kind: static, instance_type, requested_instances}` or
    /// `{kind: autopilot, base_rps, max_rps?}`.
    #[schema(value_type = AutoscaleView)]
    pub autoscale: serde_json::Value,
    /// Node environment variables.
    #[serde(default)]
    pub environment: Vec<EnvironmentField>,
}

/// Body of `PUT /v2/cloud-gateways/configurations` (Konnect's `CreateConfigurationRequest`):
/// the whole desired state.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConfiguration {
    /// The control plane whose config the nodes run.
    pub control_plane_id: String,
    /// Konnect's control-plane geo (`us`, `eu`, `au`, `me`, `in`, `sg`).
    pub control_plane_geo: String,
    /// Gateway version the nodes run, one `availability.json` lists; the newest when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// `dedicated.v0` (the default).
    #[serde(default)]
    pub kind: Option<String>,
    /// `private`, `public` or `private+public` (the default).
    #[serde(default)]
    pub api_access: Option<String>,
    /// The groups (at most one per network); an empty list terminates every node.
    pub dataplane_groups: Vec<PutDataplaneGroup>,
}

/// Where a group is deployed and how large it is (Konnect's
/// `ConfigurationDataPlaneGroupConfig`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DataplaneGroupConfig {
    /// `aws` or `local`.
    pub provider: String,
    /// Provider region.
    pub region: String,
    /// The network the nodes run in.
    pub cloud_gateway_network_id: Uuid,
    /// How many nodes.
    pub autoscale: AutoscaleView,
    /// Node environment variables.
    pub environment: Vec<EnvironmentField>,
}

/// Autopilot's last decision for a group (a Fleetgate addition).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AutopilotStatus {
    /// Requests per second measured over the last telemetry window.
    pub measured_rps: f64,
    /// The node count decided.
    pub desired_instances: u32,
    /// When (RFC 3339).
    pub decided_at: String,
}

/// A dataplane group as the API shows it (Konnect's `ConfigurationDataPlaneGroup`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DataplaneGroup {
    /// Id.
    pub id: Uuid,
    /// `aws` or `local`.
    pub provider: String,
    /// Provider region.
    pub region: String,
    /// How many nodes.
    pub autoscale: AutoscaleView,
    /// Node environment variables.
    pub environment: Vec<EnvironmentField>,
    /// The network the nodes run in.
    pub cloud_gateway_network_id: Uuid,
    /// `created`, `initializing`, `ready`, `terminating` or `terminated`.
    pub state: String,
    /// Why it is in that state.
    pub state_metadata: StateMetadata,
    /// Private IPv4 addresses of the live nodes (there is no load balancer in front of them).
    pub private_ip_addresses: Vec<String>,
    /// Egress IPv4 addresses of the network (none yet: nodes leave through the provider's
    /// default route).
    pub egress_ip_addresses: Vec<String>,
    /// Host names of the live nodes (a Fleetgate addition).
    pub hostnames: Vec<String>,
    /// Nodes the group asks for now: the static count or autopilot's decision (a Fleetgate
    /// addition).
    pub requested_instances: u32,
    /// Autopilot's last decision and its inputs; `null` for static groups and before the
    /// first decision (a Fleetgate addition).
    pub autopilot: Option<AutopilotStatus>,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// A configuration as the API shows it (Konnect's `ConfigurationManifest`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Configuration {
    /// Id.
    pub id: Uuid,
    /// Gateway version the nodes run.
    pub version: String,
    /// `private`, `public` or `private+public`.
    pub api_access: String,
    /// The desired groups (none once the configuration was deleted).
    pub dataplane_group_config: Vec<DataplaneGroupConfig>,
    /// The groups with their state, including ones still terminating.
    pub dataplane_groups: Vec<DataplaneGroup>,
    /// `dedicated.v0`.
    pub kind: String,
    /// Bumped by every PUT.
    pub entity_version: i64,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// The control plane.
    pub control_plane_id: Uuid,
    /// Konnect's control-plane geo.
    pub control_plane_geo: String,
}

fn environment_view(g: &DataplaneGroupRecord) -> Vec<EnvironmentField> {
    g.environment
        .iter()
        .map(|e| EnvironmentField {
            name: e.name.clone(),
            value: e.value.clone(),
        })
        .collect()
}

impl From<DataplaneGroupRecord> for DataplaneGroup {
    fn from(g: DataplaneGroupRecord) -> Self {
        let (state, state_metadata) = konnect_state(g.state.as_str(), g.reason.clone());
        Self {
            id: g.id,
            provider: g.provider.as_str().into(),
            region: g.region.clone(),
            autoscale: AutoscaleView::from(&g.autoscale),
            environment: environment_view(&g),
            cloud_gateway_network_id: g.network_id,
            state,
            state_metadata,
            private_ip_addresses: g
                .nodes
                .iter()
                .filter_map(|n| n.private_ip.clone())
                .collect(),
            egress_ip_addresses: Vec::new(),
            hostnames: g.nodes.iter().filter_map(|n| n.hostname.clone()).collect(),
            requested_instances: g.requested_instances,
            autopilot: g.autopilot.map(|a| AutopilotStatus {
                measured_rps: a.measured_rps,
                desired_instances: a.desired_instances,
                decided_at: rfc3339(a.decided_at),
            }),
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

impl From<ConfigurationRecord> for Configuration {
    fn from(c: ConfigurationRecord) -> Self {
        let dataplane_group_config = c
            .dataplane_groups
            .iter()
            .filter(|g| !matches!(g.state.as_str(), "terminating" | "terminated"))
            .map(|g| DataplaneGroupConfig {
                provider: g.provider.as_str().into(),
                region: g.region.clone(),
                cloud_gateway_network_id: g.network_id,
                autoscale: AutoscaleView::from(&g.autoscale),
                environment: environment_view(g),
            })
            .collect();
        Self {
            id: c.id,
            version: c.gateway_version,
            api_access: c.api_access,
            dataplane_group_config,
            dataplane_groups: c
                .dataplane_groups
                .into_iter()
                .map(DataplaneGroup::from)
                .collect(),
            kind: KIND_DEDICATED.into(),
            entity_version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
            control_plane_id: c.control_plane_id,
            control_plane_geo: c.control_plane_geo,
        }
    }
}

/// Checks `value` is one of `allowed`, naming `field` otherwise.
fn one_of(field: &str, value: &str, allowed: &[&str], errors: &mut Vec<FieldError>) -> bool {
    if allowed.contains(&value) {
        return true;
    }
    errors.push(FieldError {
        field: field.into(),
        reason: format!("{value:?} is not one of {}", allowed.join(", ")),
    });
    false
}

/// Shape checks against what `availability.json` offers; whether the control plane and
/// networks exist (and match) is checked by the store under their locks.
fn validate(body: PutConfiguration) -> ApiResult<DesiredConfiguration> {
    let mut errors = Vec::new();
    let control_plane_id = body_id("control_plane_id", &body.control_plane_id)
        .map_err(|e| errors.push(e))
        .ok();
    one_of(
        "control_plane_geo",
        &body.control_plane_geo,
        &catalogue::CONTROL_PLANE_GEOS,
        &mut errors,
    );
    let versions = catalogue::gateway_versions();
    let gateway_version = body
        .version
        .unwrap_or_else(catalogue::current_gateway_version);
    let offered: Vec<&str> = versions.iter().map(String::as_str).collect();
    one_of("version", &gateway_version, &offered, &mut errors);
    let api_access = body.api_access.unwrap_or_else(|| "private+public".into());
    one_of(
        "api_access",
        &api_access,
        &catalogue::API_ACCESS,
        &mut errors,
    );
    if let Some(kind) = body.kind.as_deref() {
        one_of("kind", kind, &[KIND_DEDICATED], &mut errors);
    }
    let mut groups = Vec::new();
    let mut networks = HashSet::new();
    for (i, group) in body.dataplane_groups.into_iter().enumerate() {
        let field = |name: &str| format!("dataplane_groups[{i}].{name}");
        let start = errors.len();
        let provider = CloudProvider::parse(&group.provider);
        match provider {
            None => errors.push(FieldError {
                field: field("provider"),
                reason: format!("{:?} is not a provider; use aws or local", group.provider),
            }),
            Some(p) if catalogue::region(p, &group.region).is_none() => {
                let ids: Vec<&str> = catalogue::regions(p).iter().map(|r| r.id).collect();
                errors.push(FieldError {
                    field: field("region"),
                    reason: format!(
                        "{:?} is not a {} region; use one of {}",
                        group.region,
                        p.as_str(),
                        ids.join(", ")
                    ),
                });
            }
            Some(_) => {}
        }
        let network = match body_id(
            &field("cloud_gateway_network_id"),
            &group.cloud_gateway_network_id,
        ) {
            Ok(id) if !networks.insert(id) => {
                errors.push(FieldError {
                    field: field("cloud_gateway_network_id"),
                    reason: format!("network {id} has another group in this configuration already"),
                });
                None
            }
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let autoscale = group_body::autoscale(&field("autoscale"), &group.autoscale, &mut errors);
        let environment =
            group_body::environment(&field("environment"), group.environment, &mut errors);
        if let (Some(provider), Some(network_id), Some(autoscale), true) =
            (provider, network, autoscale, errors.len() == start)
        {
            groups.push(DesiredDataplaneGroup {
                provider,
                region: group.region.trim().to_string(),
                network_id,
                autoscale,
                environment,
            });
        }
    }
    match control_plane_id {
        Some(control_plane_id) if errors.is_empty() => Ok(DesiredConfiguration {
            control_plane_id,
            control_plane_geo: body.control_plane_geo,
            gateway_version,
            api_access,
            dataplane_groups: groups,
        }),
        _ => Err(ApiError::fields(errors)),
    }
}

/// The organisation's configurations, filtered by `filter[control_plane_id]` and
/// `filter[control_plane_geo]`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<Configuration>>> {
    filters::check_params(&query, &FILTERS)?;
    let page = NumberedPage::from_query(&query)?;
    let control_plane = filters::filter(&query, &FILTERS[0])?;
    let geo = filters::filter(&query, &FILTERS[1])?;
    let records = state
        .store
        .list_configurations(caller.organization_id)
        .await?;
    let items: Vec<Configuration> = records
        .into_iter()
        .filter(|c| {
            filters::passes(&control_plane, &c.control_plane_id.to_string())
                && filters::passes(&geo, &c.control_plane_geo)
        })
        .map(Configuration::from)
        .collect();
    Ok(Json(page.slice(items)))
}

/// Sets a control plane's whole desired configuration; 200 with the manifest, whether it
/// created or replaced one (as Konnect).
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Configuration>> {
    caller.require_write()?;
    require_fields(
        &body,
        &["control_plane_id", "control_plane_geo", "dataplane_groups"],
    )?;
    let desired = validate(parse_body(body)?)?;
    let (record, _created) = state
        .store
        .put_configuration(caller.organization_id, desired)
        .await?;
    Ok(Json(record.into()))
}

/// One configuration (a deleted one while its groups terminate).
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

/// Deletes a configuration; its groups show `terminating` until their nodes are gone.
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
