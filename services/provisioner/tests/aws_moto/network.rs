//! Networks against moto: ready with everything visible by tag, a second pass changes
//! nothing, a zone the region does not have is the user's error, delete removes it all.

use std::sync::Arc;

use aws_sdk_ec2::types::Filter;
use fleetgate_provisioner::aws::{AwsProvider, AwsSettings};
use fleetgate_provisioner::reconcile::{
    delete_network, ensure_network_unused, reconcile_network, ReconcileContext,
};
use fleetgate_provisioner::state::NetworkState;
use fleetgate_provisioner::{tags, Operation, RetryPolicy};

use crate::support::{census, group_spec, network_spec, region_totals, Census, Env, AMI, ZONES};

#[tokio::test]
async fn a_network_becomes_ready_with_its_vpc_and_subnets_visible_by_tag() {
    let env = Env::start().await;
    let network = network_spec("10.10.0.0/16");
    let report = reconcile_network(&env.ctx(), &network)
        .await
        .expect("reconcile the network");
    assert_eq!(report.state, NetworkState::Ready, "{report:?}");
    assert_eq!(report.reason, None);
    let vpc_id = report.observed.vpc_id.clone().expect("a vpc id");
    assert_eq!(report.observed.subnet_ids.len(), 3);

    let tag = Filter::builder()
        .name(format!("tag:{}", tags::NETWORK_ID))
        .values(network.id.to_string())
        .build();
    let vpcs = env
        .ec2
        .describe_vpcs()
        .filters(tag.clone())
        .send()
        .await
        .expect("describe vpcs");
    let [vpc] = vpcs.vpcs() else {
        panic!("one tagged VPC expected, got {:?}", vpcs.vpcs());
    };
    assert_eq!(vpc.vpc_id(), Some(vpc_id.as_str()));
    assert_eq!(vpc.cidr_block(), Some("10.10.0.0/16"));

    let subnets = env
        .ec2
        .describe_subnets()
        .filters(tag)
        .send()
        .await
        .expect("describe subnets");
    let mut seen: Vec<(String, String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.availability_zone().unwrap_or_default().to_string(),
                s.cidr_block().unwrap_or_default().to_string(),
                s.vpc_id().unwrap_or_default().to_string(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String, String)> = ZONES
        .iter()
        .zip(["10.10.0.0/18", "10.10.64.0/18", "10.10.128.0/18"])
        .map(|(z, c)| (z.to_string(), c.to_string(), vpc_id.clone()))
        .collect();
    assert_eq!(
        seen, expected,
        "one subnet per zone, carved from the network CIDR"
    );

    // The route table is associated with every subnet and routes to the internet gateway;
    // the security group opens the proxy ports.
    let table_id = report.observed.route_table_id.clone().expect("route table");
    let tables = env
        .ec2
        .describe_route_tables()
        .route_table_ids(&table_id)
        .send()
        .await
        .expect("describe route tables");
    let table = &tables.route_tables()[0];
    let mut associated: Vec<&str> = table
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id())
        .collect();
    associated.sort_unstable();
    let mut subnet_ids: Vec<&str> = report
        .observed
        .subnet_ids
        .iter()
        .map(String::as_str)
        .collect();
    subnet_ids.sort_unstable();
    assert_eq!(associated, subnet_ids);
    let igw = report.observed.internet_gateway_id.clone().expect("igw");
    assert!(
        table
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id() == Some(igw.as_str())),
        "default route via {igw}: {:?}",
        table.routes()
    );
    let group_id = report.observed.security_group_id.clone().expect("sg");
    let groups = env
        .ec2
        .describe_security_groups()
        .group_ids(&group_id)
        .send()
        .await
        .expect("describe security groups");
    let mut ports: Vec<i32> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter_map(|p| p.from_port())
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![8000, 8443]);

    // Level-triggered and idempotent: a second pass finds everything and changes nothing.
    let (faulty, ctx) = env.faulty();
    let again = reconcile_network(&ctx, &network)
        .await
        .expect("second pass");
    assert_eq!(again, report);
    assert_eq!(
        faulty.mutating_calls(),
        0,
        "a converged network needs no change"
    );
    assert_eq!(
        census(&env.ec2, network.id, None).await,
        Census {
            vpcs: 1,
            subnets: 3,
            security_groups: 1,
            internet_gateways: 1,
            route_tables: 1,
            ..Census::default()
        }
    );
}

#[tokio::test]
async fn a_zone_the_region_does_not_have_is_reported_as_the_users_error() {
    let env = Env::start().await;
    let mut network = network_spec("10.11.0.0/16");
    network.availability_zones = vec!["us-east-1a".into(), "mars-north-1a".into()];
    let report = reconcile_network(&env.ctx(), &network)
        .await
        .expect("a user error is a report, not a failed pass");
    assert_eq!(report.state, NetworkState::Error);
    let reason = report.reason.expect("a reason");
    assert!(
        reason.contains("create subnet") && reason.contains("mars-north-1a"),
        "{reason}"
    );
}

#[tokio::test]
async fn deleting_a_network_removes_every_resource_and_is_refused_while_in_use() {
    let env = Env::start().await;
    let before = region_totals(&env.ec2).await;
    let network = network_spec("10.12.0.0/16");
    let ctx = env.ctx();
    let ready = reconcile_network(&ctx, &network).await.expect("create");
    assert_eq!(ready.state, NetworkState::Ready);

    // The API asks first; a configuration with a group in the network blocks the delete.
    let group = group_spec(&network, 2);
    let refused =
        ensure_network_unused(network.id, std::slice::from_ref(&group)).expect_err("in use");
    assert!(
        refused
            .to_string()
            .contains(&group.configuration_id.to_string()),
        "{refused}"
    );
    ensure_network_unused(network.id, &[group_spec(&network_spec("10.13.0.0/16"), 1)])
        .expect("a group in another network does not block");

    let (faulty, faulty_ctx) = env.faulty();
    let report = delete_network(&faulty_ctx, &network.region, network.id)
        .await
        .expect("delete");
    assert_eq!(report.state, NetworkState::Terminated, "{report:?}");
    assert_eq!(census(&env.ec2, network.id, None).await, Census::default());
    assert_eq!(region_totals(&env.ec2).await, before, "nothing left behind");
    assert!(faulty.calls(Operation::DeleteVpc) == 1);

    // Deleting again is a no-op that still says terminated.
    let again = delete_network(&ctx, &network.region, network.id)
        .await
        .expect("delete again");
    assert_eq!(again.state, NetworkState::Terminated);
}

#[tokio::test]
async fn the_provider_built_from_the_environment_reaches_the_endpoint_in_aws_endpoint_url() {
    let env = Env::start().await;
    // The standard chain: credentials, region and endpoint from the environment, as
    // `fleetgate serve --cloud-provider aws` will load them. nextest runs each test in its own
    // process, so this environment is this test's alone.
    for (key, value) in env.aws_env() {
        std::env::set_var(key, value);
    }
    let provider = AwsProvider::from_env(AwsSettings::with_ami(AMI)).await;
    let ctx = ReconcileContext::new(Arc::new(provider)).with_retry(RetryPolicy::fast());
    let network = network_spec("10.14.0.0/16");
    let report = reconcile_network(&ctx, &network).await.expect("reconcile");
    assert_eq!(report.state, NetworkState::Ready, "{report:?}");
    assert_eq!(census(&env.ec2, network.id, None).await.vpcs, 1);
}
