//! The local provider with the real reconcilers and real `fleetgate-dp` processes on loopback.
//! Needs the workspace binaries (`cargo build --workspace --bins`, as the e2e harness does).
//! No control plane: the nodes point at a dead port with a made-up join token, keep retrying
//! their enrolment and still serve `/status`. Enrolment against a real control plane (and
//! the nodes connecting) is covered end to end in tests/tests/quickstart.rs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fleetgate_e2e::{binary, eventually, free_port, http};
use fleetgate_provisioner::local::{
    LocalNode, LocalProvider, LocalSettings, LOCAL_REGION, TRANSIT_GATEWAYS_UNSUPPORTED,
};
use fleetgate_provisioner::reconcile::{
    delete_dataplane_group, delete_network, delete_transit_gateway, reconcile_dataplane_group,
    reconcile_network, reconcile_transit_gateway, ClusterMembership, NodeContact, ReconcileContext,
};
use fleetgate_provisioner::state::{
    DataplaneGroupState, InstanceState, NetworkState, TransitGatewayState,
};
use fleetgate_provisioner::types::{
    DataplaneGroupSpec, NetworkObserved, NetworkSpec, NodeBootstrap, ObservedNode,
    TransitGatewaySpec,
};
use fleetgate_provisioner::{CloudProvider, RetryPolicy};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// A root dir, a provider over it, and what the nodes need to start.
struct Env {
    /// Kept for its lifetime: the root dir goes with it.
    _dir: tempfile::TempDir,
    settings: LocalSettings,
    provider: Arc<LocalProvider>,
}

impl Env {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let mut settings = LocalSettings::new(dir.path().join("local"));
        settings.dp_binary = binary("fleetgate-dp");
        settings.stop_grace = Duration::from_secs(5);
        settings.restart_backoff_min = Duration::from_millis(100);
        let provider = Arc::new(
            LocalProvider::open(settings.clone())
                .await
                .expect("open the local provider"),
        );
        Self {
            _dir: dir,
            settings,
            provider,
        }
    }

    /// Drops the provider (as a control plane that stops) and opens a new one over the root.
    async fn reopen(&mut self) {
        self.provider = Arc::new(
            LocalProvider::open(self.settings.clone())
                .await
                .expect("reopen the local provider"),
        );
    }

    fn ctx(&self) -> ReconcileContext {
        ReconcileContext::new(self.provider.clone() as Arc<dyn CloudProvider>)
            .with_retry(RetryPolicy::fast())
    }

    fn live_nodes(&self) -> Vec<LocalNode> {
        let mut nodes: Vec<LocalNode> = self
            .provider
            .nodes()
            .expect("list local nodes")
            .into_iter()
            .filter(|n| n.state.is_live())
            .collect();
        nodes.sort_by_key(|n| n.slot);
        nodes
    }
}

impl Drop for Env {
    /// A failed test must not leave node processes behind.
    fn drop(&mut self) {
        for node in self.provider.nodes().unwrap_or_default() {
            if let Some(pid) = node.pid {
                kill_9(pid);
            }
        }
    }
}

fn ca_certificate() -> String {
    let key = rcgen::KeyPair::generate().expect("generate a key");
    let mut params = rcgen::CertificateParams::new(vec![]).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("self-sign the CA").pem()
}

fn network_spec() -> NetworkSpec {
    NetworkSpec {
        id: Uuid::new_v4(),
        name: "local-network".into(),
        region: LOCAL_REGION.into(),
        availability_zones: vec!["local-a".into(), "local-b".into()],
        cidr_block: "10.20.0.0/16".parse().expect("cidr"),
    }
}

fn group_spec(network: &NetworkSpec, requested_instances: u32) -> DataplaneGroupSpec {
    DataplaneGroupSpec {
        configuration_id: Uuid::new_v4(),
        control_plane_id: Uuid::new_v4(),
        region: LOCAL_REGION.into(),
        network_id: network.id,
        instance_type: "local".into(),
        requested_instances,
        bootstrap: NodeBootstrap {
            // Nothing listens there: the nodes run standalone and keep retrying.
            cluster_endpoint: free_port().to_string(),
            cluster_server_name: "localhost".into(),
            cluster_ca_cert_pem: ca_certificate(),
            dp_download: None,
        },
    }
}

