//! Dataplane groups against moto: 3 tagged instances, scale to 1 terminates 2, a stopped node
//! and a node that never connected are replaced, so is one that went silent (recording why in
//! its replacement's tags), deleting the configuration terminates all.

use std::time::{Duration, SystemTime};

use fleetgate_e2e::ec2::user_data;
use fleetgate_provisioner::reconcile::{
    delete_dataplane_group, reconcile_dataplane_group, reconcile_network,
};
use fleetgate_provisioner::state::{DataplaneGroupState, InstanceState, NetworkState};
use fleetgate_provisioner::{tags, Operation};

use crate::support::{group_spec, live_instances, network_spec, Env, Membership};

#[tokio::test]
async fn a_group_of_three_gets_three_tagged_instances_and_scaling_to_one_terminates_two() {
    let env = Env::start().await;
    let ctx = env.ctx();
    let network = network_spec("10.20.0.0/16");
    let net = reconcile_network(&ctx, &network).await.expect("network");
    assert_eq!(net.state, NetworkState::Ready);
    let membership = Membership::default();
    let mut group = group_spec(&network, 3);

    // The launching pass sees its instances pending; the next one sees them running and
    // connected (the control plane's side says so) and reports ready without changing anything.
    let launched = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("scale up");
    assert_eq!(
        launched.state,
        DataplaneGroupState::Initializing,
        "{launched:?}"
    );
    assert_eq!(
        launched.reason.as_deref(),
        Some("0 of 3 node(s) running and connected")
    );
    assert_eq!(
        launched.nodes.iter().map(|n| n.slot).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let (faulty, faulty_ctx) = env.faulty();
    let report = reconcile_dataplane_group(&faulty_ctx, &group, &net.observed, &membership)
        .await
        .expect("second pass");
    assert_eq!(report.state, DataplaneGroupState::Ready, "{report:?}");
    assert_eq!(faulty.mutating_calls(), 0);
    assert!(report
        .nodes
        .iter()
        .all(|n| n.state == InstanceState::Running));
    assert!(report.nodes.iter().all(|n| n.private_ip.is_some()));
    assert_eq!(
        live_instances(&env.ec2, group.configuration_id).await,
        (3, vec![0, 1, 2])
    );

    // Tags, placement (one zone each) and user-data of a launched node.
    let described = env
        .ec2
        .describe_instances()
        .instance_ids(&report.nodes[1].instance_id)
        .send()
        .await
        .expect("describe the node");
    let instance = &described.reservations()[0].instances()[0];
    let tag = |key: &str| {
        instance
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    assert_eq!(
        tag(tags::CONFIGURATION_ID),
        Some(group.configuration_id.to_string())
    );
    assert_eq!(
        tag(tags::CONTROL_PLANE_ID),
        Some(group.control_plane_id.to_string())
    );
    assert_eq!(tag(tags::NETWORK_ID), Some(network.id.to_string()));
    assert_eq!(tag(tags::NODE_SLOT), Some("1".to_string()));
    assert_eq!(
        instance.subnet_id(),
        Some(net.observed.subnet_ids[1].as_str())
    );
    assert_eq!(instance.image_id(), Some(crate::support::AMI));
    assert_eq!(
        instance.instance_type().map(|t| t.as_str()),
        Some("t3.small")
    );
    let script = user_data(&env.ec2, &report.nodes[1].instance_id).await;
    let token_of_slot_1 = membership.tokens.lock()[1].clone();
    assert!(
        script.contains(&format!("cluster_join_token = \"{token_of_slot_1}\"")),
        "{script}"
    );
    assert!(script.contains("cluster_control_plane = \"cp.fleetgate.test:8005\""));
    assert!(
        !script.contains("PRIVATE KEY"),
        "no private key in user-data"
    );

    // Another pass changes nothing.
    let again = reconcile_dataplane_group(&faulty_ctx, &group, &net.observed, &membership)
        .await
        .expect("third pass");
    assert_eq!(again, report);
    assert_eq!(faulty.mutating_calls(), 0);

    // Scale to 1: slots 1 and 2 are terminated, slot 0 stays.
    group.requested_instances = 1;
    let scaled = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("scale down");
    assert_eq!(scaled.state, DataplaneGroupState::Ready);
    assert_eq!(scaled.nodes.len(), 1);
    assert_eq!(scaled.nodes[0].instance_id, report.nodes[0].instance_id);
    assert_eq!(
        live_instances(&env.ec2, group.configuration_id).await,
        (1, vec![0])
    );
    let terminated = env
        .ec2
        .describe_instances()
        .instance_ids(&report.nodes[1].instance_id)
        .instance_ids(&report.nodes[2].instance_id)
        .send()
        .await
        .expect("describe the removed nodes");
    let states: Vec<&str> = terminated
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()))
        .collect();
    assert_eq!(states, vec!["terminated", "terminated"]);

    // Scale back up to 3: new instances (the terminated ones are not "found" again).
    group.requested_instances = 3;
    reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("scale up again");
    let up = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("pass after scaling up");
    assert_eq!(up.state, DataplaneGroupState::Ready);
    assert_eq!(
        live_instances(&env.ec2, group.configuration_id).await,
        (3, vec![0, 1, 2])
    );
    assert!(up.nodes[1..]
        .iter()
        .all(|n| n.instance_id != report.nodes[1].instance_id
            && n.instance_id != report.nodes[2].instance_id));

    // Deleting the configuration terminates every node.
    let deleted = delete_dataplane_group(&ctx, &group.region, group.configuration_id)
        .await
        .expect("delete");
    assert_eq!(
        deleted.state,
        DataplaneGroupState::Terminated,
        "{deleted:?}"
    );
    assert_eq!(
        live_instances(&env.ec2, group.configuration_id).await,
        (0, vec![])
    );
}

