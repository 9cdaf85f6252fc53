//! Network resources on EC2: VPC, subnets, security group, internet gateway, route table and
//! routes. Every create tags in the same call; every find filters by the network tag on the
//! server and checks it again on the client.

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, RouteTableAssociationStateCode,
    SecurityGroup as Ec2SecurityGroup,
};
use aws_sdk_ec2::Client;
use ipnet::Ipv4Net;
use uuid::Uuid;

use super::{classify, gone_is_ok, missing, network_tags, tag, tag_filter, tag_spec, tag_value};
use crate::error::ProviderError;
use crate::provider::{
    tags, InternetGateway, Route, RouteTable, RouteTableAssociation, RouteTarget, SecurityGroup,
    Subnet, Vpc,
};
use crate::types::NetworkSpec;

fn owned_by(tags: &[aws_sdk_ec2::types::Tag], network_id: Uuid) -> bool {
    tag_value(tags, tags::NETWORK_ID) == Some(network_id.to_string().as_str())
}

fn network_filter(network_id: Uuid) -> Filter {
    tag_filter(tags::NETWORK_ID, network_id.to_string())
}

// --- VPC ---------------------------------------------------------------------------------

pub(super) async fn find_vpcs(
    client: &Client,
    network_id: Uuid,
) -> Result<Vec<Vpc>, ProviderError> {
    const OP: &str = "describe vpcs";
    let vpcs = client
        .describe_vpcs()
        .filters(network_filter(network_id))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(vpcs
        .into_iter()
        .filter(|v| owned_by(v.tags(), network_id))
        .filter_map(|v| {
            Some(Vpc {
                id: v.vpc_id()?.to_string(),
                cidr_block: v.cidr_block().map(str::to_string),
                state: v
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            })
        })
        .collect())
}

pub(super) async fn create_vpc(
    client: &Client,
    network: &NetworkSpec,
) -> Result<Vpc, ProviderError> {
    const OP: &str = "create vpc";
    let out = client
        .create_vpc()
        .cidr_block(network.cidr_block.to_string())
        .tag_specifications(tag_spec(
            ResourceType::Vpc,
            network_tags(network, format!("fleetgate {}", network.name)),
        ))
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    let vpc = out.vpc().ok_or_else(|| missing(OP, "vpc"))?;
    Ok(Vpc {
        id: vpc
            .vpc_id()
            .ok_or_else(|| missing(OP, "vpc id"))?
            .to_string(),
        cidr_block: vpc.cidr_block().map(str::to_string),
        state: vpc
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    })
}

pub(super) async fn delete_vpc(client: &Client, vpc_id: &str) -> Result<(), ProviderError> {
    gone_is_ok(
        client
            .delete_vpc()
            .vpc_id(vpc_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("delete vpc", e)),
    )
}

// --- subnets -----------------------------------------------------------------------------

pub(super) async fn find_subnets(
    client: &Client,
    network_id: Uuid,
) -> Result<Vec<Subnet>, ProviderError> {
    const OP: &str = "describe subnets";
    let subnets = client
        .describe_subnets()
        .filters(network_filter(network_id))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(subnets
        .into_iter()
        .filter(|s| owned_by(s.tags(), network_id))
        .filter_map(|s| {
            let zone = tag_value(s.tags(), tags::AVAILABILITY_ZONE)
                .or(s.availability_zone())
                .unwrap_or_default()
                .to_string();
            Some(Subnet {
                id: s.subnet_id()?.to_string(),
                vpc_id: s.vpc_id()?.to_string(),
                availability_zone: zone,
                cidr_block: s.cidr_block().map(str::to_string),
            })
        })
        .collect())
}