/// No control plane: tokens are made up, and no node ever connects.
struct NoControlPlane;

#[async_trait]
impl ClusterMembership for NoControlPlane {
    async fn join_token(&self, group: &DataplaneGroupSpec, slot: u32) -> anyhow::Result<String> {
        Ok(format!("fgjt_{}_{slot}", group.configuration_id.simple()))
    }

    async fn last_contact(&self, _group: &DataplaneGroupSpec, _node: &ObservedNode) -> NodeContact {
        NodeContact::Never
    }
}

/// `/proc/<pid>` gone or a zombie.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn kill_9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

async fn answers_status(node: &LocalNode) -> bool {
    http()
        .get(format!("http://{}/status", node.status))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Waits until every given node answers `/status`.
async fn wait_for_status(nodes: &[LocalNode]) {
    for node in nodes {
        eventually(
            WAIT,
            &format!("{} to answer /status on {}", node.instance_id, node.status),
            || async { answers_status(node).await.then_some(()) },
        )
        .await;
    }
}

async fn ready_network(env: &Env, network: &NetworkSpec) -> NetworkObserved {
    let report = reconcile_network(&env.ctx(), network)
        .await
        .expect("reconcile the local network");
    assert_eq!(report.state, NetworkState::Ready, "{report:?}");
    report.observed
}

fn node_log(env: &Env, node: &LocalNode) -> String {
    std::fs::read_to_string(node.dir.join("dp.log")).unwrap_or_else(|e| {
        format!(
            "(no log in {}: {e}; root {})",
            node.dir.display(),
            env.settings.root_dir.display()
        )
    })
}

#[tokio::test]
async fn a_local_network_reaches_ready_and_is_deleted_to_terminated() {
    let env = Env::start().await;
    let network = network_spec();
    let observed = ready_network(&env, &network).await;
    assert_eq!(
        observed.vpc_id.as_deref(),
        Some(format!("local-{}", network.id).as_str())
    );
    assert_eq!(observed.subnet_ids.len(), 2, "one subnet per zone");

    // Level-triggered and stable: a second pass (and a restarted provider) sees the same ids.
    let mut env = env;
    env.reopen().await;
    assert_eq!(ready_network(&env, &network).await, observed);

    let deleted = delete_network(&env.ctx(), LOCAL_REGION, network.id)
        .await
        .expect("delete the local network");
    assert_eq!(deleted.state, NetworkState::Terminated, "{deleted:?}");
    let root = &env.settings.root_dir;
    assert!(
        std::fs::read_dir(root.join("networks"))
            .expect("networks dir")
            .next()
            .is_none(),
        "nothing of the network is left under {}",
        root.display()
    );
}

#[tokio::test]
async fn a_group_runs_as_supervised_processes_that_are_restarted_scaled_and_removed() {
    let env = Env::start().await;
    let network = network_spec();
    let observed = ready_network(&env, &network).await;
    let group = group_spec(&network, 2);
    let ctx = env.ctx();

    let report = reconcile_dataplane_group(&ctx, &group, &observed, &NoControlPlane)
        .await
        .expect("reconcile the group");
    assert_eq!(report.nodes.len(), 2, "{report:?}");
    assert_eq!(
        report.state,
        DataplaneGroupState::Initializing,
        "no CP: not connected"
    );
    for node in &report.nodes {
        assert_eq!(node.state, InstanceState::Running);
        assert_eq!(node.private_ip.as_deref(), Some("127.0.0.1"));
        assert!(node
            .hostname
            .as_deref()
            .is_some_and(|h| h.starts_with(&format!("local-{}-", node.slot))));
    }
    let nodes = env.live_nodes();
    assert_eq!(nodes.len(), 2);
    assert_ne!(
        nodes[0].status, nodes[1].status,
        "each node has its own ports"
    );
    wait_for_status(&nodes).await;
    let settings = std::fs::read_to_string(nodes[0].dir.join("dp.toml")).expect("settings");
    assert!(
        settings.contains("cluster_join_token = \"fgjt_"),
        "{settings}"
    );
    // Only the join token: no pre-issued certificate or key, in the settings or the node dir.
    assert!(!settings.contains("PRIVATE KEY"), "{settings}");
    assert!(!settings.contains("cluster_cert"), "{settings}");
    for node in &nodes {
        for file in ["cluster.crt", "cluster.key"] {
            assert!(
                !node.dir.join(file).exists() && !node.dir.join("prefix").join(file).exists(),
                "{file} in {}",
                node.dir.display()
            );
        }
    }
    // With nobody to enrol with, the node keeps trying (and serves /status meanwhile).
    eventually(WAIT, "node 0 to log an enrolment retry", || async {
        node_log(&env, &nodes[0])
            .contains("cannot enrol with the control plane yet")
            .then_some(())
    })
    .await;

    // A second pass changes nothing: same instances, same processes.
    let again = reconcile_dataplane_group(&ctx, &group, &observed, &NoControlPlane)
        .await
        .expect("reconcile again");
    let ids = |r: &[ObservedNode]| r.iter().map(|n| n.instance_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again.nodes), ids(&report.nodes));
    assert_eq!(
        env.live_nodes().iter().map(|n| n.pid).collect::<Vec<_>>(),
        nodes.iter().map(|n| n.pid).collect::<Vec<_>>()
    );

    // kill -9 -> the supervisor starts it again on the same ports.
    let victim = nodes[1].clone();
    let old_pid = victim.pid.expect("node 1 runs");
    kill_9(old_pid);
    let restarted = eventually(WAIT, "the killed node to be restarted", || async {
        env.provider
            .node(&victim.instance_id)
            .expect("read the node")
            .filter(|n| n.pid.is_some_and(|p| p != old_pid) && n.restarts >= 1)
    })
    .await;
    assert_eq!(restarted.status, victim.status);
    wait_for_status(std::slice::from_ref(&restarted)).await;

    // Scale to 1: slot 1 is terminated and its process is gone.
    let one = DataplaneGroupSpec {
        requested_instances: 1,
        ..group.clone()
    };
    let scaled = reconcile_dataplane_group(&ctx, &one, &observed, &NoControlPlane)
        .await
        .expect("scale down");
    assert_eq!(
        ids(&scaled.nodes),
        vec![report.nodes[0].instance_id.clone()]
    );
    let gone = env
        .provider
        .node(&victim.instance_id)
        .expect("read the node")
        .expect("terminated nodes stay listed");
    assert_eq!(gone.state, InstanceState::Terminated);
    let restarted_pid = restarted.pid.expect("restarted pid");
    assert!(
        process_gone(restarted_pid),
        "process {restarted_pid} still runs"
    );
    assert!(
        !answers_status(&restarted).await,
        "terminated node still answers"
    );
    assert_eq!(env.live_nodes().len(), 1);

    // Delete the group: nothing is left running.
    let survivor_pid = nodes[0].pid.expect("slot 0 runs");
    let deleted = delete_dataplane_group(&ctx, LOCAL_REGION, group.configuration_id)
        .await
        .expect("delete the group");
    assert_eq!(
        deleted.state,
        DataplaneGroupState::Terminated,
        "{deleted:?}"
    );
    assert!(env.live_nodes().is_empty());
    assert!(
        process_gone(survivor_pid),
        "process {survivor_pid} still runs"
    );
    let log = node_log(&env, &nodes[0]);
    assert!(!log.is_empty(), "the node logged into its dir");
}