#[tokio::test]
async fn a_stopped_node_and_a_node_that_never_connected_are_replaced() {
    let env = Env::start().await;
    let network = network_spec("10.21.0.0/16");
    let ctx = env.ctx();
    let net = reconcile_network(&ctx, &network).await.expect("network");
    let membership = Membership::default();
    let group = group_spec(&network, 3);
    reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("launch");
    let first = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("pass after launch");
    assert_eq!(first.state, DataplaneGroupState::Ready);

    // Slot 0 dies (stopped outside Fleetgate); slot 2's node never dials in.
    env.ec2
        .stop_instances()
        .instance_ids(&first.nodes[0].instance_id)
        .send()
        .await
        .expect("stop slot 0");
    membership
        .silent
        .lock()
        .insert(first.nodes[2].instance_id.clone());

    // Within the connect deadline the silent node is left alone; the group is not ready.
    let patient = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("pass within the deadline");
    assert_eq!(patient.state, DataplaneGroupState::Initializing);
    // Slot 0's replacement is still pending and slot 2 is silent.
    assert!(
        patient
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("1 of 3")),
        "{patient:?}"
    );
    assert_ne!(
        patient.nodes[0].instance_id, first.nodes[0].instance_id,
        "stopped node replaced"
    );
    assert_eq!(patient.nodes[1].instance_id, first.nodes[1].instance_id);
    assert_eq!(patient.nodes[2].instance_id, first.nodes[2].instance_id);

    // Past the deadline it is replaced too.
    let strict = ctx.clone().with_node_connect_deadline(Duration::ZERO);
    reconcile_dataplane_group(&strict, &group, &net.observed, &membership)
        .await
        .expect("pass past the deadline");
    let replaced = reconcile_dataplane_group(&strict, &group, &net.observed, &membership)
        .await
        .expect("pass after the replacement");
    assert_eq!(replaced.state, DataplaneGroupState::Ready, "{replaced:?}");
    assert_eq!(replaced.nodes[0].instance_id, patient.nodes[0].instance_id);
    assert_eq!(replaced.nodes[1].instance_id, first.nodes[1].instance_id);
    assert_ne!(replaced.nodes[2].instance_id, first.nodes[2].instance_id);
    assert_eq!(
        live_instances(&env.ec2, group.configuration_id).await,
        (3, vec![0, 1, 2])
    );
    // Each replacement got its own fresh join token: 3 launches + 2 replacements.
    assert_eq!(membership.tokens.lock().len(), 5);
}

