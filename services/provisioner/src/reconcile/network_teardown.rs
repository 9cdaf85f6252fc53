//! Removing a network's resources, in dependency order: instances, transit-gateway
//! attachments, route tables, internet gateways, subnets, security groups, VPCs.
//!
//! Used two ways: deleting a network (keep nothing), and cleaning up duplicates while
//! reconciling one (keep the resources the pass settled on, remove every other resource tagged
//! with the network).

use std::collections::HashSet;

use uuid::Uuid;

use super::ReconcileContext;
use crate::error::ProviderError;
use crate::provider::{InstanceOwner, InternetGateway, RouteTable, SecurityGroup, Subnet, Vpc};
use crate::state::{AttachmentPhase, InstanceState};

/// Every resource tagged with a network, as read at the start of a pass.
#[derive(Debug, Clone, Default)]
pub(super) struct NetworkInventory {
    pub vpcs: Vec<Vpc>,
    pub subnets: Vec<Subnet>,
    pub security_groups: Vec<SecurityGroup>,
    pub internet_gateways: Vec<InternetGateway>,
    pub route_tables: Vec<RouteTable>,
}

impl NetworkInventory {
    /// Five describe calls, each retried.
    pub async fn read(
        ctx: &ReconcileContext,
        region: &str,
        network_id: Uuid,
    ) -> Result<Self, ProviderError> {
        let p = &ctx.provider;
        let r = &ctx.retry;
        Ok(Self {
            vpcs: r
                .run("find vpcs", || p.find_vpcs(region, network_id))
                .await?,
            subnets: r
                .run("find subnets", || p.find_subnets(region, network_id))
                .await?,
            security_groups: r
                .run("find security groups", || {
                    p.find_security_groups(region, network_id)
                })
                .await?,
            internet_gateways: r
                .run("find internet gateways", || {
                    p.find_internet_gateways(region, network_id)
                })
                .await?,
            route_tables: r
                .run("find route tables", || {
                    p.find_route_tables(region, network_id)
                })
                .await?,
        })
    }
}

/// Resources to leave alone; everything else tagged with the network is removed.
#[derive(Debug, Default)]
pub(super) struct Keep {
    pub vpc_ids: HashSet<String>,
    pub subnet_ids: HashSet<String>,
    pub security_group_ids: HashSet<String>,
    pub internet_gateway_ids: HashSet<String>,
    pub route_table_ids: HashSet<String>,
}

impl Keep {
    fn everything_goes(&self) -> bool {
        self.vpc_ids.is_empty()
    }
}

/// Whether the teardown finished.
#[derive(Debug)]
pub(super) enum Teardown {
    /// Nothing left to remove.
    Done,
    /// Something is still going away (instances shutting down, an attachment deleting); the
    /// string says what. Call again later.
    Waiting(String),
}

