//! The dataplane-group reconciler: exactly one live instance per slot `0..requested_instances`.
//!
//! Per pass: instances in slots at or above `requested_instances` are terminated (scale down);
//! stopped ones, duplicates in a slot, and running ones that never connected within the
//! deadline or whose last ping is older than it ([`super::node_health`]) are terminated; every
//! empty slot gets a launch (scale up, replacement), a replacement recording its predecessor
//! and why in its tags. The slot tag is what makes a relaunch after a crash find the first
//! launch instead of adding one, and the client token (named after the predecessor) what
//! keeps a replacement from being launched twice.

use std::collections::BTreeMap;
use std::time::SystemTime;

use uuid::Uuid;

use super::node_health::{replacement_reason, NodeContact};
use super::{client_token, user_must_act, ClusterMembership, ReconcileContext};
use crate::error::{ProviderError, ReconcileError};
use crate::provider::{Instance, InstanceOwner, LaunchRequest, Replacement};
use crate::state::{DataplaneGroupState, InstanceState};
use crate::types::{DataplaneGroupReport, DataplaneGroupSpec, NetworkObserved, ObservedNode};

/// One pass towards `requested_instances` connected nodes. `network` is the network's last
/// observed state (its report); until it has a VPC, subnets and a security group the group
/// waits in `initializing`.
pub async fn reconcile_dataplane_group(
    ctx: &ReconcileContext,
    group: &DataplaneGroupSpec,
    network: &NetworkObserved,
    membership: &dyn ClusterMembership,
) -> Result<DataplaneGroupReport, ReconcileError> {
    match converge(ctx, group, network, membership).await {
        Ok(report) => Ok(report),
        Err(e) => match user_must_act(&e) {
            Some(reason) => Ok(DataplaneGroupReport {
                state: DataplaneGroupState::Error,
                reason: Some(reason),
                nodes: Vec::new(),
            }),
            None => Err(e),
        },
    }
}

/// One pass towards "no instance of this configuration is left" (a configuration or one of
/// its groups was deleted). `terminating` until every instance is terminated.
pub async fn delete_dataplane_group(
    ctx: &ReconcileContext,
    region: &str,
    configuration_id: Uuid,
) -> Result<DataplaneGroupReport, ReconcileError> {
    let p = &ctx.provider;
    let owner = InstanceOwner::Configuration(configuration_id);
    let instances = ctx
        .retry
        .run("find the group's instances", || {
            p.find_instances(region, owner)
        })
        .await?;
    let to_terminate: Vec<String> = instances
        .iter()
        .filter(|i| !i.state.is_some_and(InstanceState::is_gone))
        .map(|i| i.id.clone())
        .collect();
    if !to_terminate.is_empty() {
        ctx.retry
            .run("terminate the group's instances", || {
                p.terminate_instances(region, &to_terminate)
            })
            .await?;
    }
    let remaining: Vec<Instance> = ctx
        .retry
        .run("find the group's instances", || {
            p.find_instances(region, owner)
        })
        .await?
        .into_iter()
        .filter(|i| i.state != Some(InstanceState::Terminated))
        .collect();
    Ok(if remaining.is_empty() {
        DataplaneGroupReport {
            state: DataplaneGroupState::Terminated,
            reason: None,
            nodes: Vec::new(),
        }
    } else {
        DataplaneGroupReport {
            state: DataplaneGroupState::Terminating,
            reason: Some(format!(
                "waiting for {} instance(s) to terminate",
                remaining.len()
            )),
            nodes: remaining.iter().filter_map(observed).collect(),
        }
    })
}

fn observed(i: &Instance) -> Option<ObservedNode> {
    Some(ObservedNode {
        instance_id: i.id.clone(),
        slot: i.slot?,
        state: i.state?,
        private_ip: i.private_ip.clone(),
        hostname: i.private_dns_name.clone(),
        launched_at: i.launched_at,
    })
}

/// What the pass decided for one slot.
#[derive(Debug, Default)]
struct SlotPlan {
    keeper: Option<Instance>,
    /// The newest instance seen in the slot (any state): a launch after it uses a new token.
    newest: Option<Instance>,
    /// The instance this pass terminates in the slot, and why.
    replaces: Option<Replacement>,
}

