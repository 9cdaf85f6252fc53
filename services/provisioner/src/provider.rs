//! The `CloudProvider` trait: the small set of find / create / delete operations the
//! reconcilers are built from, and the views of provider resources they return.
//!
//! Rules every implementation follows, because the reconcilers' crash safety rests on them:
//! - Every resource is tagged with its owning Fleetgate ids **in the create call itself**
//!   (EC2 `TagSpecifications`), never in a second call: a create that succeeded is always
//!   findable by tag, even if the control plane died before reading the answer.
//! - `find_*` return every matching resource that is not deleted, so a reconciler can see and
//!   remove duplicates.
//! - Creates that the provider can make idempotent take a client token (EC2 supports one on
//!   `RunInstances` and `CreateRouteTable`); the token is derived from the owning ids.
//! - No retries inside: one call, one provider request (or one paginated read). Retry with
//!   backoff is the reconcilers' job ([`crate::retry`]), around a find-then-create step, so a
//!   retried create looks before it creates again.

use std::time::SystemTime;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use uuid::Uuid;

use crate::error::ProviderError;
use crate::state::InstanceState;
use crate::types::{DataplaneGroupSpec, NetworkSpec, NodeBootstrap, TransitGatewaySpec};

/// Tag keys on every provider resource Fleetgate creates.
pub mod tags {
    /// Marks a resource as Fleetgate's (value [`MANAGED_BY_VALUE`]).
    pub const MANAGED_BY: &str = "fleetgate:managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGED_BY_VALUE: &str = "fleetgate";
    /// The owning network (VPC, subnets, security group, route table, internet gateway,
    /// instances, attachments).
    pub const NETWORK_ID: &str = "fleetgate:network-id";
    /// The zone a subnet was created for, as the user wrote it.
    pub const AVAILABILITY_ZONE: &str = "fleetgate:availability-zone";
    /// The owning configuration (instances).
    pub const CONFIGURATION_ID: &str = "fleetgate:configuration-id";
    /// The control plane whose config an instance runs.
    pub const CONTROL_PLANE_ID: &str = "fleetgate:control-plane-id";
    /// An instance's slot in its group, `0..requested_instances`.
    pub const NODE_SLOT: &str = "fleetgate:node-slot";
    /// The owning transit-gateway attachment (Fleetgate id).
    pub const ATTACHMENT_ID: &str = "fleetgate:attachment-id";
    /// The human-readable name EC2's console shows.
    pub const NAME: &str = "Name";
    /// On a replacement node: the instance it replaced.
    pub const REPLACES: &str = "fleetgate:replaces";
    /// On a replacement node: why its predecessor was replaced (at most 255 characters, EC2's
    /// limit for a tag value).
    pub const REPLACEMENT_REASON: &str = "fleetgate:replacement-reason";
}

/// Why a node was launched in place of another: kept in the new node's tags, so the record
/// survives control-plane restarts and shows in the provider's console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// The instance that was terminated.
    pub instance_id: String,
    /// Why, e.g. `silent for 612s since its last ping (deadline 600s)`.
    pub reason: String,
}

impl Replacement {
    /// The two tags that record it, the reason cut to EC2's 255-character tag-value limit.
    pub fn tags(&self) -> [(&'static str, String); 2] {
        let reason: String = self.reason.chars().take(255).collect();
        [
            (tags::REPLACES, self.instance_id.clone()),
            (tags::REPLACEMENT_REASON, reason),
        ]
    }

    /// Reads it back from an instance's tags.
    pub fn from_tags<'a>(tag: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        Some(Self {
            instance_id: tag(tags::REPLACES)?.to_string(),
            reason: tag(tags::REPLACEMENT_REASON)
                .unwrap_or_default()
                .to_string(),
        })
    }
}

/// A VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    /// `vpc-…`.
    pub id: String,
    /// Its primary IPv4 range.
    pub cidr_block: Option<String>,
    /// Provider state (`pending`, `available`).
    pub state: String,
}

/// A subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// `subnet-…`.
    pub id: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// The zone as the user wrote it when it was created (tag), else the provider's zone name.
    pub availability_zone: String,
    /// Its IPv4 range.
    pub cidr_block: Option<String>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    /// `sg-…`.
    pub id: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// TCP ports open to `0.0.0.0/0` (single-port rules only; that is all Fleetgate adds).
    pub open_tcp_ports: Vec<u16>,
}

/// An internet gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetGateway {
    /// `igw-…`.
    pub id: String,
    /// VPCs it is attached to.
    pub attached_vpc_ids: Vec<String>,
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// The VPC's own range.
    Local,
    /// An internet gateway, `igw-…`.
    InternetGateway(String),
    /// A transit gateway, `tgw-…`.
    TransitGateway(String),
    /// Anything Fleetgate does not create (NAT, peering, …), by its id.
    Other(String),
}

