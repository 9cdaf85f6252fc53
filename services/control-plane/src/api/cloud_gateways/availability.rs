//! `GET /v2/cloud-gateways/availability.json` (Konnect's `AvailabilityDocument`, no token
//! needed, as Konnect): the providers with their regions and zones, the instance sizes, and
//! the gateway versions this control plane offers. It is built from the same catalogue the
//! network and configuration checks use, so what it lists is what the API accepts.

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::cloud::catalogue::{self, INSTANCE_SIZES};
use crate::state::AppState;
use crate::store::CloudProvider;

/// The document's path.
pub const PATH: &str = "/v2/cloud-gateways/availability.json";

/// The route (no authentication).
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(show))
}

/// One region of a provider (Konnect's `ProviderRegion`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderRegion {
    /// Region id, e.g. `us-east-1`.
    pub region: String,
    /// Human-readable name.
    pub name: String,
    /// Zones a network may use.
    pub availability_zones: Vec<String>,
    /// Ranges a network's `cidr_block` must lie in.
    pub cidr_blocks: Vec<String>,
    /// Ranges a network's `cidr_block` must not overlap (none).
    pub reserved_cidr_blocks: Vec<String>,
}

/// A provider and its regions (Konnect's `Provider`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Provider {
    /// `aws` or `local`.
    pub provider: String,
    /// Its regions.
    pub regions: Vec<ProviderRegion>,
}

/// An instance size (Konnect's `InstanceType`, with Fleetgate's additions).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceType {
    /// `small`, `medium` or `large`.
    pub name: String,
    /// Hourly cost of one node: Fleetgate bills no instance hours (the provider does).
    pub hourly_cost: String,
    /// Virtual CPUs (of the AWS type).
    pub v_cpu: String,
    /// Memory in GB (of the AWS type).
    pub gb_memory: String,
    /// Requests per second one node is sized for; autopilot divides by it (a Fleetgate
    /// addition).
    pub capacity_rps: u64,
    /// What a node of this size runs as, per provider (a Fleetgate addition).
    pub provider_instance_types: ProviderInstanceTypes,
}

/// A size's instance type at each provider.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderInstanceTypes {
    /// The EC2 instance type.
    pub aws: String,
    /// Always `local`: every local node is the same `fleetgate-dp` process.
    pub local: String,
}

/// The availability document (Konnect's `AvailabilityDocument`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AvailabilityDocument {
    /// Gateway versions a configuration may ask for.
    pub versions: Vec<String>,
    /// Instance sizes.
    pub instance_types: Vec<InstanceType>,
    /// Providers and their regions.
    pub providers: Vec<Provider>,
    /// Serverless providers: none (only dedicated gateways are offered).
    pub serverless_v1_providers: Vec<Provider>,
}

/// Builds the document from the catalogue.
pub fn document() -> AvailabilityDocument {
    let cidr_blocks: Vec<String> = fleetgate_provisioner::cidr::PRIVATE_RANGES
        .iter()
        .map(|(addr, len)| format!("{addr}/{len}"))
        .collect();
    let providers = [CloudProvider::Aws, CloudProvider::Local]
        .into_iter()
        .map(|provider| Provider {
            provider: provider.as_str().into(),
            regions: catalogue::regions(provider)
                .iter()
                .map(|r| ProviderRegion {
                    region: r.id.into(),
                    name: r.name.into(),
                    availability_zones: r
                        .availability_zones
                        .iter()
                        .map(|z| z.to_string())
                        .collect(),
                    cidr_blocks: cidr_blocks.clone(),
                    reserved_cidr_blocks: Vec::new(),
                })
                .collect(),
        })
        .collect();
    AvailabilityDocument {
        versions: catalogue::gateway_versions(),
        instance_types: INSTANCE_SIZES
            .iter()
            .map(|s| InstanceType {
                name: s.name.into(),
                hourly_cost: "0.00".into(),
                v_cpu: s.v_cpu.to_string(),
                gb_memory: s.gb_memory.to_string(),
                capacity_rps: s.rps_per_node,
                provider_instance_types: ProviderInstanceTypes {
                    aws: s.aws_instance_type.into(),
                    local: "local".into(),
                },
            })
            .collect(),
        providers,
        serverless_v1_providers: Vec::new(),
    }
}

/// The document.
pub async fn show() -> Json<AvailabilityDocument> {
    Json(document())
}