async fn converge(
    ctx: &ReconcileContext,
    group: &DataplaneGroupSpec,
    network: &NetworkObserved,
    membership: &dyn ClusterMembership,
) -> Result<DataplaneGroupReport, ReconcileError> {
    let (Some(security_group_id), false) =
        (&network.security_group_id, network.subnet_ids.is_empty())
    else {
        return Ok(DataplaneGroupReport {
            state: DataplaneGroupState::Initializing,
            reason: Some(format!(
                "waiting for network {} to be ready",
                group.network_id
            )),
            nodes: Vec::new(),
        });
    };
    let p = &ctx.provider;
    let region = group.region.as_str();
    let owner = InstanceOwner::Configuration(group.configuration_id);
    let instances = ctx
        .retry
        .run("find the group's instances", || {
            p.find_instances(region, owner)
        })
        .await?;

    let now = SystemTime::now();
    let mut slots: BTreeMap<u32, SlotPlan> = (0..group.requested_instances)
        .map(|s| (s, SlotPlan::default()))
        .collect();
    let mut to_terminate: Vec<(String, String)> = Vec::new();
    let mut by_slot: BTreeMap<u32, Vec<Instance>> = BTreeMap::new();
    for instance in instances {
        let gone = instance.state.is_some_and(InstanceState::is_gone);
        match instance.slot.filter(|s| *s < group.requested_instances) {
            Some(slot) => {
                let plan = slots.entry(slot).or_default();
                if plan
                    .newest
                    .as_ref()
                    .is_none_or(|n| launched_before(n, &instance))
                {
                    plan.newest = Some(instance.clone());
                }
                if !gone {
                    by_slot.entry(slot).or_default().push(instance);
                }
            }
            None if !gone => {
                to_terminate.push((instance.id, "scaled down".to_string()));
            }
            None => {}
        }
    }
    for (slot, mut candidates) in by_slot {
        // Oldest live instance first; everything else in the slot goes.
        candidates.sort_by(|a, b| {
            b.state
                .is_some_and(InstanceState::is_live)
                .cmp(&a.state.is_some_and(InstanceState::is_live))
                .then(a.launched_at.cmp(&b.launched_at))
                .then(a.id.cmp(&b.id))
        });
        let mut candidates = candidates.into_iter();
        let first = candidates.next();
        for extra in candidates {
            to_terminate.push((extra.id, format!("duplicate in slot {slot}")));
        }
        let Some(first) = first else { continue };
        let why = match first.state {
            Some(InstanceState::Pending) => None,
            Some(InstanceState::Running) => {
                let contact = match observed(&first) {
                    Some(node) => membership.last_contact(group, &node).await,
                    None => NodeContact::Never,
                };
                replacement_reason(now, first.launched_at, contact, ctx.node_connect_deadline)
            }
            // Stopped, stopping or unknown: a gateway node that is not running is replaced.
            state => Some(format!(
                "instance is {}",
                state.map_or("in an unknown state", InstanceState::as_str)
            )),
        };
        if let Some(plan) = slots.get_mut(&slot) {
            match why {
                None => plan.keeper = Some(first),
                Some(why) => {
                    plan.replaces = Some(Replacement {
                        instance_id: first.id.clone(),
                        reason: why.clone(),
                    });
                    to_terminate.push((first.id, why));
                }
            }
        }
    }

    if !to_terminate.is_empty() {
        for (id, why) in &to_terminate {
            tracing::info!(configuration_id = %group.configuration_id, instance = %id, reason = %why, "terminating gateway node");
        }
        let ids: Vec<String> = to_terminate.iter().map(|(id, _)| id.clone()).collect();
        ctx.retry
            .run("terminate gateway nodes", || {
                p.terminate_instances(region, &ids)
            })
            .await?;
    }

    let mut instances = Vec::new();
    for (slot, plan) in &slots {
        let instance = match &plan.keeper {
            Some(keeper) => keeper.clone(),
            None => {
                launch_into_slot(
                    ctx,
                    group,
                    network,
                    security_group_id,
                    *slot,
                    plan,
                    membership,
                )
                .await?
            }
        };
        instances.push(instance);
    }

    let mut nodes = Vec::new();
    let mut connected = 0;
    let mut replaced = Vec::new();
    for instance in &instances {
        let Some(node) = observed(instance) else {
            continue;
        };
        let is_connected = node.state == InstanceState::Running
            && membership.last_contact(group, &node).await.connected();
        if is_connected {
            connected += 1;
        } else if let Some(r) = &instance.replaces {
            // Until the replacement is in, the group says why its predecessor went.
            replaced.push(format!(
                "slot {} replaced {}: {}",
                node.slot, r.instance_id, r.reason
            ));
        }
        nodes.push(node);
    }
    let requested = group.requested_instances;
    Ok(if connected == requested as usize {
        DataplaneGroupReport {
            state: DataplaneGroupState::Ready,
            reason: None,
            nodes,
        }
    } else {
        let mut reason = format!("{connected} of {requested} node(s) running and connected");
        for r in replaced {
            reason.push_str("; ");
            reason.push_str(&r);
        }
        DataplaneGroupReport {
            state: DataplaneGroupState::Initializing,
            reason: Some(reason),
            nodes,
        }
    })
}