/// Removes every resource in `inventory` that `keep` does not name. `inventory` is what the
/// pass read at its start: resources the pass created since are all in `keep`.
pub(super) async fn teardown(
    ctx: &ReconcileContext,
    region: &str,
    network_id: Uuid,
    keep: &Keep,
    inventory: &NetworkInventory,
) -> Result<Teardown, ProviderError> {
    let p = &ctx.provider;
    let r = &ctx.retry;
    let NetworkInventory {
        vpcs,
        subnets,
        security_groups: groups,
        internet_gateways: gateways,
        route_tables: tables,
    } = inventory;

    let doomed_vpcs: Vec<_> = vpcs
        .iter()
        .filter(|v| !keep.vpc_ids.contains(&v.id))
        .collect();
    let doomed_vpc_ids: HashSet<&str> = doomed_vpcs.iter().map(|v| v.id.as_str()).collect();
    let doomed_subnets: Vec<_> = subnets
        .iter()
        .filter(|s| !keep.subnet_ids.contains(&s.id))
        .collect();
    let doomed_tables: Vec<_> = tables
        .iter()
        .filter(|t| !keep.route_table_ids.contains(&t.id))
        .collect();
    let doomed_gateways: Vec<_> = gateways
        .iter()
        .filter(|g| !keep.internet_gateway_ids.contains(&g.id))
        .collect();
    let doomed_groups: Vec<_> = groups
        .iter()
        .filter(|g| !keep.security_group_ids.contains(&g.id))
        .collect();

    let nothing_doomed = doomed_vpcs.is_empty()
        && doomed_subnets.is_empty()
        && doomed_tables.is_empty()
        && doomed_gateways.is_empty()
        && doomed_groups.is_empty();
    if nothing_doomed && !keep.everything_goes() {
        return Ok(Teardown::Done);
    }
    if !keep.everything_goes() {
        tracing::warn!(
            %network_id,
            vpcs = doomed_vpcs.len(),
            subnets = doomed_subnets.len(),
            route_tables = doomed_tables.len(),
            internet_gateways = doomed_gateways.len(),
            security_groups = doomed_groups.len(),
            "removing duplicate network resources"
        );
    }

    // 1. Instances: every one of the network when it is deleted, else those in doomed subnets
    //    (their groups relaunch them in the kept subnets).
    let doomed_subnet_ids: HashSet<&str> = doomed_subnets.iter().map(|s| s.id.as_str()).collect();
    let in_doomed = |i: &crate::provider::Instance| {
        keep.everything_goes()
            || i.subnet_id
                .as_deref()
                .is_some_and(|s| doomed_subnet_ids.contains(s))
    };
    if keep.everything_goes() || !doomed_subnets.is_empty() {
        let instances = r
            .run("find the network's instances", || {
                p.find_instances(region, InstanceOwner::Network(network_id))
            })
            .await?;
        let to_terminate: Vec<String> = instances
            .iter()
            .filter(|i| in_doomed(i) && !i.state.is_some_and(InstanceState::is_gone))
            .map(|i| i.id.clone())
            .collect();
        if !to_terminate.is_empty() {
            r.run("terminate the network's instances", || {
                p.terminate_instances(region, &to_terminate)
            })
            .await?;
        }
        let remaining = r
            .run("find the network's instances", || {
                p.find_instances(region, InstanceOwner::Network(network_id))
            })
            .await?
            .into_iter()
            .filter(|i| in_doomed(i) && i.state != Some(InstanceState::Terminated))
            .count();
        if remaining > 0 {
            return Ok(Teardown::Waiting(format!(
                "waiting for {remaining} instance(s) to terminate"
            )));
        }
    }

    // 2. Transit-gateway attachments on doomed VPCs.
    if !doomed_vpcs.is_empty() {
        let attachments = r
            .run("find transit gateway attachments", || {
                p.find_transit_gateway_attachments(region, network_id)
            })
            .await?;
        for a in attachments
            .iter()
            .filter(|a| doomed_vpc_ids.contains(a.vpc_id.as_str()))
        {
            if AttachmentPhase::from_provider(&a.state) != AttachmentPhase::Deleting {
                r.run(&format!("delete attachment {}", a.id), || {
                    p.delete_transit_gateway_attachment(region, &a.id)
                })
                .await?;
            }
        }
        let remaining = r
            .run("find transit gateway attachments", || {
                p.find_transit_gateway_attachments(region, network_id)
            })
            .await?
            .into_iter()
            .filter(|a| doomed_vpc_ids.contains(a.vpc_id.as_str()))
            .count();
        if remaining > 0 {
            return Ok(Teardown::Waiting(format!(
                "waiting for {remaining} transit gateway attachment(s) to be deleted"
            )));
        }
    }

    // 3. Route tables (their routes go with them).
    for table in &doomed_tables {
        for association in &table.associations {
            r.run(&format!("disassociate {}", association.id), || {
                p.disassociate_route_table(region, &association.id)
            })
            .await?;
        }
        r.run(&format!("delete route table {}", table.id), || {
            p.delete_route_table(region, &table.id)
        })
        .await?;
    }

    // 4. Internet gateways.
    for gateway in &doomed_gateways {
        for vpc_id in &gateway.attached_vpc_ids {
            r.run(&format!("detach {} from {vpc_id}", gateway.id), || {
                p.detach_internet_gateway(region, &gateway.id, vpc_id)
            })
            .await?;
        }
        r.run(&format!("delete internet gateway {}", gateway.id), || {
            p.delete_internet_gateway(region, &gateway.id)
        })
        .await?;
    }

    // 5. Subnets, 6. security groups, 7. VPCs.
    for subnet in &doomed_subnets {
        r.run(&format!("delete subnet {}", subnet.id), || {
            p.delete_subnet(region, &subnet.id)
        })
        .await?;
    }
    for group in &doomed_groups {
        r.run(&format!("delete security group {}", group.id), || {
            p.delete_security_group(region, &group.id)
        })
        .await?;
    }
    for vpc in &doomed_vpcs {
        r.run(&format!("delete vpc {}", vpc.id), || {
            p.delete_vpc(region, &vpc.id)
        })
        .await?;
    }
    Ok(Teardown::Done)
}
