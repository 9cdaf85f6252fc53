//! The transit-gateway reconciler: the attachment of the network's VPC (on its subnets) to the
//! customer's transit gateway, then — once the customer accepted it — one route per customer
//! CIDR via the transit gateway in the network's route tables. Routes follow `cidr_blocks`;
//! deleting removes the routes first, then the attachment.

use std::collections::HashSet;

use ipnet::Ipv4Net;

use super::{user_must_act, ReconcileContext};
use crate::error::{ProviderError, ReconcileError};
use crate::provider::{RouteTable, RouteTarget, TransitGatewayAttachment};
use crate::state::{AttachmentPhase, TransitGatewayState};
use crate::types::{
    NetworkObserved, TransitGatewayObserved, TransitGatewayReport, TransitGatewaySpec,
};

/// One pass towards "attached and routed". `region` is the network's region and `network`
/// its last observed state; until the network has a VPC, subnets and a route table the
/// attachment waits in `initializing`.
pub async fn reconcile_transit_gateway(
    ctx: &ReconcileContext,
    region: &str,
    attachment: &TransitGatewaySpec,
    network: &NetworkObserved,
) -> Result<TransitGatewayReport, ReconcileError> {
    match converge(ctx, region, attachment, network).await {
        Ok(report) => Ok(report),
        Err(e) => match user_must_act(&e) {
            Some(reason) => Ok(TransitGatewayReport {
                state: TransitGatewayState::Error,
                reason: Some(reason),
                observed: TransitGatewayObserved::default(),
            }),
            None => Err(e),
        },
    }
}

/// One pass towards "no routes via the transit gateway and no attachment":
/// `terminating` until the provider no longer lists the attachment, then `terminated`.
pub async fn delete_transit_gateway(
    ctx: &ReconcileContext,
    region: &str,
    attachment: &TransitGatewaySpec,
) -> Result<TransitGatewayReport, ReconcileError> {
    let p = &ctx.provider;
    let target = RouteTarget::TransitGateway(attachment.transit_gateway_id.clone());
    let tables = ctx
        .retry
        .run("find route tables", || {
            p.find_route_tables(region, attachment.network_id)
        })
        .await?;
    for table in &tables {
        for route in table.routes.iter().filter(|r| r.target == target) {
            ctx.retry
                .run(
                    &format!("delete route {} from {}", route.destination, table.id),
                    || p.delete_route(region, &table.id, route.destination),
                )
                .await?;
        }
    }
    for found in find_mine(ctx, region, attachment).await? {
        if AttachmentPhase::from_provider(&found.state) != AttachmentPhase::Deleting {
            ctx.retry
                .run(&format!("delete attachment {}", found.id), || {
                    p.delete_transit_gateway_attachment(region, &found.id)
                })
                .await?;
        }
    }
    let remaining = find_mine(ctx, region, attachment).await?;
    Ok(match remaining.first() {
        None => TransitGatewayReport {
            state: TransitGatewayState::Terminated,
            reason: None,
            observed: TransitGatewayObserved::default(),
        },
        Some(a) => TransitGatewayReport {
            state: TransitGatewayState::Terminating,
            reason: Some(format!("attachment {} is {}", a.id, a.state)),
            observed: observed_of(a, Vec::new()),
        },
    })
}

/// This Fleetgate attachment's provider attachments (normally one), with retries.
async fn find_mine(
    ctx: &ReconcileContext,
    region: &str,
    attachment: &TransitGatewaySpec,
) -> Result<Vec<TransitGatewayAttachment>, ProviderError> {
    ctx.retry
        .run("find transit gateway attachments", || {
            find_mine_once(ctx, region, attachment)
        })
        .await
}

