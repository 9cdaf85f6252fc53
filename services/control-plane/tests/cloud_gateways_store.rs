//! The store functions the cloud-gateway reconciler driver uses: what needs reconciling, the
//! observed state of a pass (visible in the API), and removing rows whose resources are gone.
//! A pass that started before a delete cannot move a terminating row back.

mod support;

use std::net::Ipv4Addr;

use fleetgate_control_plane::store::Role;
use fleetgate_provisioner::state::{
    DataplaneGroupState, InstanceState, NetworkState, TransitGatewayState,
};
use fleetgate_provisioner::types::{
    DataplaneGroupReport, NetworkObserved, NetworkReport, NodeBootstrap, ObservedNode,
    TransitGatewayObserved, TransitGatewayReport,
};
use ipnet::Ipv4Net;
use serde_json::json;
use support::TestApp;
use uuid::Uuid;

const NETWORKS: &str = "/v2/cloud-gateways/networks";
const CONFIGURATIONS: &str = "/v2/cloud-gateways/configurations";

async fn setup(app: &TestApp, token: &str) -> (Uuid, String) {
    // Registering an AWS account is an operator's job.
    let operator = app.token("org", Role::Operator).await;
    let account = app
        .post(
            "/v2/cloud-gateways/provider-accounts",
            &operator,
            json!({"provider": "aws", "provider_account_id": "111122223333"}),
        )
        .await
        .expect(201)
        .id();
    let net = app
        .post(
            NETWORKS,
            token,
            json!({"name": "edge", "region": "us-east-1",
                   "availability_zones": ["us-east-1a", "us-east-1b"],
                   "cidr_block": "10.0.0.0/16", "cloud_gateway_provider_account_id": account}),
        )
        .await
        .expect(201)
        .id();
    (Uuid::parse_str(&net).expect("id"), net)
}

fn network_report(state: NetworkState) -> NetworkReport {
    NetworkReport {
        state,
        reason: None,
        observed: NetworkObserved {
            vpc_id: Some("vpc-1".into()),
            subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
            ..NetworkObserved::default()
        },
    }
}

#[tokio::test]
async fn networks_take_observations_and_are_removed_after_teardown() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (id, path) = setup(&app, &t).await;
    let path = format!("{NETWORKS}/{path}");

    let todo = app.store.networks_to_reconcile().await.expect("list");
    assert_eq!(todo.len(), 1);
    let spec = todo[0].spec();
    assert_eq!(spec.id, id);
    assert_eq!(spec.region, "us-east-1");
    assert_eq!(
        spec.cidr_block,
        "10.0.0.0/16".parse::<Ipv4Net>().expect("net")
    );
    assert_eq!(spec.availability_zones, vec!["us-east-1a", "us-east-1b"]);

    let mut report = network_report(NetworkState::Error);
    report.reason = Some("zone us-east-1z does not exist".into());
    assert!(app
        .store
        .record_network_observation(id, &report)
        .await
        .expect("record"));
    // Konnect's enum has no `error`: the network shows initializing with the report.
    let shown = app.get(&path, &t).await.expect(200);
    assert_eq!(shown.body["state"], "initializing");
    assert_eq!(shown.body["state_metadata"]["reported_status"], "ERROR");
    assert_eq!(
        shown.body["state_metadata"]["reason"],
        "zone us-east-1z does not exist"
    );
    assert!(app
        .store
        .record_network_observation(id, &network_report(NetworkState::Ready))
        .await
        .expect("record"));
    let shown = app.get(&path, &t).await.expect(200);
    assert_eq!(shown.body["state"], "ready");
    assert_eq!(shown.body["state_metadata"]["reason"], json!(null));
    assert_eq!(
        shown.body["provider_metadata"],
        json!({"vpc_id": "vpc-1", "subnet_ids": ["subnet-a", "subnet-b"]})
    );
    // Not removable while it should exist.
    assert!(!app.store.remove_network(id).await.expect("remove"));

    app.delete(&path, &t).await.expect(204);
    // A pass that started before the delete reports ready: the delete wins.
    assert!(!app
        .store
        .record_network_observation(id, &network_report(NetworkState::Ready))
        .await
        .expect("record"));
    assert_eq!(
        app.get(&path, &t).await.expect(200).body["state"],
        "terminating"
    );
    let todo = app.store.networks_to_reconcile().await.expect("list");
    assert_eq!(todo[0].state, NetworkState::Terminating);
    let gone = NetworkReport {
        state: NetworkState::Terminated,
        reason: None,
        observed: NetworkObserved::default(),
    };
    assert!(app
        .store
        .record_network_observation(id, &gone)
        .await
        .expect("record"));
    assert!(app
        .store
        .networks_to_reconcile()
        .await
        .expect("list")
        .is_empty());
    assert!(app.store.remove_network(id).await.expect("remove"));
    app.get(&path, &t).await.expect(404);
    let listed = app.get(NETWORKS, &t).await.expect(200);
    assert_eq!(listed.body["data"], json!([]));
}

