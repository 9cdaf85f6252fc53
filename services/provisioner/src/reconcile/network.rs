//! The network reconciler: VPC, one subnet per zone, security group with the proxy ports,
//! internet gateway, and one route table (default route to the internet gateway) associated
//! with every subnet. Deleting removes all of it, and anything else tagged with the network.

use std::collections::HashSet;

use ipnet::Ipv4Net;
use uuid::Uuid;

use super::network_teardown::{teardown, Keep, NetworkInventory, Teardown};
use super::{user_must_act, ReconcileContext};
use crate::cidr::carve_subnets;
use crate::error::{ProviderError, ReconcileError};
use crate::provider::{
    InternetGateway, Route, RouteTable, RouteTarget, SecurityGroup, Subnet, Vpc,
};
use crate::state::NetworkState;
use crate::types::{DataplaneGroupSpec, NetworkObserved, NetworkReport, NetworkSpec};

/// A network cannot be deleted while dataplane groups run in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network {network_id} is used by configuration(s) {}; remove those dataplane groups first", .configuration_ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", "))]
pub struct NetworkInUse {
    /// The network.
    pub network_id: Uuid,
    /// The configurations with a group in it.
    pub configuration_ids: Vec<Uuid>,
}

/// The check the API runs before accepting a network delete (answering 409 with the message).
pub fn ensure_network_unused(
    network_id: Uuid,
    groups: &[DataplaneGroupSpec],
) -> Result<(), NetworkInUse> {
    let mut configuration_ids: Vec<Uuid> = groups
        .iter()
        .filter(|g| g.network_id == network_id)
        .map(|g| g.configuration_id)
        .collect();
    configuration_ids.sort_unstable();
    configuration_ids.dedup();
    if configuration_ids.is_empty() {
        Ok(())
    } else {
        Err(NetworkInUse {
            network_id,
            configuration_ids,
        })
    }
}

/// One pass towards "the network exists": creates what is missing, removes stray duplicates,
/// and reports `ready` once everything is in place.
pub async fn reconcile_network(
    ctx: &ReconcileContext,
    network: &NetworkSpec,
) -> Result<NetworkReport, ReconcileError> {
    match converge(ctx, network).await {
        Ok(report) => Ok(report),
        Err(e) => match user_must_act(&e) {
            Some(reason) => Ok(NetworkReport {
                state: NetworkState::Error,
                reason: Some(reason),
                observed: NetworkObserved::default(),
            }),
            None => Err(e),
        },
    }
}

/// One pass towards "the network is gone": terminates any instance still tagged with it,
/// deletes its transit-gateway attachments, route tables, internet gateways, subnets, security
/// groups and VPCs. `terminating` while something is still going away, then `terminated`.
pub async fn delete_network(
    ctx: &ReconcileContext,
    region: &str,
    network_id: Uuid,
) -> Result<NetworkReport, ReconcileError> {
    let inventory = NetworkInventory::read(ctx, region, network_id).await?;
    let outcome = teardown(ctx, region, network_id, &Keep::default(), &inventory).await?;
    Ok(match outcome {
        Teardown::Done => NetworkReport {
            state: NetworkState::Terminated,
            reason: None,
            observed: NetworkObserved::default(),
        },
        Teardown::Waiting(reason) => NetworkReport {
            state: NetworkState::Terminating,
            reason: Some(reason),
            observed: NetworkObserved::default(),
        },
    })
}

async fn converge(
    ctx: &ReconcileContext,
    network: &NetworkSpec,
) -> Result<NetworkReport, ReconcileError> {
    let carved = carve_subnets(network.cidr_block, network.availability_zones.len())
        .map_err(|e| ReconcileError::InvalidDesiredState(e.to_string()))?;
    // One read of everything up front; each step works from it and reads afresh only when it
    // is retried, so a steady-state pass costs five describe calls.
    let inv = NetworkInventory::read(ctx, &network.region, network.id).await?;
    let vpc = ensure_vpc(ctx, network, &inv).await?;
    let mut subnets = Vec::with_capacity(carved.len());
    for (zone, cidr) in network.availability_zones.iter().zip(&carved) {
        subnets.push(ensure_subnet(ctx, network, &inv, &vpc, zone, *cidr).await?);
    }
    let group = ensure_security_group(ctx, network, &inv, &vpc).await?;
    let gateway = ensure_internet_gateway(ctx, network, &inv, &vpc).await?;
    let table = ensure_route_table(ctx, network, &inv, &vpc, &subnets, &gateway).await?;

    let keep = Keep {
        vpc_ids: HashSet::from([vpc.id.clone()]),
        subnet_ids: subnets.iter().map(|s| s.id.clone()).collect(),
        security_group_ids: HashSet::from([group.id.clone()]),
        internet_gateway_ids: HashSet::from([gateway.id.clone()]),
        route_table_ids: HashSet::from([table.id.clone()]),
    };
    let observed = NetworkObserved {
        vpc_id: Some(vpc.id),
        subnet_ids: subnets.into_iter().map(|s| s.id).collect(),
        security_group_id: Some(group.id),
        route_table_id: Some(table.id),
        internet_gateway_id: Some(gateway.id),
    };
    // Duplicates (left by a create whose answer was lost on an eventually consistent
    // endpoint) go last, once the kept set is complete.
    Ok(
        match teardown(ctx, &network.region, network.id, &keep, &inv).await? {
            Teardown::Done => NetworkReport {
                state: NetworkState::Ready,
                reason: None,
                observed,
            },
            Teardown::Waiting(reason) => NetworkReport {
                state: NetworkState::Initializing,
                reason: Some(format!("removing duplicate resources: {reason}")),
                observed,
            },
        },
    )
}

