//! `/v2/cloud-gateways/networks/{network_id}/transit-gateways`: attachments of a network to a
//! customer's AWS Transit Gateway (shared through RAM). Only `cidr_blocks` may change. The
//! CIDR rules (private ranges, no overlap with the network or its other attachments, the
//! conflicting attachment named) run in the store under the network's lock.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::FieldError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::filters::{self, FilterField, STATE_OPS, STRING_OPS};
use super::{check_name, only_changeable, require_fields, StateMetadata};
use crate::api::extract::{parse_body, parse_id, JsonBody, PathParams, QueryParams};
use crate::api::paging::{NumberedList, NumberedPage};
use crate::api::timestamps::as_rfc3339;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{CloudProvider, NewTransitGateway, TransitGatewayRecord};

/// The collection path.
pub const COLLECTION: &str = "/v2/cloud-gateways/networks/{network_id}/transit-gateways";
/// One attachment's path.
pub const ITEM: &str =
    "/v2/cloud-gateways/networks/{network_id}/transit-gateways/{transit_gateway_id}";
/// The only attachment kind.
pub const ATTACHMENT_KIND: &str = "aws-transit-gateway-attachment";
/// Transit-gateway states.
pub const STATES: [&str; 8] = [
    "created",
    "initializing",
    "pending-acceptance",
    "pending-user-action",
    "ready",
    "terminating",
    "terminated",
    "error",
];
/// Filters of the transit-gateway list (Konnect's `TransitGatewaysFilterParameters`).
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

/// One mapping of Konnect's `dns_config`: internal domains resolved through remote DNS
/// servers reached over the transit gateway.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// DNS servers on the customer's side, IPv4 addresses.
    pub remote_dns_server_ip_addresses: Vec<String>,
    /// Domains to resolve through them.
    pub domain_proxy_list: Vec<String>,
}

/// Transit-gateway routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(COLLECTION, get(list).post(create))
        .route(ITEM, get(show).patch(update).delete(remove))
}

/// Which transit gateway to attach to.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitGatewayAttachmentConfig {
    /// `aws-transit-gateway-attachment`.
    pub kind: String,
    /// The customer's transit gateway, `tgw-…`.
    pub transit_gateway_id: String,
    /// The AWS RAM share through which it is shared with the provider account, `arn:…`.
    pub ram_share_arn: String,
}

/// Body of `POST …/transit-gateways`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransitGateway {
    /// Unique name within the network (1–100 characters).
    pub name: String,
    /// Customer CIDRs to route through the transit gateway (private, not overlapping).
    pub cidr_blocks: Vec<String>,
    /// Konnect's DNS settings.
    #[serde(default)]
    pub dns_config: Vec<DnsConfig>,
    /// The transit gateway to attach to.
    pub transit_gateway_attachment_config: TransitGatewayAttachmentConfig,
}

/// Body of `PATCH …/transit-gateways/{id}`: only the CIDRs may change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTransitGateway {
    /// The new customer CIDRs (replace all).
    pub cidr_blocks: Vec<String>,
}

/// A transit-gateway attachment as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransitGateway {
    /// Fleetgate id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Customer CIDRs.
    pub cidr_blocks: Vec<String>,
    /// DNS settings.
    pub dns_config: Vec<DnsConfig>,
    /// The transit gateway attached to.
    pub transit_gateway_attachment_config: TransitGatewayAttachmentConfig,
    /// `created`, `initializing`, `pending-acceptance`, `pending-user-action`, `ready`,
    /// `terminating`, `terminated` or `error`.
    pub state: String,
    /// Why it is in that state.
    pub state_metadata: StateMetadata,
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