#[tokio::test]
async fn a_reopened_provider_adopts_running_nodes_without_duplicates() {
    let mut env = Env::start().await;
    let network = network_spec();
    let observed = ready_network(&env, &network).await;
    let group = group_spec(&network, 2);
    let first = reconcile_dataplane_group(&env.ctx(), &group, &observed, &NoControlPlane)
        .await
        .expect("reconcile the group");
    let before = env.live_nodes();
    wait_for_status(&before).await;

    // The control plane restarts: the processes keep running and are adopted.
    env.reopen().await;
    let after = reconcile_dataplane_group(&env.ctx(), &group, &observed, &NoControlPlane)
        .await
        .expect("reconcile after the restart");
    assert_eq!(after.nodes, first.nodes, "same instances, no duplicates");
    let adopted = env.live_nodes();
    assert_eq!(
        adopted.iter().map(|n| n.pid).collect::<Vec<_>>(),
        before.iter().map(|n| n.pid).collect::<Vec<_>>(),
        "the same processes, not new ones"
    );
    let all_processes = env.provider.nodes().expect("nodes").len();
    assert_eq!(all_processes, 2, "no instance was added");

    // The adopted node is supervised too.
    let old_pid = adopted[0].pid.expect("runs");
    kill_9(old_pid);
    let restarted = eventually(WAIT, "the adopted node to be restarted", || async {
        env.provider
            .node(&adopted[0].instance_id)
            .expect("read the node")
            .filter(|n| n.pid.is_some_and(|p| p != old_pid))
    })
    .await;
    wait_for_status(std::slice::from_ref(&restarted)).await;

    // The same client token never launches twice, after a restart too.
    let launch = fleetgate_provisioner::LaunchRequest {
        group: group.clone(),
        slot: 7,
        subnet_id: observed.subnet_ids[0].clone(),
        security_group_id: observed.security_group_id.clone().expect("sg"),
        join_token: "fgjt_token".into(),
        client_token: "the-same-token".into(),
        replaces: None,
    };
    let a = env.provider.launch_instance(&launch).await.expect("launch");
    env.reopen().await;
    let b = env
        .provider
        .launch_instance(&launch)
        .await
        .expect("launch again");
    assert_eq!(a.id, b.id);
    assert_eq!(env.live_nodes().len(), 3);

    let deleted = delete_dataplane_group(&env.ctx(), LOCAL_REGION, group.configuration_id)
        .await
        .expect("delete the group");
    assert_eq!(
        deleted.state,
        DataplaneGroupState::Terminated,
        "{deleted:?}"
    );
    assert!(env.live_nodes().is_empty());
    for node in adopted.iter().chain([&restarted]) {
        if let Some(pid) = node.pid {
            assert!(process_gone(pid), "process {pid} still runs");
        }
    }
    let deleted = delete_network(&env.ctx(), LOCAL_REGION, network.id)
        .await
        .expect("delete the network");
    assert_eq!(deleted.state, NetworkState::Terminated);
}