#[tokio::test]
async fn transit_gateways_take_observations_and_are_removed_after_teardown() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, net) = setup(&app, &t).await;
    let tgws = format!("{NETWORKS}/{net}/transit-gateways");
    let id = app
        .post(
            &tgws,
            &t,
            json!({"name": "corp", "cidr_blocks": ["192.168.0.0/20"],
                   "transit_gateway_attachment_config": {
                       "kind": "aws-transit-gateway-attachment",
                       "transit_gateway_id": "tgw-1234",
                       "ram_share_arn": "arn:aws:ram:us-east-1:111122223333:resource-share/x"}}),
        )
        .await
        .expect(201)
        .id();
    let path = format!("{tgws}/{id}");
    let id = Uuid::parse_str(&id).expect("id");
    let todo = app
        .store
        .transit_gateways_to_reconcile()
        .await
        .expect("list");
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].region, "us-east-1");
    let spec = todo[0].spec();
    assert_eq!(spec.transit_gateway_id, "tgw-1234");
    assert_eq!(
        spec.cidr_blocks,
        vec!["192.168.0.0/20".parse::<Ipv4Net>().expect("net")]
    );

    let pending = TransitGatewayReport {
        state: TransitGatewayState::PendingAcceptance,
        reason: Some("accept the attachment in the transit gateway's account".into()),
        observed: TransitGatewayObserved {
            attachment_id: Some("tgw-attach-1".into()),
            provider_state: Some("pendingAcceptance".into()),
            ..TransitGatewayObserved::default()
        },
    };
    assert!(app
        .store
        .record_transit_gateway_observation(id, &pending)
        .await
        .expect("record"));
    let shown = app.get(&path, &t).await.expect(200);
    assert_eq!(shown.body["state"], "pending-acceptance");
    assert!(shown.body["state_metadata"]["reason"]
        .as_str()
        .expect("reason")
        .contains("accept"));

    app.delete(&path, &t).await.expect(204);
    assert!(!app
        .store
        .record_transit_gateway_observation(id, &pending)
        .await
        .expect("record"));
    assert_eq!(
        app.get(&path, &t).await.expect(200).body["state"],
        "terminating"
    );
    assert!(app.store.remove_transit_gateway(id).await.expect("remove"));
    app.get(&path, &t).await.expect(404);
    assert!(app
        .store
        .transit_gateways_to_reconcile()
        .await
        .expect("list")
        .is_empty());
    // With the attachment gone the network may go.
    app.delete(&format!("{NETWORKS}/{net}"), &t)
        .await
        .expect(204);
}

fn node(slot: u32, ip: [u8; 4]) -> ObservedNode {
    ObservedNode {
        instance_id: format!("i-{slot}"),
        slot,
        state: InstanceState::Running,
        private_ip: Some(Ipv4Addr::from(ip).to_string()),
        hostname: Some(format!(
            "ip-{}-{}-{}-{}.ec2.internal",
            ip[0], ip[1], ip[2], ip[3]
        )),
        launched_at: None,
    }
}