/// Attempt 1 of a step uses what the pass read at its start; a retry reads afresh.
async fn current<T: Clone, Fut>(
    attempt: u32,
    snapshot: &[T],
    read: Fut,
) -> Result<Vec<T>, ProviderError>
where
    Fut: std::future::Future<Output = Result<Vec<T>, ProviderError>>,
{
    if attempt == 1 {
        Ok(snapshot.to_vec())
    } else {
        read.await
    }
}

async fn ensure_vpc(
    ctx: &ReconcileContext,
    network: &NetworkSpec,
    inv: &NetworkInventory,
) -> Result<Vpc, ProviderError> {
    let p = &ctx.provider;
    let region = network.region.as_str();
    ctx.retry
        .run_attempts("ensure vpc", |attempt| async move {
            let mut vpcs = current(attempt, &inv.vpcs, p.find_vpcs(region, network.id)).await?;
            if vpcs.len() > 1 {
                // Keep the one most built on; the rest are removed as duplicates.
                let subnets =
                    current(attempt, &inv.subnets, p.find_subnets(region, network.id)).await?;
                let built_on = |v: &Vpc| subnets.iter().filter(|s| s.vpc_id == v.id).count();
                vpcs.sort_by(|a, b| built_on(b).cmp(&built_on(a)).then(a.id.cmp(&b.id)));
            }
            match vpcs.into_iter().next() {
                Some(vpc) => Ok(vpc),
                None => p.create_vpc(network).await,
            }
        })
        .await
}

async fn ensure_subnet(
    ctx: &ReconcileContext,
    network: &NetworkSpec,
    inv: &NetworkInventory,
    vpc: &Vpc,
    zone: &str,
    cidr: Ipv4Net,
) -> Result<Subnet, ProviderError> {
    let p = &ctx.provider;
    let region = network.region.as_str();
    ctx.retry
        .run_attempts(&format!("ensure subnet in {zone}"), |attempt| async move {
            let mut found: Vec<Subnet> =
                current(attempt, &inv.subnets, p.find_subnets(region, network.id))
                    .await?
                    .into_iter()
                    .filter(|s| s.vpc_id == vpc.id && s.availability_zone == zone)
                    .collect();
            found.sort_by(|a, b| a.id.cmp(&b.id));
            match found.into_iter().next() {
                Some(subnet) => Ok(subnet),
                None => p.create_subnet(network, &vpc.id, zone, cidr).await,
            }
        })
        .await
}

async fn ensure_security_group(
    ctx: &ReconcileContext,
    network: &NetworkSpec,
    inv: &NetworkInventory,
    vpc: &Vpc,
) -> Result<SecurityGroup, ProviderError> {
    let p = &ctx.provider;
    let region = network.region.as_str();
    let group = ctx
        .retry
        .run_attempts("ensure security group", |attempt| async move {
            let read = p.find_security_groups(region, network.id);
            let mut found: Vec<SecurityGroup> = current(attempt, &inv.security_groups, read)
                .await?
                .into_iter()
                .filter(|g| g.vpc_id == vpc.id)
                .collect();
            found.sort_by(|a, b| a.id.cmp(&b.id));
            match found.into_iter().next() {
                Some(group) => Ok(group),
                None => p.create_security_group(network, &vpc.id).await,
            }
        })
        .await?;
    for &port in &ctx.gateway_ports {
        if group.open_tcp_ports.contains(&port) {
            continue;
        }
        // Opening an open port succeeds, so a plain retry is safe here.
        ctx.retry
            .run(&format!("open tcp port {port}"), || {
                p.open_tcp_port(region, &group.id, port)
            })
            .await?;
    }
    Ok(group)
}

