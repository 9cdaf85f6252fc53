//! Transit-gateway attachments against moto: attached on the network's VPC and subnets, a
//! route per customer CIDR, routes follow a CIDR change, delete removes routes and
//! attachment; pending-acceptance held by the wrapper until the customer accepts.

use std::collections::BTreeSet;

use fleetgate_provisioner::reconcile::{
    delete_network, delete_transit_gateway, reconcile_network, reconcile_transit_gateway,
};
use fleetgate_provisioner::state::{NetworkState, TransitGatewayState};
use fleetgate_provisioner::types::NetworkObserved;
use fleetgate_provisioner::{tags, Operation};

use crate::support::{attachment_spec, census, network_spec, region_totals, Env};

/// Destinations routed through `tgw` in the network's route table, read straight from EC2.
async fn routes_via(env: &Env, observed: &NetworkObserved, tgw: &str) -> BTreeSet<String> {
    let tables = env
        .ec2
        .describe_route_tables()
        .route_table_ids(observed.route_table_id.clone().expect("route table"))
        .send()
        .await
        .expect("describe the route table");
    tables
        .route_tables()
        .iter()
        .flat_map(|t| t.routes())
        .filter(|r| r.transit_gateway_id() == Some(tgw))
        .filter_map(|r| r.destination_cidr_block().map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn an_attachment_is_made_on_the_network_and_routes_follow_its_cidr_blocks() {
    let env = Env::start().await;
    let ctx = env.ctx();
    let tgw = env.customer_transit_gateway().await;
    let network = network_spec("10.30.0.0/16");
    let mut attachment = attachment_spec(&network, &tgw, &["10.200.0.0/16", "192.168.50.0/24"]);

    // Before the network exists the attachment waits.
    let waiting = reconcile_transit_gateway(
        &ctx,
        &network.region,
        &attachment,
        &NetworkObserved::default(),
    )
    .await
    .expect("waiting pass");
    assert_eq!(waiting.state, TransitGatewayState::Initializing);
    assert!(waiting
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("waiting for network")));

    let net = reconcile_network(&ctx, &network).await.expect("network");
    assert_eq!(net.state, NetworkState::Ready);
    let report = reconcile_transit_gateway(&ctx, &network.region, &attachment, &net.observed)
        .await
        .expect("attach");
    assert_eq!(report.state, TransitGatewayState::Ready, "{report:?}");
    let attachment_id = report
        .observed
        .attachment_id
        .clone()
        .expect("attachment id");

    // The attachment is on the network's VPC and subnets, tagged with the Fleetgate ids.
    let described = env
        .ec2
        .describe_transit_gateway_vpc_attachments()
        .transit_gateway_attachment_ids(&attachment_id)
        .send()
        .await
        .expect("describe the attachment");
    let found = &described.transit_gateway_vpc_attachments()[0];
    assert_eq!(found.transit_gateway_id(), Some(tgw.as_str()));
    assert_eq!(found.vpc_id(), net.observed.vpc_id.as_deref());
    let subnets: BTreeSet<&str> = found.subnet_ids().iter().map(String::as_str).collect();
    let expected: BTreeSet<&str> = net.observed.subnet_ids.iter().map(String::as_str).collect();
    assert_eq!(subnets, expected);
    assert!(found
        .tags()
        .iter()
        .any(|t| t.key() == Some(tags::ATTACHMENT_ID)
            && t.value() == Some(&attachment.id.to_string())));
    assert_eq!(
        routes_via(&env, &net.observed, &tgw).await,
        set(&["10.200.0.0/16", "192.168.50.0/24"])
    );

    // Idempotent.
    let (faulty, faulty_ctx) = env.faulty();
    let again = reconcile_transit_gateway(&faulty_ctx, &network.region, &attachment, &net.observed)
        .await
        .expect("second pass");
    assert_eq!(again, report);
    assert_eq!(faulty.mutating_calls(), 0);

    // A CIDR change: one removed, one kept, one added.
    attachment.cidr_blocks = vec![
        "192.168.50.0/24".parse().expect("cidr"),
        "172.20.0.0/16".parse().expect("cidr"),
    ];
    let changed = reconcile_transit_gateway(&ctx, &network.region, &attachment, &net.observed)
        .await
        .expect("change cidrs");
    assert_eq!(changed.state, TransitGatewayState::Ready);
    assert_eq!(
        changed.observed.attachment_id.as_deref(),
        Some(attachment_id.as_str())
    );
    assert_eq!(
        routes_via(&env, &net.observed, &tgw).await,
        set(&["172.20.0.0/16", "192.168.50.0/24"])
    );

    // Delete: routes first, then the attachment.
    let deleted = delete_transit_gateway(&faulty_ctx, &network.region, &attachment)
        .await
        .expect("delete");
    assert_eq!(
        deleted.state,
        TransitGatewayState::Terminated,
        "{deleted:?}"
    );
    assert_eq!(faulty.calls(Operation::DeleteRoute), 2);
    assert_eq!(faulty.calls(Operation::DeleteTransitGatewayAttachment), 1);
    assert!(routes_via(&env, &net.observed, &tgw).await.is_empty());
    assert_eq!(census(&env.ec2, network.id, None).await.attachments, 0);
    let default_route_kept = env
        .ec2
        .describe_route_tables()
        .route_table_ids(net.observed.route_table_id.clone().expect("rt"))
        .send()
        .await
        .expect("describe")
        .route_tables()[0]
        .routes()
        .iter()
        .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
    assert!(default_route_kept, "only the transit gateway's routes go");
}

#[tokio::test]
async fn pending_acceptance_is_shown_until_the_customer_accepts_then_routes_are_made() {
    let env = Env::start().await;
    let tgw = env.customer_transit_gateway().await;
    let network = network_spec("10.31.0.0/16");
    let attachment = attachment_spec(&network, &tgw, &["10.201.0.0/16"]);
    let (faulty, ctx) = env.faulty();
    faulty.hold_attachments_pending();
    let net = reconcile_network(&ctx, &network).await.expect("network");

    let pending = reconcile_transit_gateway(&ctx, &network.region, &attachment, &net.observed)
        .await
        .expect("attach");
    assert_eq!(
        pending.state,
        TransitGatewayState::PendingAcceptance,
        "{pending:?}"
    );
    let attachment_id = pending
        .observed
        .attachment_id
        .clone()
        .expect("attachment id");
    assert_eq!(
        pending.observed.provider_state.as_deref(),
        Some("pendingAcceptance")
    );
    let reason = pending.reason.clone().expect("a reason");
    assert!(
        reason.contains(&attachment_id) && reason.contains(&tgw),
        "{reason}"
    );
    assert!(
        routes_via(&env, &net.observed, &tgw).await.is_empty(),
        "no routes before acceptance"
    );

    // Still pending on the next pass; nothing new is created.
    let mutating = faulty.mutating_calls();
    let still = reconcile_transit_gateway(&ctx, &network.region, &attachment, &net.observed)
        .await
        .expect("pass while pending");
    assert_eq!(still.state, TransitGatewayState::PendingAcceptance);
    assert_eq!(faulty.mutating_calls(), mutating);

    faulty.accept_attachment(&attachment_id);
    let ready = reconcile_transit_gateway(&ctx, &network.region, &attachment, &net.observed)
        .await
        .expect("pass after acceptance");
    assert_eq!(ready.state, TransitGatewayState::Ready, "{ready:?}");
    assert_eq!(
        routes_via(&env, &net.observed, &tgw).await,
        set(&["10.201.0.0/16"])
    );
}

#[tokio::test]
async fn deleting_a_network_with_an_attachment_removes_the_attachment_too() {
    let env = Env::start().await;
    let ctx = env.ctx();
    let before = region_totals(&env.ec2).await;
    let tgw = env.customer_transit_gateway().await;
    let network = network_spec("10.32.0.0/16");
    let attachment = attachment_spec(&network, &tgw, &["10.202.0.0/16"]);
    let net = reconcile_network(&ctx, &network).await.expect("network");
    let report = reconcile_transit_gateway(&ctx, &network.region, &attachment, &net.observed)
        .await
        .expect("attach");
    assert_eq!(report.state, TransitGatewayState::Ready);

    let deleted = delete_network(&ctx, &network.region, network.id)
        .await
        .expect("delete the network");
    assert_eq!(deleted.state, NetworkState::Terminated, "{deleted:?}");
    assert_eq!(region_totals(&env.ec2).await, before);
}