#[tokio::test]
async fn dataplane_groups_show_their_nodes_and_deleted_configurations_go_away() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (network_id, net) = setup(&app, &t).await;
    let (cp, _) = app.control_plane(&t, "prod").await;
    let config = app
        .put(
            CONFIGURATIONS,
            &t,
            json!({"control_plane_id": cp, "control_plane_geo": "us", "dataplane_groups": [{
                "provider": "aws", "region": "us-east-1", "cloud_gateway_network_id": net,
                "autoscale": {"kind": "static", "instance_type": "small",
                              "requested_instances": 2}}]}),
        )
        .await
        .expect(200)
        .id();
    let path = format!("{CONFIGURATIONS}/{config}");
    let todo = app
        .store
        .dataplane_groups_to_reconcile()
        .await
        .expect("list");
    assert_eq!(todo.len(), 1);
    let group = &todo[0];
    let bootstrap = NodeBootstrap {
        cluster_endpoint: "cp.example:8005".into(),
        cluster_server_name: "cp.example".into(),
        cluster_ca_cert_pem: String::new(),
        dp_download: None,
    };
    let spec = group.spec(bootstrap.clone());
    assert_eq!(spec.configuration_id.to_string(), config);
    assert_eq!(spec.control_plane_id.to_string(), cp);
    assert_eq!(spec.network_id, network_id);
    assert_eq!(spec.requested_instances, 2);
    // Konnect's size maps to the provider's type.
    assert_eq!(spec.instance_type, "t3.small");

    let report = DataplaneGroupReport {
        state: DataplaneGroupState::Ready,
        reason: None,
        nodes: vec![node(0, [10, 0, 0, 10]), node(1, [10, 0, 128, 11])],
    };
    assert!(app
        .store
        .record_dataplane_group_observation(group.id, &report)
        .await
        .expect("record"));
    let shown = app.get(&path, &t).await.expect(200);
    let g = &shown.body["dataplane_groups"][0];
    assert_eq!(g["state"], "ready");
    assert_eq!(
        g["private_ip_addresses"],
        json!(["10.0.0.10", "10.0.128.11"])
    );
    assert_eq!(
        g["hostnames"],
        json!(["ip-10-0-0-10.ec2.internal", "ip-10-0-128-11.ec2.internal"])
    );

    app.delete(&path, &t).await.expect(204);
    // Until its nodes are gone the configuration shows its group terminating.
    let deleting = app.get(&path, &t).await.expect(200);
    assert_eq!(deleting.body["dataplane_groups"][0]["state"], "terminating");
    // The terminating group wants no nodes, and a stale "ready" cannot revive it.
    let todo = app
        .store
        .dataplane_groups_to_reconcile()
        .await
        .expect("list");
    assert_eq!(todo[0].state, DataplaneGroupState::Terminating);
    assert_eq!(todo[0].spec(bootstrap).requested_instances, 0);
    assert!(!app
        .store
        .record_dataplane_group_observation(group.id, &report)
        .await
        .expect("record"));
    // Nodes still run: the control plane and the network stay in use.
    app.delete(&format!("/v2/control-planes/{cp}"), &t)
        .await
        .expect(409);
    app.delete(&format!("{NETWORKS}/{net}"), &t)
        .await
        .expect(409);
    let gone = DataplaneGroupReport {
        state: DataplaneGroupState::Terminated,
        reason: None,
        nodes: Vec::new(),
    };
    assert!(app
        .store
        .record_dataplane_group_observation(group.id, &gone)
        .await
        .expect("record"));
    assert!(app
        .store
        .remove_dataplane_group(group.id)
        .await
        .expect("remove"));
    assert!(app
        .store
        .dataplane_groups_to_reconcile()
        .await
        .expect("list")
        .is_empty());
    // The deleted configuration went with its last group: the control plane may go now.
    app.get(&path, &t).await.expect(404);
    assert_eq!(
        app.store
            .remove_finished_configurations()
            .await
            .expect("sweep"),
        0
    );
    app.delete(&format!("{NETWORKS}/{net}"), &t)
        .await
        .expect(204);
    app.delete(&format!("/v2/control-planes/{cp}"), &t)
        .await
        .expect(204);
}

