//! Desired state (what the control plane's store says should exist) and observed state (what
//! the reconcilers found at the provider), as plain structs. The control plane maps its rows to
//! these; nothing here knows about the store or the API.

use std::time::SystemTime;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::{DataplaneGroupState, InstanceState, NetworkState, TransitGatewayState};

/// A cloud-gateway network: one VPC in one region, one subnet per availability zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// The Fleetgate id of the network (tag `fleetgate:network-id`).
    pub id: Uuid,
    /// The user's name for it (shown as the `Name` tag).
    pub name: String,
    /// The provider region, e.g. `us-east-1`.
    pub region: String,
    /// Zone names (`us-east-1a`) or zone ids (`use1-az1`), in the user's order. Subnet `i` of
    /// the carved CIDR goes to zone `i`.
    pub availability_zones: Vec<String>,
    /// The network's IPv4 range (see [`crate::cidr::validate_network_cidr`]).
    pub cidr_block: Ipv4Net,
}

/// What the network reconciler found at the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkObserved {
    /// The VPC, once created (`provider_metadata.vpc_id`).
    pub vpc_id: Option<String>,
    /// Subnets in the order of `availability_zones` (`provider_metadata.subnet_ids`).
    pub subnet_ids: Vec<String>,
    /// The gateway nodes' security group.
    pub security_group_id: Option<String>,
    /// The route table associated with every subnet of the network.
    pub route_table_id: Option<String>,
    /// The internet gateway that gives the nodes a way to the control plane.
    pub internet_gateway_id: Option<String>,
}

/// The outcome of one network reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    /// The Konnect-style state to show.
    pub state: NetworkState,
    /// Why the state is what it is, when that needs saying (`state_metadata.reason`).
    pub reason: Option<String>,
    /// The provider resources found or created.
    pub observed: NetworkObserved,
}

/// How a provisioned gateway node finds and joins its control plane. Deliberately holds no
/// private key: the node makes its own key and trades a single-use join token plus a CSR for its
/// cluster certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBootstrap {
    /// `host:port` of the control plane's cluster listener (`cluster_control_plane`).
    pub cluster_endpoint: String,
    /// TLS server name the node expects from the control plane (`cluster_server_name`).
    pub cluster_server_name: String,
    /// PEM of the CA that signs the control plane's cluster certificate (public, not a secret).
    pub cluster_ca_cert_pem: String,
    /// Where a node on a stock image downloads `fleetgate-dp` from the control plane, and the
    /// SHA-256 it must have; `None`: the image has it already (`--aws-ami-id`), or the control
    /// plane has no binary to serve.
    #[serde(default)]
    pub dp_download: Option<DpDownload>,
}

/// The node binary as the control plane serves it on its cluster listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpDownload {
    /// Path on the cluster endpoint, e.g. `/v1/artifacts/fleetgate-dp`.
    pub path: String,
    /// Lower-case hex SHA-256 of the bytes served.
    pub sha256: String,
}

/// One dataplane group of a cloud-gateway configuration: `requested_instances` gateway nodes
/// of one control plane in one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneGroupSpec {
    /// The configuration this group belongs to (tag `fleetgate:configuration-id`).
    pub configuration_id: Uuid,
    /// The control plane whose config the nodes run (tag `fleetgate:control-plane-id`).
    pub control_plane_id: Uuid,
    /// The provider region; must equal the network's.
    pub region: String,
    /// The network the nodes run in.
    pub network_id: Uuid,
    /// Provider instance type, e.g. `t3.small`.
    pub instance_type: String,
    /// How many nodes should run (autoscale `static`).
    pub requested_instances: u32,
    /// What each node needs to join the control plane.
    pub bootstrap: NodeBootstrap,
}

/// A gateway node as observed at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedNode {
    /// Provider instance id.
    pub instance_id: String,
    /// The node's slot in its group (`0..requested_instances`, tag `fleetgate:node-slot`).
    pub slot: u32,
    /// Provider instance state.
    pub state: InstanceState,
    /// Private IPv4 address, once assigned.
    pub private_ip: Option<String>,
    /// Private DNS host name, once assigned.
    pub hostname: Option<String>,
    /// When the provider launched it.
    pub launched_at: Option<SystemTime>,
}

/// The outcome of one dataplane-group reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneGroupReport {
    /// The state to show for the group.
    pub state: DataplaneGroupState,
    /// Why, when that needs saying.
    pub reason: Option<String>,
    /// The live (pending or running) nodes after this pass, by slot.
    pub nodes: Vec<ObservedNode>,
}

/// A transit-gateway attachment of a network: the customer's TGW (shared through RAM) and the
/// customer CIDRs to route to through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitGatewaySpec {
    /// The Fleetgate id of the attachment (tag `fleetgate:attachment-id`).
    pub id: Uuid,
    /// The network it attaches.
    pub network_id: Uuid,
    /// The user's name for it.
    pub name: String,
    /// Customer CIDRs routed through the transit gateway (the only field that may change).
    pub cidr_blocks: Vec<Ipv4Net>,
    /// The customer's transit gateway, `tgw-…`.
    pub transit_gateway_id: String,
    /// The RAM share through which the customer shared it.
    pub ram_share_arn: String,
}

/// What the transit-gateway reconciler found at the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitGatewayObserved {
    /// The provider's attachment id, `tgw-attach-…`.
    pub attachment_id: Option<String>,
    /// The provider's raw attachment state (`pendingAcceptance`, `available`, …).
    pub provider_state: Option<String>,
    /// The VPC the attachment is on.
    pub vpc_id: Option<String>,
    /// The subnets the attachment uses (one per zone).
    pub subnet_ids: Vec<String>,
    /// Customer CIDRs that currently have a route through the transit gateway.
    pub routed_cidr_blocks: Vec<Ipv4Net>,
}

/// The outcome of one transit-gateway reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitGatewayReport {
    /// The Konnect-style state to show.
    pub state: TransitGatewayState,
    /// Why, when that needs saying.
    pub reason: Option<String>,
    /// What was found.
    pub observed: TransitGatewayObserved,
}
