//! Local networks: nothing to create on a single machine, so the network operations only keep
//! a small record per network (`<root>/networks/<network id>.json`) with stable ids. That is
//! enough for the reconcilers to work exactly as on a cloud: a network reaches `ready`, and
//! deleting it reaches `terminated` because the "resources" really go away.

use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{read_json, write_json, LocalProvider};
use crate::error::ProviderError;
use crate::provider::{
    InternetGateway, Route, RouteTable, RouteTableAssociation, RouteTarget, SecurityGroup, Subnet,
    Vpc,
};
use crate::types::NetworkSpec;

/// What "exists" of one local network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct NetworkRecord {
    vpc_cidr: Option<Option<Ipv4Net>>,
    subnets: Vec<SubnetRecord>,
    security_group_ports: Option<Vec<u16>>,
    internet_gateway_attached: Option<bool>,
    route_table: Option<RouteTableRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SubnetRecord {
    zone: String,
    cidr: Ipv4Net,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RouteTableRecord {
    associated_subnet_ids: Vec<String>,
    routes: Vec<(Ipv4Net, StoredTarget)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum StoredTarget {
    InternetGateway(String),
    TransitGateway(String),
}

/// `local-<network id>`: the VPC.
pub(super) fn vpc_id(network_id: Uuid) -> String {
    format!("local-{network_id}")
}

fn subnet_id(network_id: Uuid, zone: &str) -> String {
    format!("local-{network_id}-subnet-{zone}")
}

fn security_group_id(network_id: Uuid) -> String {
    format!("local-{network_id}-sg")
}

fn internet_gateway_id(network_id: Uuid) -> String {
    format!("local-{network_id}-igw")
}

fn route_table_id(network_id: Uuid) -> String {
    format!("local-{network_id}-rtb")
}

/// Association ids name the subnet: `local-<network id>-rtbassoc-<zone>`.
fn association_id(network_id: Uuid, zone: &str) -> String {
    format!("local-{network_id}-rtbassoc-{zone}")
}

/// The network id inside any local resource id (`local-<uuid>…`).
fn network_of(operation: &str, resource_id: &str) -> Result<Uuid, ProviderError> {
    resource_id
        .strip_prefix("local-")
        .and_then(|rest| rest.get(..36))
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| ProviderError::Rejected {
            operation: operation.into(),
            code: "InvalidID".into(),
            message: format!("{resource_id:?} is not a local provider resource id"),
        })
}

impl LocalProvider {
    fn network_path(&self, network_id: Uuid) -> PathBuf {
        self.inner
            .settings
            .root_dir
            .join("networks")
            .join(format!("{network_id}.json"))
    }

    /// The record of a network (empty when nothing exists).
    pub(super) fn network(&self, network_id: Uuid) -> Result<NetworkRecord, ProviderError> {
        read_json(&self.network_path(network_id))
            .map(Option::unwrap_or_default)
            .map_err(|e| ProviderError::other("read local network", e))
    }

    /// Read, change and write a network's record under the provider's lock; the record file
    /// is removed once nothing of the network exists.
    pub(super) fn change_network<T>(
        &self,
        operation: &str,
        network_id: Uuid,
        change: impl FnOnce(&mut NetworkRecord) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let _guard = self.inner.files.lock();
        let mut record = self.network(network_id)?;
        let out = change(&mut record)?;
        let path = self.network_path(network_id);
        let empty = record.vpc_cidr.is_none()
            && record.subnets.is_empty()
            && record.security_group_ports.is_none()
            && record.internet_gateway_attached.is_none()
            && record.route_table.is_none();
        let written = if empty {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow::Error::new(e)),
                _ => Ok(()),
            }
        } else {
            write_json(&path, &record)
        };
        written.map_err(|e| ProviderError::other(operation.to_string(), e))?;
        Ok(out)
    }

    pub(super) fn local_vpcs(&self, network_id: Uuid) -> Result<Vec<Vpc>, ProviderError> {
        let record = self.network(network_id)?;
        Ok(record
            .vpc_cidr
            .map(|cidr| vpc_view(network_id, cidr))
            .into_iter()
            .collect())
    }

    pub(super) fn local_create_vpc(&self, network: &NetworkSpec) -> Result<Vpc, ProviderError> {
        self.change_network("create vpc", network.id, |r| {
            // One VPC per network by construction: creating it again is the same VPC.
            let cidr = *r.vpc_cidr.get_or_insert(Some(network.cidr_block));
            Ok(vpc_view(network.id, cidr))
        })
    }

    pub(super) fn local_delete_vpc(&self, vpc_id: &str) -> Result<(), ProviderError> {
        let network_id = network_of("delete vpc", vpc_id)?;
        self.change_network("delete vpc", network_id, |r| {
            r.vpc_cidr = None;
            Ok(())
        })
    }

    pub(super) fn local_subnets(&self, network_id: Uuid) -> Result<Vec<Subnet>, ProviderError> {
        let record = self.network(network_id)?;
        Ok(record
            .subnets
            .iter()
            .map(|s| subnet_view(network_id, s))
            .collect())
    }

    pub(super) fn local_create_subnet(
        &self,
        network: &NetworkSpec,
        zone: &str,
        cidr: Ipv4Net,
    ) -> Result<Subnet, ProviderError> {
        self.change_network("create subnet", network.id, |r| {
            if let Some(existing) = r.subnets.iter().find(|s| s.zone == zone) {
                return Ok(subnet_view(network.id, existing));
            }
            let record = SubnetRecord {
                zone: zone.to_string(),
                cidr,
            };
            let view = subnet_view(network.id, &record);
            r.subnets.push(record);
            Ok(view)
        })
    }

    pub(super) fn local_delete_subnet(&self, id: &str) -> Result<(), ProviderError> {
        let network_id = network_of("delete subnet", id)?;
        self.change_network("delete subnet", network_id, |r| {
            r.subnets.retain(|s| subnet_id(network_id, &s.zone) != id);
            Ok(())
        })
    }

    pub(super) fn local_security_groups(
        &self,
        network_id: Uuid,
    ) -> Result<Vec<SecurityGroup>, ProviderError> {
        let record = self.network(network_id)?;
        Ok(record
            .security_group_ports
            .map(|ports| SecurityGroup {
                id: security_group_id(network_id),
                vpc_id: vpc_id(network_id),
                open_tcp_ports: ports,
            })
            .into_iter()
            .collect())
    }

    pub(super) fn local_create_security_group(
        &self,
        network_id: Uuid,
    ) -> Result<SecurityGroup, ProviderError> {
        self.change_network("create security group", network_id, |r| {
            let ports = r.security_group_ports.get_or_insert_with(Vec::new).clone();
            Ok(SecurityGroup {
                id: security_group_id(network_id),
                vpc_id: vpc_id(network_id),
                open_tcp_ports: ports,
            })
        })
    }

    pub(super) fn local_open_tcp_port(
        &self,
        group_id: &str,
        port: u16,
    ) -> Result<(), ProviderError> {
        let network_id = network_of("open tcp port", group_id)?;
        self.change_network("open tcp port", network_id, |r| {
            let ports = r.security_group_ports.get_or_insert_with(Vec::new);
            if !ports.contains(&port) {
                ports.push(port);
            }
            Ok(())
        })
    }

    pub(super) fn local_delete_security_group(&self, group_id: &str) -> Result<(), ProviderError> {
        let network_id = network_of("delete security group", group_id)?;
        self.change_network("delete security group", network_id, |r| {
            r.security_group_ports = None;
            Ok(())
        })
    }

    pub(super) fn local_internet_gateways(
        &self,
        network_id: Uuid,
    ) -> Result<Vec<InternetGateway>, ProviderError> {
        let record = self.network(network_id)?;
        Ok(record
            .internet_gateway_attached
            .map(|attached| igw_view(network_id, attached))
            .into_iter()
            .collect())
    }

    pub(super) fn local_create_internet_gateway(
        &self,
        network_id: Uuid,
    ) -> Result<InternetGateway, ProviderError> {
        self.change_network("create internet gateway", network_id, |r| {
            let attached = *r.internet_gateway_attached.get_or_insert(false);
            Ok(igw_view(network_id, attached))
        })
    }

    pub(super) fn local_set_internet_gateway_attached(
        &self,
        gateway_id: &str,
        attached: bool,
    ) -> Result<(), ProviderError> {
        let operation = if attached {
            "attach internet gateway"
        } else {
            "detach internet gateway"
        };
        let network_id = network_of(operation, gateway_id)?;
        self.change_network(operation, network_id, |r| {
            if let Some(a) = r.internet_gateway_attached.as_mut() {
                *a = attached;
            }
            Ok(())
        })
    }

    pub(super) fn local_delete_internet_gateway(
        &self,
        gateway_id: &str,
    ) -> Result<(), ProviderError> {
        let network_id = network_of("delete internet gateway", gateway_id)?;
        self.change_network("delete internet gateway", network_id, |r| {
            r.internet_gateway_attached = None;
            Ok(())
        })
    }

    pub(super) fn local_route_tables(
        &self,
        network_id: Uuid,
    ) -> Result<Vec<RouteTable>, ProviderError> {
        let record = self.network(network_id)?;
        Ok(record
            .route_table
            .as_ref()
            .map(|t| route_table_view(network_id, &record, t))
            .into_iter()
            .collect())
    }

    pub(super) fn local_create_route_table(
        &self,
        network_id: Uuid,
    ) -> Result<RouteTable, ProviderError> {
        self.change_network("create route table", network_id, |r| {
            let table = r.route_table.get_or_insert_with(Default::default).clone();
            Ok(route_table_view(network_id, r, &table))
        })
    }

    pub(super) fn local_associate_route_table(
        &self,
        table_id: &str,
        subnet: &str,
    ) -> Result<String, ProviderError> {
        const OP: &str = "associate route table";
        let network_id = network_of(OP, table_id)?;
        self.change_network(OP, network_id, |r| {
            let zone = r
                .subnets
                .iter()
                .find(|s| subnet_id(network_id, &s.zone) == subnet)
                .map(|s| s.zone.clone())
                .ok_or_else(|| not_found(OP, subnet))?;
            let table = r
                .route_table
                .as_mut()
                .ok_or_else(|| not_found(OP, table_id))?;
            if !table.associated_subnet_ids.iter().any(|s| s == subnet) {
                table.associated_subnet_ids.push(subnet.to_string());
            }
            Ok(association_id(network_id, &zone))
        })
    }

    pub(super) fn local_disassociate_route_table(
        &self,
        association: &str,
    ) -> Result<(), ProviderError> {
        let network_id = network_of("disassociate route table", association)?;
        self.change_network("disassociate route table", network_id, |r| {
            let zones: Vec<String> = r.subnets.iter().map(|s| s.zone.clone()).collect();
            if let Some(table) = r.route_table.as_mut() {
                table.associated_subnet_ids.retain(|subnet| {
                    !zones.iter().any(|z| {
                        association_id(network_id, z) == association
                            && subnet_id(network_id, z) == *subnet
                    })
                });
            }
            Ok(())
        })
    }

    pub(super) fn local_delete_route_table(&self, table_id: &str) -> Result<(), ProviderError> {
        let network_id = network_of("delete route table", table_id)?;
        self.change_network("delete route table", network_id, |r| {
            r.route_table = None;
            Ok(())
        })
    }

    pub(super) fn local_create_route(
        &self,
        table_id: &str,
        destination: Ipv4Net,
        target: &RouteTarget,
    ) -> Result<(), ProviderError> {
        const OP: &str = "create route";
        let network_id = network_of(OP, table_id)?;
        let stored = match target {
            RouteTarget::InternetGateway(id) => StoredTarget::InternetGateway(id.clone()),
            RouteTarget::TransitGateway(id) => StoredTarget::TransitGateway(id.clone()),
            other => {
                return Err(ProviderError::Rejected {
                    operation: OP.into(),
                    code: "InvalidParameterValue".into(),
                    message: format!("routes to {other:?} cannot be created"),
                })
            }
        };
        self.change_network(OP, network_id, |r| {
            let table = r
                .route_table
                .as_mut()
                .ok_or_else(|| not_found(OP, table_id))?;
            match table.routes.iter().find(|(d, _)| *d == destination) {
                Some((_, existing)) if *existing == stored => Ok(()),
                Some(_) => Err(ProviderError::Rejected {
                    operation: OP.into(),
                    code: "RouteAlreadyExists".into(),
                    message: format!("{table_id} already has a route to {destination}"),
                }),
                None => {
                    table.routes.push((destination, stored));
                    Ok(())
                }
            }
        })
    }

    pub(super) fn local_delete_route(
        &self,
        table_id: &str,
        destination: Ipv4Net,
    ) -> Result<(), ProviderError> {
        let network_id = network_of("delete route", table_id)?;
        self.change_network("delete route", network_id, |r| {
            if let Some(table) = r.route_table.as_mut() {
                table.routes.retain(|(d, _)| *d != destination);
            }
            Ok(())
        })
    }
}