/// Zone ids look like `use1-az1`; zone names like `us-east-1a`. EC2 takes either, in
/// different parameters.
fn is_zone_id(zone: &str) -> bool {
    zone.rsplit_once("-az")
        .is_some_and(|(_, n)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

pub(super) async fn create_subnet(
    client: &Client,
    network: &NetworkSpec,
    vpc_id: &str,
    availability_zone: &str,
    cidr_block: Ipv4Net,
) -> Result<Subnet, ProviderError> {
    const OP: &str = "create subnet";
    let mut tags = network_tags(
        network,
        format!("fleetgate {} {availability_zone}", network.name),
    );
    tags.push(tag(tags::AVAILABILITY_ZONE, availability_zone));
    let mut request = client
        .create_subnet()
        .vpc_id(vpc_id)
        .cidr_block(cidr_block.to_string())
        .tag_specifications(tag_spec(ResourceType::Subnet, tags));
    request = if is_zone_id(availability_zone) {
        request.availability_zone_id(availability_zone)
    } else {
        request.availability_zone(availability_zone)
    };
    let out = request.send().await.map_err(|e| classify(OP, e))?;
    let subnet = out.subnet().ok_or_else(|| missing(OP, "subnet"))?;
    Ok(Subnet {
        id: subnet
            .subnet_id()
            .ok_or_else(|| missing(OP, "subnet id"))?
            .to_string(),
        vpc_id: vpc_id.to_string(),
        availability_zone: availability_zone.to_string(),
        cidr_block: subnet.cidr_block().map(str::to_string),
    })
}

pub(super) async fn delete_subnet(client: &Client, subnet_id: &str) -> Result<(), ProviderError> {
    gone_is_ok(
        client
            .delete_subnet()
            .subnet_id(subnet_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("delete subnet", e)),
    )
}

// --- security group ----------------------------------------------------------------------

fn security_group_view(group: &Ec2SecurityGroup) -> Option<SecurityGroup> {
    let mut open_tcp_ports: Vec<u16> = group
        .ip_permissions()
        .iter()
        .filter(|p| p.ip_protocol() == Some("tcp") && p.from_port() == p.to_port())
        .filter(|p| {
            p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
        })
        .filter_map(|p| p.from_port().and_then(|port| u16::try_from(port).ok()))
        .collect();
    open_tcp_ports.sort_unstable();
    open_tcp_ports.dedup();
    Some(SecurityGroup {
        id: group.group_id()?.to_string(),
        vpc_id: group.vpc_id()?.to_string(),
        open_tcp_ports,
    })
}

pub(super) async fn find_security_groups(
    client: &Client,
    network_id: Uuid,
) -> Result<Vec<SecurityGroup>, ProviderError> {
    const OP: &str = "describe security groups";
    let groups = client
        .describe_security_groups()
        .filters(network_filter(network_id))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(groups
        .iter()
        .filter(|g| owned_by(g.tags(), network_id))
        .filter_map(security_group_view)
        .collect())
}

pub(super) async fn create_security_group(
    client: &Client,
    network: &NetworkSpec,
    vpc_id: &str,
) -> Result<SecurityGroup, ProviderError> {
    const OP: &str = "create security group";
    let out = client
        .create_security_group()
        .group_name(format!("fleetgate-{}", network.id))
        .description(format!("Fleetgate gateway nodes of network {}", network.id))
        .vpc_id(vpc_id)
        .tag_specifications(tag_spec(
            ResourceType::SecurityGroup,
            network_tags(network, format!("fleetgate {} nodes", network.name)),
        ))
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(SecurityGroup {
        id: out
            .group_id()
            .ok_or_else(|| missing(OP, "group id"))?
            .to_string(),
        vpc_id: vpc_id.to_string(),
        open_tcp_ports: Vec::new(),
    })
}

pub(super) async fn open_tcp_port(
    client: &Client,
    security_group_id: &str,
    port: u16,
) -> Result<(), ProviderError> {
    let result = client
        .authorize_security_group_ingress()
        .group_id(security_group_id)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(port))
                .to_port(i32::from(port))
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .description("gateway proxy traffic")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map(drop)
        .map_err(|e| classify("authorize security group ingress", e));
    match result {
        Err(e) if e.code() == Some("InvalidPermission.Duplicate") => Ok(()),
        other => other,
    }
}

pub(super) async fn delete_security_group(
    client: &Client,
    security_group_id: &str,
) -> Result<(), ProviderError> {
    gone_is_ok(
        client
            .delete_security_group()
            .group_id(security_group_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("delete security group", e)),
    )
}

// --- internet gateway --------------------------------------------------------------------

pub(super) async fn find_internet_gateways(
    client: &Client,
    network_id: Uuid,
) -> Result<Vec<InternetGateway>, ProviderError> {
    const OP: &str = "describe internet gateways";
    let gateways = client
        .describe_internet_gateways()
        .filters(network_filter(network_id))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(gateways
        .into_iter()
        .filter(|g| owned_by(g.tags(), network_id))
        .filter_map(|g| {
            let attached_vpc_ids = g
                .attachments()
                .iter()
                // EC2 reports an attached internet gateway as `available`; anything but
                // detaching/detached counts as attached.
                .filter(|a| {
                    !matches!(
                        a.state().map(|s| s.as_str()),
                        Some("detaching" | "detached")
                    )
                })
                .filter_map(|a| a.vpc_id().map(str::to_string))
                .collect();
            Some(InternetGateway {
                id: g.internet_gateway_id()?.to_string(),
                attached_vpc_ids,
            })
        })
        .collect())
}

pub(super) async fn create_internet_gateway(
    client: &Client,
    network: &NetworkSpec,
) -> Result<InternetGateway, ProviderError> {
    const OP: &str = "create internet gateway";
    let out = client
        .create_internet_gateway()
        .tag_specifications(tag_spec(
            ResourceType::InternetGateway,
            network_tags(network, format!("fleetgate {}", network.name)),
        ))
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    let id = out
        .internet_gateway()
        .and_then(|g| g.internet_gateway_id())
        .ok_or_else(|| missing(OP, "internet gateway id"))?;
    Ok(InternetGateway {
        id: id.to_string(),
        attached_vpc_ids: Vec::new(),
    })
}

pub(super) async fn attach_internet_gateway(
    client: &Client,
    internet_gateway_id: &str,
    vpc_id: &str,
) -> Result<(), ProviderError> {
    client
        .attach_internet_gateway()
        .internet_gateway_id(internet_gateway_id)
        .vpc_id(vpc_id)
        .send()
        .await
        .map(drop)
        .map_err(|e| classify("attach internet gateway", e))
}

pub(super) async fn detach_internet_gateway(
    client: &Client,
    internet_gateway_id: &str,
    vpc_id: &str,
) -> Result<(), ProviderError> {
    let result = client
        .detach_internet_gateway()
        .internet_gateway_id(internet_gateway_id)
        .vpc_id(vpc_id)
        .send()
        .await
        .map(drop)
        .map_err(|e| classify("detach internet gateway", e));
    match result {
        Err(e) if e.code() == Some("Gateway.NotAttached") => Ok(()),
        other => gone_is_ok(other),
    }
}

pub(super) async fn delete_internet_gateway(
    client: &Client,
    internet_gateway_id: &str,
) -> Result<(), ProviderError> {
    gone_is_ok(
        client
            .delete_internet_gateway()
            .internet_gateway_id(internet_gateway_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("delete internet gateway", e)),
    )
}

// --- route table and routes --------------------------------------------------------------

fn route_table_view(table: &aws_sdk_ec2::types::RouteTable) -> Option<RouteTable> {
    let associations = table
        .associations()
        .iter()
        .filter(|a| !a.main().unwrap_or(false))
        .filter(|a| {
            !matches!(
                a.association_state().and_then(|s| s.state()),
                Some(
                    RouteTableAssociationStateCode::Disassociated
                        | RouteTableAssociationStateCode::Disassociating
                        | RouteTableAssociationStateCode::Failed
                )
            )
        })
        .filter_map(|a| {
            Some(RouteTableAssociation {
                id: a.route_table_association_id()?.to_string(),
                subnet_id: a.subnet_id()?.to_string(),
            })
        })
        .collect();
    let routes = table
        .routes()
        .iter()
        .filter_map(|r| {
            let destination: Ipv4Net = r.destination_cidr_block()?.parse().ok()?;
            let target = if let Some(tgw) = r.transit_gateway_id() {
                RouteTarget::TransitGateway(tgw.to_string())
            } else if let Some(gw) = r.gateway_id() {
                if gw == "local" {
                    RouteTarget::Local
                } else if gw.starts_with("igw-") {
                    RouteTarget::InternetGateway(gw.to_string())
                } else {
                    RouteTarget::Other(gw.to_string())
                }
            } else {
                let other = r
                    .nat_gateway_id()
                    .or(r.vpc_peering_connection_id())
                    .or(r.network_interface_id())
                    .or(r.instance_id())
                    .unwrap_or("unknown");
                RouteTarget::Other(other.to_string())
            };
            Some(Route {
                destination,
                target,
            })
        })
        .collect();
    Some(RouteTable {
        id: table.route_table_id()?.to_string(),
        vpc_id: table.vpc_id()?.to_string(),
        associations,
        routes,
    })
}

pub(super) async fn find_route_tables(
    client: &Client,
    network_id: Uuid,
) -> Result<Vec<RouteTable>, ProviderError> {
    const OP: &str = "describe route tables";
    let tables = client
        .describe_route_tables()
        .filters(network_filter(network_id))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(tables
        .iter()
        .filter(|t| owned_by(t.tags(), network_id))
        .filter_map(route_table_view)
        .collect())
}

pub(super) async fn create_route_table(
    client: &Client,
    network: &NetworkSpec,
    vpc_id: &str,
) -> Result<RouteTable, ProviderError> {
    const OP: &str = "create route table";
    // One route table per network and VPC: the same pair always sends the same token, so a
    // create retried after a lost answer returns the table the first attempt made.
    let token = Uuid::new_v5(&network.id, format!("route-table/{vpc_id}").as_bytes());
    let out = client
        .create_route_table()
        .vpc_id(vpc_id)
        .client_token(token.to_string())
        .tag_specifications(tag_spec(
            ResourceType::RouteTable,
            network_tags(network, format!("fleetgate {}", network.name)),
        ))
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    let table = out
        .route_table()
        .ok_or_else(|| missing(OP, "route table"))?;
    route_table_view(table).ok_or_else(|| missing(OP, "route table id"))
}

pub(super) async fn associate_route_table(
    client: &Client,
    route_table_id: &str,
    subnet_id: &str,
) -> Result<String, ProviderError> {
    const OP: &str = "associate route table";
    let out = client
        .associate_route_table()
        .route_table_id(route_table_id)
        .subnet_id(subnet_id)
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(out
        .association_id()
        .ok_or_else(|| missing(OP, "association id"))?
        .to_string())
}

pub(super) async fn disassociate_route_table(
    client: &Client,
    association_id: &str,
) -> Result<(), ProviderError> {
    gone_is_ok(
        client
            .disassociate_route_table()
            .association_id(association_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("disassociate route table", e)),
    )
}

pub(super) async fn delete_route_table(
    client: &Client,
    route_table_id: &str,
) -> Result<(), ProviderError> {
    gone_is_ok(
        client
            .delete_route_table()
            .route_table_id(route_table_id)
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("delete route table", e)),
    )
}