fn launched_before(a: &Instance, b: &Instance) -> bool {
    (a.launched_at, &a.id) < (b.launched_at, &b.id)
}

async fn launch_into_slot(
    ctx: &ReconcileContext,
    group: &DataplaneGroupSpec,
    network: &NetworkObserved,
    security_group_id: &str,
    slot: u32,
    plan: &SlotPlan,
    membership: &dyn ClusterMembership,
) -> Result<Instance, ReconcileError> {
    // Nodes spread over the zones in order: slot 0 in the first subnet, slot 1 in the next…
    let subnet_id = network.subnet_ids[slot as usize % network.subnet_ids.len()].clone();
    let join_token = membership
        .join_token(group, slot)
        .await
        .map_err(ReconcileError::Callback)?;
    // The token names what the launch follows, so a retried launch after a lost answer
    // repeats the same request, while a replacement (new predecessor) is a new one.
    let after = plan.newest.as_ref().map_or("none", |i| i.id.as_str());
    let mut launch = LaunchRequest {
        group: group.clone(),
        slot,
        subnet_id,
        security_group_id: security_group_id.to_string(),
        join_token,
        client_token: client_token(
            group.configuration_id,
            &format!("node/{slot}/after/{after}"),
        ),
        replaces: plan.replaces.clone().or_else(|| {
            // Terminated by an earlier pass that stopped before relaunching (a crash): the
            // reason went with it, the predecessor did not.
            plan.newest.as_ref().map(|i| Replacement {
                instance_id: i.id.clone(),
                reason: format!(
                    "instance was {}",
                    i.state.map_or("in an unknown state", InstanceState::as_str)
                ),
            })
        }),
    };
    let step = format!("launch gateway node into slot {slot}");
    let launched = launch_once(ctx, &step, &launch).await;
    let stale = match &launched {
        // EC2 answers an idempotent repeat with the original instance: one that is already gone
        // means the token was used by an earlier, since-terminated launch.
        Ok(i) => i.state.is_some_and(InstanceState::is_gone),
        Err(e) => e.code() == Some("IdempotentParameterMismatch"),
    };
    if !stale {
        let mut instance = launched?;
        if instance.replaces.is_none() {
            instance.replaces.clone_from(&launch.replaces);
        }
        tracing::info!(configuration_id = %group.configuration_id, slot, instance = %instance.id, "gateway node launched");
        return Ok(instance);
    }
    tracing::warn!(configuration_id = %group.configuration_id, slot, "launch token already used by an earlier launch; launching with a fresh token");
    launch.client_token = client_token(
        group.configuration_id,
        &format!("node/{slot}/fresh/{}", Uuid::new_v4()),
    );
    let mut instance = launch_once(ctx, &step, &launch).await?;
    if instance.replaces.is_none() {
        instance.replaces = launch.replaces;
    }
    Ok(instance)
}

/// Launches one node, retried. The pass already saw the slot empty, so the first attempt
/// launches at once; a retry first looks for the instance an earlier attempt may have made
/// (its answer lost), by the slot tag.
async fn launch_once(
    ctx: &ReconcileContext,
    step: &str,
    launch: &LaunchRequest,
) -> Result<Instance, ProviderError> {
    let p = &ctx.provider;
    let owner = InstanceOwner::Configuration(launch.group.configuration_id);
    ctx.retry
        .run_attempts(step, |attempt| async move {
            if attempt > 1 {
                let existing = p
                    .find_instances(&launch.group.region, owner)
                    .await?
                    .into_iter()
                    .find(|i| {
                        i.slot == Some(launch.slot) && i.state.is_some_and(InstanceState::is_live)
                    });
                if let Some(existing) = existing {
                    return Ok(existing);
                }
            }
            p.launch_instance(launch).await
        })
        .await
}