#[tokio::test]
async fn a_group_waits_for_its_network_and_a_lost_launch_answer_does_not_duplicate() {
    let env = Env::start().await;
    let network = network_spec("10.22.0.0/16");
    let membership = Membership::default();
    let group = group_spec(&network, 2);
    let (faulty, ctx) = env.faulty();
    let waiting = reconcile_dataplane_group(&ctx, &group, &Default::default(), &membership)
        .await
        .expect("waiting pass");
    assert_eq!(waiting.state, DataplaneGroupState::Initializing);
    assert_eq!(
        faulty.calls(Operation::FindInstances),
        0,
        "no provider calls while waiting"
    );

    let net = reconcile_network(&ctx, &network).await.expect("network");
    // The provider launches, then the answer is lost (HTTP 503 after the work was done): the
    // retried step finds the instance by its slot tag instead of launching a second one.
    faulty.fail_next_after_call(
        Some(Operation::LaunchInstance),
        1,
        fleetgate_provisioner::Fault::ServerError,
    );
    let report = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("converges");
    assert_eq!(report.nodes.len(), 2, "{report:?}");
    assert_eq!(
        faulty.calls(Operation::LaunchInstance),
        2,
        "one lost, one real"
    );
    assert_eq!(
        live_instances(&env.ec2, group.configuration_id).await,
        (2, vec![0, 1])
    );
}

#[tokio::test]
async fn a_node_that_went_silent_is_replaced_once_and_its_replacement_says_why() {
    let env = Env::start().await;
    let network = network_spec("10.23.0.0/16");
    let ctx = env.ctx();
    let net = reconcile_network(&ctx, &network).await.expect("network");
    let membership = Membership::default();
    let group = group_spec(&network, 2);
    reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("launch");
    let first = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("pass after launch");
    assert_eq!(first.state, DataplaneGroupState::Ready, "{first:?}");
    let silent_id = first.nodes[1].instance_id.clone();

    // Slot 1 pinged, then fell silent 11 minutes ago while its instance kept running: one
    // minute less is within the 10-minute deadline and changes nothing.
    let ago = |minutes: u64| SystemTime::now() - Duration::from_secs(minutes * 60);
    membership
        .last_ping
        .lock()
        .insert(silent_id.clone(), ago(9));
    let patient = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("pass within the deadline");
    assert_eq!(patient.state, DataplaneGroupState::Ready, "{patient:?}");
    assert_eq!(patient.nodes, first.nodes);

    membership
        .last_ping
        .lock()
        .insert(silent_id.clone(), ago(11));
    let replacing = reconcile_dataplane_group(&ctx, &group, &net.observed, &membership)
        .await
        .expect("pass past the deadline");
    assert_eq!(replacing.state, DataplaneGroupState::Initializing);
    let reason = replacing.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("1 of 2 node(s) running and connected; slot 1 replaced ")
            && reason.contains(&silent_id)
            && reason.contains("since its last ping (deadline 600s)"),
        "{reason}"
    );
    let replacement = replacing.nodes[1].instance_id.clone();
    assert_ne!(replacement, silent_id);
    assert_eq!(replacing.nodes[0], first.nodes[0]);

    // The old instance is terminated, the new one records it and why in its tags.
    let described = env
        .ec2
        .describe_instances()
        .instance_ids(&silent_id)
        .instance_ids(&replacement)
        .send()
        .await
        .expect("describe both");
    let all: Vec<_> = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    let old = all
        .iter()
        .find(|i| i.instance_id() == Some(silent_id.as_str()))
        .expect("old instance");
    assert!(
        matches!(
            old.state().and_then(|s| s.name()).map(|n| n.as_str()),
            Some("shutting-down" | "terminated")
        ),
        "{old:?}"
    );
    let new = all
        .iter()
        .find(|i| i.instance_id() == Some(replacement.as_str()))
        .expect("new instance");
    let tag = |key: &str| {
        new.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    assert_eq!(tag(tags::REPLACES), Some(silent_id.clone()));
    assert!(
        tag(tags::REPLACEMENT_REASON).is_some_and(|r| r.starts_with("silent for 6")),
        "{:?}",
        tag(tags::REPLACEMENT_REASON)
    );

    // The replacement connects (the stand-in says it pinged just now): ready, and the next
    // passes (each with a fresh context and provider, as after a control-plane restart: nothing
    // is remembered between passes) change nothing.
    for _ in 0..2 {
        let (faulty, faulty_ctx) = env.faulty();
        let settled = reconcile_dataplane_group(&faulty_ctx, &group, &net.observed, &membership)
            .await
            .expect("pass after the replacement");
        assert_eq!(settled.state, DataplaneGroupState::Ready, "{settled:?}");
        assert_eq!(settled.nodes[1].instance_id, replacement);
        assert_eq!(faulty.mutating_calls(), 0);
    }
    assert_eq!(
        live_instances(&env.ec2, group.configuration_id).await,
        (2, vec![0, 1])
    );
    // 2 launches + 1 replacement.
    assert_eq!(membership.tokens.lock().len(), 3);
}