pub(super) async fn create_route(
    client: &Client,
    route_table_id: &str,
    destination: Ipv4Net,
    target: &RouteTarget,
) -> Result<(), ProviderError> {
    const OP: &str = "create route";
    let request = client
        .create_route()
        .route_table_id(route_table_id)
        .destination_cidr_block(destination.to_string());
    let request = match target {
        RouteTarget::InternetGateway(id) => request.gateway_id(id),
        RouteTarget::TransitGateway(id) => request.transit_gateway_id(id),
        RouteTarget::Local | RouteTarget::Other(_) => {
            return Err(ProviderError::other(
                OP,
                anyhow::anyhow!(
                    "Fleetgate only routes to internet and transit gateways, not {target:?}"
                ),
            ))
        }
    };
    request.send().await.map(drop).map_err(|e| classify(OP, e))
}

pub(super) async fn delete_route(
    client: &Client,
    route_table_id: &str,
    destination: Ipv4Net,
) -> Result<(), ProviderError> {
    gone_is_ok(
        client
            .delete_route()
            .route_table_id(route_table_id)
            .destination_cidr_block(destination.to_string())
            .send()
            .await
            .map(drop)
            .map_err(|e| classify("delete route", e)),
    )
}

#[cfg(test)]
mod tests {
    use super::is_zone_id;

    #[test]
    fn zone_ids_and_zone_names_are_told_apart() {
        assert!(is_zone_id("use1-az1"));
        assert!(is_zone_id("euc1-az3"));
        assert!(!is_zone_id("us-east-1a"));
        assert!(!is_zone_id("eu-central-1b"));
        assert!(!is_zone_id("weird-az"));
    }
}