#[tokio::test]
async fn a_deleted_configuration_can_be_put_again() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, net) = setup(&app, &t).await;
    let (cp, _) = app.control_plane(&t, "prod").await;
    let body = json!({"control_plane_id": cp, "control_plane_geo": "us", "dataplane_groups": [{
        "provider": "aws", "region": "us-east-1", "cloud_gateway_network_id": net,
        "autoscale": {"kind": "static", "instance_type": "small", "requested_instances": 1}}]});
    let first = app.put(CONFIGURATIONS, &t, body.clone()).await.expect(200);
    let config = first.id();
    app.delete(&format!("{CONFIGURATIONS}/{config}"), &t)
        .await
        .expect(204);
    // While the old group terminates, a new PUT brings the configuration back with a new
    // group next to the terminating one.
    let again = app.put(CONFIGURATIONS, &t, body).await.expect(200);
    assert_eq!(again.id(), config);
    let mut states: Vec<&str> = again.body["dataplane_groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["state"].as_str().expect("state"))
        .collect();
    states.sort();
    assert_eq!(states, vec!["created", "terminating"]);
    // An empty configuration deleted has nothing to tear down: it is gone at once.
    let (cp2, _) = app.control_plane(&t, "staging").await;
    let empty = app
        .put(
            CONFIGURATIONS,
            &t,
            json!({"control_plane_id": cp2, "control_plane_geo": "eu", "dataplane_groups": []}),
        )
        .await
        .expect(200)
        .id();
    app.delete(&format!("{CONFIGURATIONS}/{empty}"), &t)
        .await
        .expect(204);
    app.get(&format!("{CONFIGURATIONS}/{empty}"), &t)
        .await
        .expect(404);
    app.delete(&format!("/v2/control-planes/{cp2}"), &t)
        .await
        .expect(204);
}

#[tokio::test]
async fn autopilot_decides_the_node_count_and_the_group_shows_the_decision() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, net) = setup(&app, &t).await;
    let (cp, _) = app.control_plane(&t, "prod").await;
    let put = |autoscale: serde_json::Value| {
        json!({"control_plane_id": cp, "control_plane_geo": "us", "dataplane_groups": [{
            "provider": "aws", "region": "us-east-1", "cloud_gateway_network_id": net,
            "autoscale": autoscale}]})
    };
    // A medium node carries 2000 rps: base 5000 needs 3 nodes, max 10000 allows 5.
    let config = app
        .put(
            CONFIGURATIONS,
            &t,
            put(json!({"kind": "autopilot", "base_rps": 5000, "max_rps": 10000})),
        )
        .await
        .expect(200)
        .id();
    let path = format!("{CONFIGURATIONS}/{config}");
    let shown = app.get(&path, &t).await.expect(200);
    let g = &shown.body["dataplane_groups"][0];
    assert_eq!(g["requested_instances"], 3);
    assert_eq!(g["autopilot"], json!(null));

    // Without telemetry autopilot holds the floor and says what it measured.
    let mut group = app
        .store
        .dataplane_groups_to_reconcile()
        .await
        .expect("list")
        .remove(0);
    fleetgate_control_plane::cloud::autopilot::apply(&app.store, &mut group).await;
    assert_eq!(group.requested_instances, 3);
    let shown = app.get(&path, &t).await.expect(200);
    let decision = &shown.body["dataplane_groups"][0]["autopilot"];
    assert_eq!(decision["desired_instances"], 3);
    assert_eq!(decision["measured_rps"], 0.0);
    assert!(decision["decided_at"]
        .as_str()
        .expect("RFC 3339")
        .ends_with('Z'));

    // New bounds apply at once; a static PUT forgets the decision.
    let narrowed = app
        .put(
            CONFIGURATIONS,
            &t,
            put(json!({"kind": "autopilot", "base_rps": 100, "max_rps": 2000})),
        )
        .await
        .expect(200);
    assert_eq!(
        narrowed.body["dataplane_groups"][0]["requested_instances"],
        1
    );
    let fixed = app
        .put(
            CONFIGURATIONS,
            &t,
            put(json!({"kind": "static", "instance_type": "large", "requested_instances": 2})),
        )
        .await
        .expect(200);
    let g = &fixed.body["dataplane_groups"][0];
    assert_eq!(g["autopilot"], json!(null));
    assert_eq!(g["requested_instances"], 2);
    let spec_group = app
        .store
        .dataplane_groups_to_reconcile()
        .await
        .expect("list")
        .remove(0);
    assert_eq!(spec_group.instance_type, "large");
}
