//! `/v2/cloud-gateways/networks`: one VPC (or the local machine) per region, in Konnect's
//! shapes. Creation stores the network in state `created`; the reconciler builds it. Region
//! and zones must be ones `availability.json` lists for the account's provider. Only the name may change. A
//! delete is refused while a dataplane group or a transit gateway uses the network, and
//! otherwise moves it to `terminating` until the reconciler has removed its resources.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::FieldError;
use fleetgate_provisioner::cidr;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::filters::{self, FilterField, STATE_OPS, STRING_OPS};
use super::{body_id, check_name, konnect_state, only_changeable, require_fields, StateMetadata};
use crate::api::extract::{parse_body, parse_id, JsonBody, PathParams, QueryParams};
use crate::api::paging::{NumberedList, NumberedPage};
use crate::api::timestamps::as_rfc3339;
use crate::auth::Caller;
use crate::cloud::catalogue;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{NetworkRecord, NewNetwork, StoreError};

/// The collection path.
pub const COLLECTION: &str = "/v2/cloud-gateways/networks";
/// One network's path.
pub const ITEM: &str = "/v2/cloud-gateways/networks/{network_id}";
/// Most zones a network may span.
const MAX_ZONES: usize = 6;
/// Konnect's network states (`NetworkState`).
pub const STATES: [&str; 6] = [
    "created",
    "initializing",
    "offline",
    "ready",
    "terminating",
    "terminated",
];
/// Filters of the network list (Konnect's `NetworksFilterParameters`).
pub const FILTERS: [FilterField; 2] = [
    FilterField {
        name: "name",
        ops: STRING_OPS,
        values: None,
    },
    FilterField {
        name: "state",
        ops: STATE_OPS,
        values: Some(&STATES),
    },
];

/// Network routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).post(create))
        .route(ITEM, get(show).patch(update).delete(remove))
}

/// Body of `POST /v2/cloud-gateways/networks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNetwork {
    /// Unique name within the organisation (1–100 characters).
    pub name: String,
    /// Provider region, e.g. `us-east-1`; `local` for the local provider.
    pub region: String,
    /// Zone names or ids, one subnet each (1 to 6, distinct).
    pub availability_zones: Vec<String>,
    /// IPv4 range, /16 to /23, inside a private range.
    pub cidr_block: String,
    /// The provider account (its id) to create it in.
    pub cloud_gateway_provider_account_id: String,
    /// Konnect's initial state: `initializing` (the default; the network is built at once).
    /// `offline` (built only once a configuration uses it) is not supported.
    #[serde(default)]
    pub state: Option<String>,
}

/// Body of `PATCH /v2/cloud-gateways/networks/{id}`: only the name may change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNetwork {
    /// New name.
    pub name: String,
}

/// Provider resources of a network.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NetworkProviderMetadata {
    /// The VPC, once created.
    pub vpc_id: Option<String>,
    /// Subnets in the order of `availability_zones`.
    pub subnet_ids: Vec<String>,
}

/// A network as the API shows it (Konnect's `Network`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Network {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Whether the service created it with the organisation (never: networks are the user's).
    pub default: bool,
    /// The provider account.
    pub cloud_gateway_provider_account_id: Uuid,
    /// Provider region.
    pub region: String,
    /// Zones.
    pub availability_zones: Vec<String>,
    /// IPv4 range.
    pub cidr_block: String,
    /// `created`, `initializing`, `offline`, `ready`, `terminating` or `terminated`.
    pub state: String,
    /// Why it is in that state.
    pub state_metadata: StateMetadata,
    /// Provider resources.
    pub provider_metadata: NetworkProviderMetadata,
    /// Transit gateways attached (not terminated).
    pub transit_gateway_count: i64,
    /// Configurations with a dataplane group in it.
    pub configuration_reference_count: i64,
    /// Bumped by every change.
    pub entity_version: i64,
    /// Creation time (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// Last change (RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