async fn ensure_internet_gateway(
    ctx: &ReconcileContext,
    network: &NetworkSpec,
    inv: &NetworkInventory,
    vpc: &Vpc,
) -> Result<InternetGateway, ProviderError> {
    let p = &ctx.provider;
    let region = network.region.as_str();
    let gateway = ctx
        .retry
        .run_attempts("ensure internet gateway", |attempt| async move {
            let read = p.find_internet_gateways(region, network.id);
            let mut found = current(attempt, &inv.internet_gateways, read).await?;
            // Attached to our VPC first, then unattached ones; one attached elsewhere is a
            // leftover of a duplicate VPC and goes with it.
            found.retain(|g| g.attached_vpc_ids.is_empty() || g.attached_vpc_ids.contains(&vpc.id));
            found.sort_by(|a, b| {
                b.attached_vpc_ids
                    .len()
                    .cmp(&a.attached_vpc_ids.len())
                    .then(a.id.cmp(&b.id))
            });
            match found.into_iter().next() {
                Some(gateway) => Ok(gateway),
                None => p.create_internet_gateway(network).await,
            }
        })
        .await?;
    if !gateway.attached_vpc_ids.contains(&vpc.id) {
        let gateway = &gateway;
        ctx.retry
            .run_attempts("attach internet gateway", |attempt| async move {
                if attempt > 1 {
                    // A retried attach must not fail on its own earlier success.
                    let now = p.find_internet_gateways(region, network.id).await?;
                    if now
                        .iter()
                        .any(|g| g.id == gateway.id && g.attached_vpc_ids.contains(&vpc.id))
                    {
                        return Ok(());
                    }
                }
                p.attach_internet_gateway(region, &gateway.id, &vpc.id)
                    .await
            })
            .await?;
    }
    Ok(gateway)
}

async fn ensure_route_table(
    ctx: &ReconcileContext,
    network: &NetworkSpec,
    inv: &NetworkInventory,
    vpc: &Vpc,
    subnets: &[Subnet],
    gateway: &InternetGateway,
) -> Result<RouteTable, ProviderError> {
    let p = &ctx.provider;
    let region = network.region.as_str();
    let table = ctx
        .retry
        .run_attempts("ensure route table", |attempt| async move {
            let read = p.find_route_tables(region, network.id);
            let mut found: Vec<RouteTable> = current(attempt, &inv.route_tables, read)
                .await?
                .into_iter()
                .filter(|t| t.vpc_id == vpc.id)
                .collect();
            found.sort_by(|a, b| {
                b.associations
                    .len()
                    .cmp(&a.associations.len())
                    .then(a.id.cmp(&b.id))
            });
            match found.into_iter().next() {
                Some(table) => Ok(table),
                None => p.create_route_table(network, &vpc.id).await,
            }
        })
        .await?;
    // A retry of the steps below looks again first: a retried change must not fail on its
    // own earlier success (an association or route that already exists).
    let table_id = table.id.as_str();
    let fresh_table = || async move {
        Ok::<_, ProviderError>(
            p.find_route_tables(region, network.id)
                .await?
                .into_iter()
                .find(|t| t.id == table_id),
        )
    };
    for subnet in subnets {
        if table.associations.iter().any(|a| a.subnet_id == subnet.id) {
            continue;
        }
        ctx.retry
            .run_attempts(
                &format!("associate route table with {}", subnet.id),
                |attempt| async move {
                    if attempt > 1 {
                        let now = fresh_table().await?;
                        if now.is_some_and(|t| {
                            t.associations.iter().any(|a| a.subnet_id == subnet.id)
                        }) {
                            return Ok(());
                        }
                    }
                    p.associate_route_table(region, table_id, &subnet.id)
                        .await
                        .map(drop)
                },
            )
            .await?;
    }
    let default_route = Ipv4Net::default();
    let wanted = &RouteTarget::InternetGateway(gateway.id.clone());
    let is_default = |r: &&Route| r.destination == default_route;
    if table.routes.iter().find(is_default).map(|r| &r.target) != Some(wanted) {
        let snapshot = &table;
        ctx.retry
            .run_attempts("route 0.0.0.0/0 to the internet gateway", |attempt| async move {
                let now = if attempt == 1 {
                    Some(snapshot.clone())
                } else {
                    fresh_table().await?
                };
                match now.as_ref().and_then(|t| t.routes.iter().find(is_default)) {
                    Some(route) if route.target == *wanted => return Ok(()),
                    Some(route) => {
                        tracing::info!(route_table = %table_id, from = ?route.target, to = ?wanted, "moving the default route to the network's internet gateway");
                        p.delete_route(region, table_id, default_route).await?;
                    }
                    None => {}
                }
                p.create_route(region, table_id, default_route, wanted).await
            })
            .await?;
    }
    Ok(table)
}