#[tokio::test]
async fn transit_gateways_are_refused_with_the_reason() {
    let env = Env::start().await;
    let network = network_spec();
    let observed = ready_network(&env, &network).await;
    let attachment = TransitGatewaySpec {
        id: Uuid::new_v4(),
        network_id: network.id,
        name: "customer".into(),
        cidr_blocks: vec!["10.99.0.0/16".parse().expect("cidr")],
        transit_gateway_id: "tgw-0123456789abcdef0".into(),
        ram_share_arn: "arn:aws:ram:us-east-1:123456789012:resource-share/abc".into(),
    };
    let report = reconcile_transit_gateway(&env.ctx(), LOCAL_REGION, &attachment, &observed)
        .await
        .expect("reconcile the attachment");
    assert_eq!(report.state, TransitGatewayState::Error);
    assert_eq!(report.reason.as_deref(), Some(TRANSIT_GATEWAYS_UNSUPPORTED));
    assert_eq!(
        TRANSIT_GATEWAYS_UNSUPPORTED,
        "transit gateways are not supported by the local provider"
    );
    // Deleting the refused attachment still completes, and so does the network.
    let deleted = delete_transit_gateway(&env.ctx(), LOCAL_REGION, &attachment)
        .await
        .expect("delete the attachment");
    assert_eq!(deleted.state, TransitGatewayState::Terminated);
    let deleted = delete_network(&env.ctx(), LOCAL_REGION, network.id)
        .await
        .expect("delete the network");
    assert_eq!(deleted.state, NetworkState::Terminated);
}