impl From<TransitGatewayRecord> for TransitGateway {
    fn from(r: TransitGatewayRecord) -> Self {
        Self {
            id: r.id,
            name: r.name,
            cidr_blocks: r.cidr_blocks.iter().map(ToString::to_string).collect(),
            // Stored as Konnect's array; anything else (never written by this API) shows empty.
            dns_config: r
                .dns_config
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            transit_gateway_attachment_config: TransitGatewayAttachmentConfig {
                kind: ATTACHMENT_KIND.into(),
                transit_gateway_id: r.transit_gateway_id,
                ram_share_arn: r.ram_share_arn,
            },
            state: r.state.as_str().into(),
            state_metadata: StateMetadata {
                reported_status: None,
                reason: r.reason,
            },
            entity_version: r.entity_version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn validate(body: CreateTransitGateway) -> ApiResult<NewTransitGateway> {
    let mut errors = Vec::new();
    check_name("name", &body.name, &mut errors);
    let config = body.transit_gateway_attachment_config;
    let field = |name: &str| format!("transit_gateway_attachment_config.{name}");
    if config.kind != ATTACHMENT_KIND {
        errors.push(FieldError {
            field: field("kind"),
            reason: format!("{:?} is not supported; use {ATTACHMENT_KIND}", config.kind),
        });
    }
    let tgw = config.transit_gateway_id.trim();
    if !tgw.starts_with("tgw-") || tgw.len() < 5 || tgw.len() > 64 {
        errors.push(FieldError {
            field: field("transit_gateway_id"),
            reason: format!("{tgw:?} is not a transit gateway id (tgw-…)"),
        });
    }
    let arn = config.ram_share_arn.trim();
    if !arn.starts_with("arn:") || !arn.contains(":ram:") || arn.len() > 2048 {
        errors.push(FieldError {
            field: field("ram_share_arn"),
            reason: format!("{arn:?} is not a RAM resource share ARN (arn:aws:ram:…)"),
        });
    }
    for (i, entry) in body.dns_config.iter().enumerate() {
        for (j, ip) in entry.remote_dns_server_ip_addresses.iter().enumerate() {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                errors.push(FieldError {
                    field: format!("dns_config[{i}].remote_dns_server_ip_addresses[{j}]"),
                    reason: format!("{ip:?} is not an IPv4 address"),
                });
            }
        }
        if entry.remote_dns_server_ip_addresses.is_empty() {
            errors.push(FieldError {
                field: format!("dns_config[{i}].remote_dns_server_ip_addresses"),
                reason: "must list at least one DNS server".into(),
            });
        }
        for (j, domain) in entry.domain_proxy_list.iter().enumerate() {
            if domain.trim().is_empty() || domain.len() > 253 {
                errors.push(FieldError {
                    field: format!("dns_config[{i}].domain_proxy_list[{j}]"),
                    reason: "must be a domain name (1 to 253 characters)".into(),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    Ok(NewTransitGateway {
        name: body.name.trim().to_string(),
        cidr_blocks: body.cidr_blocks,
        dns_config: if body.dns_config.is_empty() {
            None
        } else {
            Some(
                serde_json::to_value(&body.dns_config)
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("encode dns_config: {e}")))?,
            )
        },
        transit_gateway_id: tgw.to_string(),
        ram_share_arn: arn.to_string(),
    })
}

/// The network's attachments, filtered by `filter[name]` and `filter[state]`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(network): PathParams<String>,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<TransitGateway>>> {
    let network = parse_id(&network, "network")?;
    filters::check_params(&query, &FILTERS)?;
    let page = NumberedPage::from_query(&query)?;
    let name = filters::filter(&query, &FILTERS[0])?;
    let wanted_state = filters::filter(&query, &FILTERS[1])?;
    let records = state
        .store
        .list_transit_gateways(caller.organization_id, network)
        .await?;
    let items: Vec<TransitGateway> = records
        .into_iter()
        .map(TransitGateway::from)
        .filter(|t| filters::passes(&name, &t.name) && filters::passes(&wanted_state, &t.state))
        .collect();
    Ok(Json(page.slice(items)))
}

/// Attaches the network to a transit gateway (state `created`).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(network): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<TransitGateway>)> {
    caller.require_write()?;
    let network = parse_id(&network, "network")?;
    let record = state.store.network(caller.organization_id, network).await?;
    // The provider never changes, so this check needs no lock.
    if record.provider == CloudProvider::Local {
        return Err(ApiError::Unprocessable(
            "transit gateways are not supported by the local provider".into(),
        ));
    }
    require_fields(
        &body,
        &["name", "cidr_blocks", "transit_gateway_attachment_config"],
    )?;
    let new = validate(parse_body(body)?)?;
    let record = state
        .store
        .create_transit_gateway(caller.organization_id, network, new)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One attachment.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((network, id)): PathParams<(String, String)>,
) -> ApiResult<Json<TransitGateway>> {
    let network = parse_id(&network, "network")?;
    let id = parse_id(&id, "transit gateway")?;
    let record = state
        .store
        .transit_gateway(caller.organization_id, network, id)
        .await?;
    Ok(Json(record.into()))
}

/// Changes the CIDRs; any other field is refused, naming it.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((network, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<TransitGateway>> {
    caller.require_write()?;
    let network = parse_id(&network, "network")?;
    let id = parse_id(&id, "transit gateway")?;
    only_changeable(
        &body,
        &["cidr_blocks"],
        &[
            "name",
            "dns_config",
            "transit_gateway_attachment_config",
            "id",
            "state",
            "entity_version",
        ],
    )?;
    require_fields(&body, &["cidr_blocks"])?;
    let body: UpdateTransitGateway = parse_body(body)?;
    let record = state
        .store
        .update_transit_gateway_cidrs(caller.organization_id, network, id, &body.cidr_blocks)
        .await?;
    Ok(Json(record.into()))
}

/// Asks for the attachment's removal (state `terminating`).
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((network, id)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let network = parse_id(&network, "network")?;
    let id = parse_id(&id, "transit gateway")?;
    state
        .store
        .delete_transit_gateway(caller.organization_id, network, id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