/// One route of a route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination range (IPv4 routes only).
    pub destination: Ipv4Net,
    /// Where it goes.
    pub target: RouteTarget,
}

/// A subnet association of a route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTableAssociation {
    /// `rtbassoc-…`.
    pub id: String,
    /// The associated subnet.
    pub subnet_id: String,
}

/// A route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    /// `rtb-…`.
    pub id: String,
    /// The VPC it belongs to.
    pub vpc_id: String,
    /// Subnet associations (the "main" association is not listed).
    pub associations: Vec<RouteTableAssociation>,
    /// IPv4 routes.
    pub routes: Vec<Route>,
}

/// Whose instances to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOwner {
    /// Instances of one configuration (tag `fleetgate:configuration-id`).
    Configuration(Uuid),
    /// Every Fleetgate instance in a network (tag `fleetgate:network-id`), whatever its
    /// configuration: the network teardown's safety net.
    Network(Uuid),
}

/// A gateway-node instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-…`.
    pub id: String,
    /// Slot tag; `None` when missing or unparsable (such an instance is removed).
    pub slot: Option<u32>,
    /// Provider state; `None` for a state this code does not know.
    pub state: Option<InstanceState>,
    /// Private IPv4 address.
    pub private_ip: Option<String>,
    /// Private DNS name.
    pub private_dns_name: Option<String>,
    /// Launch time.
    pub launched_at: Option<SystemTime>,
    /// The subnet it runs in.
    pub subnet_id: Option<String>,
    /// The node it was launched in place of, and why (tags).
    pub replaces: Option<Replacement>,
}

/// Everything needed to launch one gateway node.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// The group the node belongs to (region, ids, instance type, bootstrap).
    pub group: DataplaneGroupSpec,
    /// The node's slot.
    pub slot: u32,
    /// Subnet to launch into.
    pub subnet_id: String,
    /// Security group for its interface.
    pub security_group_id: String,
    /// The single-use join token for this node (never a private key).
    pub join_token: String,
    /// Idempotency token for the create (≤ 64 ASCII characters).
    pub client_token: String,
    /// The node this one replaces and why, recorded in its tags.
    pub replaces: Option<Replacement>,
}

impl LaunchRequest {
    /// The bootstrap inputs, for providers that render them.
    pub fn bootstrap(&self) -> &NodeBootstrap {
        &self.group.bootstrap
    }
}

/// A transit-gateway VPC attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitGatewayAttachment {
    /// `tgw-attach-…`.
    pub id: String,
    /// The Fleetgate attachment id (tag), when present.
    pub fleetgate_id: Option<Uuid>,
    /// The transit gateway.
    pub transit_gateway_id: String,
    /// The attached VPC.
    pub vpc_id: String,
    /// The attached subnets.
    pub subnet_ids: Vec<String>,
    /// Provider state name (`pendingAcceptance`, `available`, …).
    pub state: String,
}

/// Names of the provider operations, for fault injection and call counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Operation {
    FindVpcs,
    CreateVpc,
    DeleteVpc,
    FindSubnets,
    CreateSubnet,
    DeleteSubnet,
    FindSecurityGroups,
    CreateSecurityGroup,
    OpenTcpPort,
    DeleteSecurityGroup,
    FindInternetGateways,
    CreateInternetGateway,
    AttachInternetGateway,
    DetachInternetGateway,
    DeleteInternetGateway,
    FindRouteTables,
    CreateRouteTable,
    AssociateRouteTable,
    DisassociateRouteTable,
    DeleteRouteTable,
    CreateRoute,
    DeleteRoute,
    FindInstances,
    LaunchInstance,
    TerminateInstances,
    FindTransitGatewayAttachments,
    CreateTransitGatewayAttachment,
    DeleteTransitGatewayAttachment,
}

impl Operation {
    /// Whether the operation changes provider state (the steps a crash can interrupt).
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            Self::FindVpcs
                | Self::FindSubnets
                | Self::FindSecurityGroups
                | Self::FindInternetGateways
                | Self::FindRouteTables
                | Self::FindInstances
                | Self::FindTransitGatewayAttachments
        )
    }
}

/// A cloud to run gateway networks and nodes in. Object safe: the control plane holds an
/// `Arc<dyn CloudProvider>` chosen at start-up (aws, local, or a wrapped one in tests).
///
/// `region` is always the region of the owning network; implementations keep one client per
/// region.
#[async_trait]
pub trait CloudProvider: Send + Sync {
    /// A short name for logs (`aws`, `local`).
    fn name(&self) -> &'static str;

    // --- network -------------------------------------------------------------------------