/// [`find_mine`] without retries, for use inside a retried step.
async fn find_mine_once(
    ctx: &ReconcileContext,
    region: &str,
    attachment: &TransitGatewaySpec,
) -> Result<Vec<TransitGatewayAttachment>, ProviderError> {
    let mut found: Vec<TransitGatewayAttachment> = ctx
        .provider
        .find_transit_gateway_attachments(region, attachment.network_id)
        .await?
        .into_iter()
        // Ours by tag; an untagged attachment of the network to the same transit gateway is
        // ours too (a VPC can be attached to a transit gateway only once).
        .filter(|a| match a.fleetgate_id {
            Some(id) => id == attachment.id,
            None => a.transit_gateway_id == attachment.transit_gateway_id,
        })
        .filter(|a| AttachmentPhase::from_provider(&a.state) != AttachmentPhase::Deleted)
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

fn observed_of(a: &TransitGatewayAttachment, routed: Vec<Ipv4Net>) -> TransitGatewayObserved {
    TransitGatewayObserved {
        attachment_id: Some(a.id.clone()),
        provider_state: Some(a.state.clone()),
        vpc_id: Some(a.vpc_id.clone()),
        subnet_ids: a.subnet_ids.clone(),
        routed_cidr_blocks: routed,
    }
}

async fn converge(
    ctx: &ReconcileContext,
    region: &str,
    attachment: &TransitGatewaySpec,
    network: &NetworkObserved,
) -> Result<TransitGatewayReport, ReconcileError> {
    let (Some(vpc_id), Some(_), false) = (
        &network.vpc_id,
        &network.route_table_id,
        network.subnet_ids.is_empty(),
    ) else {
        return Ok(TransitGatewayReport {
            state: TransitGatewayState::Initializing,
            reason: Some(format!(
                "waiting for network {} to be ready",
                attachment.network_id
            )),
            observed: TransitGatewayObserved::default(),
        });
    };
    let p = &ctx.provider;
    let found = ctx
        .retry
        .run("ensure transit gateway attachment", || async {
            let mine = find_mine_once(ctx, region, attachment).await?;
            // One that is being deleted (by someone else) cannot be used; wait for it to go
            // rather than fail on EC2's one-attachment-per-VPC-and-gateway rule.
            if let Some(usable) = mine.iter().find(|a| {
                a.vpc_id == *vpc_id
                    && AttachmentPhase::from_provider(&a.state) != AttachmentPhase::Deleting
            }) {
                return Ok(Some(usable.clone()));
            }
            if !mine.is_empty() {
                return Ok(None);
            }
            p.create_transit_gateway_attachment(region, attachment, vpc_id, &network.subnet_ids)
                .await
                .map(Some)
        })
        .await?;
    let Some(found) = found else {
        return Ok(TransitGatewayReport {
            state: TransitGatewayState::Initializing,
            reason: Some("waiting for an earlier attachment to finish deleting".into()),
            observed: TransitGatewayObserved::default(),
        });
    };

    let phase = AttachmentPhase::from_provider(&found.state);
    match phase {
        AttachmentPhase::Available => {}
        AttachmentPhase::PendingAcceptance => {
            return Ok(TransitGatewayReport {
                state: TransitGatewayState::PendingAcceptance,
                reason: Some(format!(
                    "accept attachment {} in the account that owns transit gateway {}",
                    found.id, attachment.transit_gateway_id
                )),
                observed: observed_of(&found, Vec::new()),
            })
        }
        AttachmentPhase::Failed(reason) => {
            return Ok(TransitGatewayReport {
                state: TransitGatewayState::Error,
                reason: Some(reason),
                observed: observed_of(&found, Vec::new()),
            })
        }
        AttachmentPhase::Initializing | AttachmentPhase::Deleting | AttachmentPhase::Deleted => {
            return Ok(TransitGatewayReport {
                state: phase.desired_state(),
                reason: Some(format!("attachment {} is {}", found.id, found.state)),
                observed: observed_of(&found, Vec::new()),
            })
        }
    }

    let routed = converge_routes(ctx, region, attachment).await?;
    match routed {
        Ok(routed) => Ok(TransitGatewayReport {
            state: TransitGatewayState::Ready,
            reason: None,
            observed: observed_of(&found, routed),
        }),
        Err(conflict) => Ok(TransitGatewayReport {
            state: TransitGatewayState::Error,
            reason: Some(conflict),
            observed: observed_of(&found, Vec::new()),
        }),
    }
}

/// Makes the routes via the transit gateway in every route table of the network equal
/// `cidr_blocks`. The inner `Err` is a conflict only the user can resolve (a destination
/// already routed elsewhere).
async fn converge_routes(
    ctx: &ReconcileContext,
    region: &str,
    attachment: &TransitGatewaySpec,
) -> Result<Result<Vec<Ipv4Net>, String>, ProviderError> {
    let p = &ctx.provider;
    let target = &RouteTarget::TransitGateway(attachment.transit_gateway_id.clone());
    let wanted: HashSet<Ipv4Net> = attachment.cidr_blocks.iter().copied().collect();
    let tables = ctx
        .retry
        .run("find route tables", || {
            p.find_route_tables(region, attachment.network_id)
        })
        .await?;
    for table in &tables {
        for route in &table.routes {
            if wanted.contains(&route.destination) && route.target != *target {
                return Ok(Err(format!(
                    "route table {} already sends {} to {:?}; remove that route or change cidr_blocks",
                    table.id, route.destination, route.target
                )));
            }
        }
    }
    for table in &tables {
        for cidr in &attachment.cidr_blocks {
            if has_route(table, *cidr, target) {
                continue;
            }
            ctx.retry
                .run_attempts(
                    &format!("route {cidr} via {}", attachment.transit_gateway_id),
                    |attempt| async move {
                        // A retry looks again first, so a retry after a lost answer does not
                        // fail on the route its first attempt made.
                        if attempt > 1 {
                            let now = p.find_route_tables(region, attachment.network_id).await?;
                            if now
                                .iter()
                                .any(|t| t.id == table.id && has_route(t, *cidr, target))
                            {
                                return Ok(());
                            }
                        }
                        p.create_route(region, &table.id, *cidr, target).await
                    },
                )
                .await?;
        }
        for route in &table.routes {
            if route.target == *target && !wanted.contains(&route.destination) {
                ctx.retry
                    .run(
                        &format!("delete route {} from {}", route.destination, table.id),
                        || p.delete_route(region, &table.id, route.destination),
                    )
                    .await?;
            }
        }
    }
    let mut routed: Vec<Ipv4Net> = attachment.cidr_blocks.clone();
    routed.sort();
    Ok(Ok(routed))
}

fn has_route(table: &RouteTable, destination: Ipv4Net, target: &RouteTarget) -> bool {
    table
        .routes
        .iter()
        .any(|r| r.destination == destination && r.target == *target)
}