impl From<NetworkRecord> for Network {
    fn from(r: NetworkRecord) -> Self {
        let (state, state_metadata) = konnect_state(r.state.as_str(), r.reason);
        Self {
            id: r.id,
            name: r.name,
            default: false,
            cloud_gateway_provider_account_id: r.provider_account_id,
            region: r.region,
            availability_zones: r.availability_zones,
            cidr_block: r.cidr_block.to_string(),
            state,
            state_metadata,
            provider_metadata: NetworkProviderMetadata {
                vpc_id: r.provider_metadata.vpc_id,
                subnet_ids: r.provider_metadata.subnet_ids,
            },
            transit_gateway_count: r.transit_gateway_count,
            configuration_reference_count: r.configuration_reference_count,
            entity_version: r.entity_version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn check_zones(zones: &[String], region: Option<&catalogue::Region>, errors: &mut Vec<FieldError>) {
    if zones.is_empty() || zones.len() > MAX_ZONES {
        errors.push(FieldError {
            field: "availability_zones".into(),
            reason: format!("must list 1 to {MAX_ZONES} zones"),
        });
        return;
    }
    let mut seen = HashSet::new();
    for (i, zone) in zones.iter().enumerate() {
        let reason = if zone.trim().is_empty() || zone.len() > 64 {
            "must be a zone name or id (1 to 64 characters)"
        } else if !seen.insert(zone.as_str()) {
            "is listed twice"
        } else if let Some(region) =
            region.filter(|r| !r.availability_zones.contains(&zone.as_str()))
        {
            errors.push(FieldError {
                field: format!("availability_zones[{i}]"),
                reason: format!(
                    "{zone:?} is not a zone of {}; use one of {}",
                    region.id,
                    region.availability_zones.join(", ")
                ),
            });
            continue;
        } else {
            continue;
        };
        errors.push(FieldError {
            field: format!("availability_zones[{i}]"),
            reason: reason.into(),
        });
    }
}

/// Validates a create body against the provider account it names.
async fn validate(state: &AppState, org: Uuid, body: CreateNetwork) -> ApiResult<NewNetwork> {
    let mut errors = Vec::new();
    check_name("name", &body.name, &mut errors);
    match body.state.as_deref() {
        None | Some("initializing") => {}
        Some("offline") => errors.push(FieldError {
            field: "state".into(),
            reason: "offline networks are not supported; a network is built when created \
                     (initializing)"
                .into(),
        }),
        Some(other) => errors.push(FieldError {
            field: "state".into(),
            reason: format!("{other:?} is not an initial state; use initializing"),
        }),
    }
    let cidr_block = match cidr::validate_network_cidr(&body.cidr_block) {
        Ok(net) => Some(net),
        Err(e) => {
            errors.push(FieldError {
                field: e.field,
                reason: e.message,
            });
            None
        }
    };
    // Without zones there is nothing to carve; the zone check below names that once.
    let carve = errors.is_empty() && !body.availability_zones.is_empty();
    if let (Some(net), true) = (cidr_block, carve) {
        if let Err(e) = cidr::carve_subnets(net, body.availability_zones.len()) {
            errors.push(FieldError {
                field: e.field,
                reason: e.message,
            });
        }
    }
    let account = match body_id(
        "cloud_gateway_provider_account_id",
        &body.cloud_gateway_provider_account_id,
    ) {
        Ok(id) => match state.store.provider_account(org, id).await {
            Ok(account) => Some(account),
            Err(StoreError::NotFound(_)) => {
                errors.push(FieldError {
                    field: "cloud_gateway_provider_account_id".into(),
                    reason: format!("provider account {id} does not exist in this organization"),
                });
                None
            }
            Err(e) => return Err(e.into()),
        },
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let region = body.region.trim().to_string();
    let offered = match account.as_ref().map(|a| a.provider) {
        Some(provider) => match catalogue::region(provider, &region) {
            Some(offered) => Some(offered),
            None => {
                let ids: Vec<&str> = catalogue::regions(provider).iter().map(|r| r.id).collect();
                errors.push(FieldError {
                    field: "region".into(),
                    reason: format!(
                        "{region:?} is not a {} region; use one of {}",
                        provider.as_str(),
                        ids.join(", ")
                    ),
                });
                None
            }
        },
        None => None,
    };
    check_zones(&body.availability_zones, offered, &mut errors);
    match (account, cidr_block) {
        (Some(account), Some(cidr_block)) if errors.is_empty() => Ok(NewNetwork {
            provider_account_id: account.id,
            name: body.name.trim().to_string(),
            region,
            availability_zones: body.availability_zones,
            cidr_block,
        }),
        _ => Err(ApiError::fields(errors)),
    }
}

/// The organisation's networks, filtered by `filter[name]` and `filter[state]`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<Network>>> {
    filters::check_params(&query, &FILTERS)?;
    let page = NumberedPage::from_query(&query)?;
    let name = filters::filter(&query, &FILTERS[0])?;
    let wanted_state = filters::filter(&query, &FILTERS[1])?;
    let records = state.store.list_networks(caller.organization_id).await?;
    let items: Vec<Network> = records
        .into_iter()
        .map(Network::from)
        .filter(|n| filters::passes(&name, &n.name) && filters::passes(&wanted_state, &n.state))
        .collect();
    Ok(Json(page.slice(items)))
}

/// Creates a network (state `created`).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Network>)> {
    caller.require_write()?;
    require_fields(
        &body,
        &[
            "name",
            "region",
            "availability_zones",
            "cidr_block",
            "cloud_gateway_provider_account_id",
        ],
    )?;
    let new = validate(&state, caller.organization_id, parse_body(body)?).await?;
    let record = state
        .store
        .create_network(caller.organization_id, new)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One network.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<Network>> {
    let id = parse_id(&id, "network")?;
    let record = state.store.network(caller.organization_id, id).await?;
    Ok(Json(record.into()))
}

/// Renames a network; any other field is refused, naming it.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Network>> {
    caller.require_write()?;
    let id = parse_id(&id, "network")?;
    only_changeable(
        &body,
        &["name"],
        &[
            "region",
            "availability_zones",
            "cidr_block",
            "cloud_gateway_provider_account_id",
            "id",
            "default",
            "state",
            "entity_version",
        ],
    )?;
    require_fields(&body, &["name"])?;
    let body: UpdateNetwork = parse_body(body)?;
    let mut errors = Vec::new();
    check_name("name", &body.name, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let record = state
        .store
        .rename_network(caller.organization_id, id, body.name.trim())
        .await?;
    Ok(Json(record.into()))
}

/// Asks for the network's removal (state `terminating`); 409 while it is in use.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let id = parse_id(&id, "network")?;
    state
        .store
        .delete_network(caller.organization_id, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