    /// VPCs tagged with the network id.
    async fn find_vpcs(&self, region: &str, network_id: Uuid) -> Result<Vec<Vpc>, ProviderError>;
    /// Creates the network's VPC, tagged.
    async fn create_vpc(&self, network: &NetworkSpec) -> Result<Vpc, ProviderError>;
    /// Deletes a VPC (its subnets, groups, tables and gateways must be gone).
    async fn delete_vpc(&self, region: &str, vpc_id: &str) -> Result<(), ProviderError>;

    /// Subnets tagged with the network id.
    async fn find_subnets(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<Subnet>, ProviderError>;
    /// Creates a tagged subnet for one zone.
    async fn create_subnet(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
        availability_zone: &str,
        cidr_block: Ipv4Net,
    ) -> Result<Subnet, ProviderError>;
    /// Deletes a subnet.
    async fn delete_subnet(&self, region: &str, subnet_id: &str) -> Result<(), ProviderError>;

    /// Security groups tagged with the network id.
    async fn find_security_groups(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<SecurityGroup>, ProviderError>;
    /// Creates the gateway nodes' security group, tagged, with no ingress yet.
    async fn create_security_group(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
    ) -> Result<SecurityGroup, ProviderError>;
    /// Opens one TCP port to `0.0.0.0/0` (already open counts as success).
    async fn open_tcp_port(
        &self,
        region: &str,
        security_group_id: &str,
        port: u16,
    ) -> Result<(), ProviderError>;
    /// Deletes a security group.
    async fn delete_security_group(
        &self,
        region: &str,
        security_group_id: &str,
    ) -> Result<(), ProviderError>;

    /// Internet gateways tagged with the network id.
    async fn find_internet_gateways(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<InternetGateway>, ProviderError>;
    /// Creates a tagged internet gateway (not attached yet).
    async fn create_internet_gateway(
        &self,
        network: &NetworkSpec,
    ) -> Result<InternetGateway, ProviderError>;
    /// Attaches an internet gateway to a VPC.
    async fn attach_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
        vpc_id: &str,
    ) -> Result<(), ProviderError>;
    /// Detaches an internet gateway from a VPC.
    async fn detach_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
        vpc_id: &str,
    ) -> Result<(), ProviderError>;
    /// Deletes a detached internet gateway.
    async fn delete_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
    ) -> Result<(), ProviderError>;

    /// Route tables tagged with the network id.
    async fn find_route_tables(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<RouteTable>, ProviderError>;
    /// Creates the network's tagged route table (client token from the network and VPC ids).
    async fn create_route_table(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
    ) -> Result<RouteTable, ProviderError>;
    /// Associates a route table with a subnet; returns the association id.
    async fn associate_route_table(
        &self,
        region: &str,
        route_table_id: &str,
        subnet_id: &str,
    ) -> Result<String, ProviderError>;
    /// Removes a subnet association.
    async fn disassociate_route_table(
        &self,
        region: &str,
        association_id: &str,
    ) -> Result<(), ProviderError>;
    /// Deletes a route table without associations.
    async fn delete_route_table(
        &self,
        region: &str,
        route_table_id: &str,
    ) -> Result<(), ProviderError>;
    /// Adds a route (`Local` and `Other` targets are refused).
    async fn create_route(
        &self,
        region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
        target: &RouteTarget,
    ) -> Result<(), ProviderError>;
    /// Removes a route.
    async fn delete_route(
        &self,
        region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
    ) -> Result<(), ProviderError>;

    // --- gateway nodes ------------------------------------------------------------------

    /// Instances of a configuration or a network, terminated ones included while the provider
    /// still lists them.
    async fn find_instances(
        &self,
        region: &str,
        owner: InstanceOwner,
    ) -> Result<Vec<Instance>, ProviderError>;
    /// Launches one tagged gateway node.
    async fn launch_instance(&self, launch: &LaunchRequest) -> Result<Instance, ProviderError>;
    /// Terminates instances (already terminated ones count as success).
    async fn terminate_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<(), ProviderError>;

    // --- transit gateways ---------------------------------------------------------------

    /// Attachments of the network's VPCs: tagged with the network id, or untagged (deleted
    /// ones left out).
    async fn find_transit_gateway_attachments(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<TransitGatewayAttachment>, ProviderError>;
    /// Attaches the network's VPC (on the given subnets) to the customer's transit gateway,
    /// tagged with the network and attachment ids.
    async fn create_transit_gateway_attachment(
        &self,
        region: &str,
        attachment: &TransitGatewaySpec,
        vpc_id: &str,
        subnet_ids: &[String],
    ) -> Result<TransitGatewayAttachment, ProviderError>;
    /// Deletes an attachment.
    async fn delete_transit_gateway_attachment(
        &self,
        region: &str,
        attachment_id: &str,
    ) -> Result<(), ProviderError>;
}