fn not_found(operation: &str, id: &str) -> ProviderError {
    ProviderError::NotReady {
        operation: operation.into(),
        code: "NotFound".into(),
        message: format!("{id} does not exist"),
    }
}

fn vpc_view(network_id: Uuid, cidr: Option<Ipv4Net>) -> Vpc {
    Vpc {
        id: vpc_id(network_id),
        cidr_block: cidr.map(|c| c.to_string()),
        state: "available".into(),
    }
}

fn subnet_view(network_id: Uuid, s: &SubnetRecord) -> Subnet {
    Subnet {
        id: subnet_id(network_id, &s.zone),
        vpc_id: vpc_id(network_id),
        availability_zone: s.zone.clone(),
        cidr_block: Some(s.cidr.to_string()),
    }
}

fn igw_view(network_id: Uuid, attached: bool) -> InternetGateway {
    InternetGateway {
        id: internet_gateway_id(network_id),
        attached_vpc_ids: if attached {
            vec![vpc_id(network_id)]
        } else {
            Vec::new()
        },
    }
}

fn route_table_view(network_id: Uuid, record: &NetworkRecord, t: &RouteTableRecord) -> RouteTable {
    RouteTable {
        id: route_table_id(network_id),
        vpc_id: vpc_id(network_id),
        associations: record
            .subnets
            .iter()
            .filter(|s| {
                t.associated_subnet_ids
                    .contains(&subnet_id(network_id, &s.zone))
            })
            .map(|s| RouteTableAssociation {
                id: association_id(network_id, &s.zone),
                subnet_id: subnet_id(network_id, &s.zone),
            })
            .collect(),
        routes: t
            .routes
            .iter()
            .map(|(destination, target)| Route {
                destination: *destination,
                target: match target {
                    StoredTarget::InternetGateway(id) => RouteTarget::InternetGateway(id.clone()),
                    StoredTarget::TransitGateway(id) => RouteTarget::TransitGateway(id.clone()),
                },
            })
            .collect(),
    }
}
