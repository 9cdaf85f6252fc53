//! Shared set-up for the moto tests: a private moto per test, the AWS provider pointed at it,
//! a direct EC2 client to check results independently of the provider code, desired-state
//! builders, a control-plane stand-in for join tokens and "connected", and a log capture.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;
use fleetgate_e2e::ec2::{live_instances_tagged, tag_filter, tag_value};
use fleetgate_e2e::{Moto, MOTO_REGION};
use fleetgate_provisioner::aws::{AwsProvider, AwsSettings};
use fleetgate_provisioner::reconcile::{ClusterMembership, NodeContact, ReconcileContext};
use fleetgate_provisioner::types::{
    DataplaneGroupSpec, NetworkSpec, NodeBootstrap, ObservedNode, TransitGatewaySpec,
};
use fleetgate_provisioner::{tags, CloudProvider, FaultyProvider, RetryPolicy};
use parking_lot::Mutex;
use uuid::Uuid;

/// An AMI moto knows.
pub const AMI: &str = "ami-03cf127a";
pub const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// A moto server with the provider and a checking client on it.
pub struct Env {
    /// Kept for its lifetime: dropping it stops the server.
    _moto: Moto,
    pub aws: Arc<AwsProvider>,
    pub ec2: Client,
}

impl Env {
    pub async fn start() -> Self {
        let moto = Moto::start().await;
        let sdk = moto.sdk_config().await;
        let aws = Arc::new(AwsProvider::from_sdk_config(
            sdk.clone(),
            AwsSettings::with_ami(AMI),
        ));
        let ec2 = Client::new(&sdk);
        Self {
            _moto: moto,
            aws,
            ec2,
        }
    }

    /// Wipes all of moto's state (back to the default VPC), so a loop of scenarios runs against
    /// an empty region each time instead of ever slower describes.
    pub async fn reset(&self) {
        let answer = fleetgate_e2e::http()
            .post(format!("{}/moto-api/reset", self._moto.endpoint))
            .send()
            .await
            .expect("reset moto");
        assert!(
            answer.status().is_success(),
            "moto reset: {}",
            answer.status()
        );
    }

    /// What a process needs in its environment to reach this moto (`AWS_ENDPOINT_URL`,
    /// static credentials, region).
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        self._moto.aws_env()
    }

    /// A context on the plain AWS provider, with millisecond backoff.
    pub fn ctx(&self) -> ReconcileContext {
        ReconcileContext::new(self.aws.clone()).with_retry(RetryPolicy::fast())
    }

    /// A fault wrapper around the AWS provider, and a context on it.
    pub fn faulty(&self) -> (Arc<FaultyProvider>, ReconcileContext) {
        let faulty = Arc::new(FaultyProvider::new(self.aws.clone()));
        let ctx = ReconcileContext::new(faulty.clone() as Arc<dyn CloudProvider>)
            .with_retry(RetryPolicy::fast());
        (faulty, ctx)
    }

    /// The customer's transit gateway (in the same moto account: moto has no RAM sharing).
    pub async fn customer_transit_gateway(&self) -> String {
        let out = self
            .ec2
            .create_transit_gateway()
            .description("customer tgw")
            .send()
            .await
            .expect("create the customer's transit gateway");
        out.transit_gateway()
            .and_then(|t| t.transit_gateway_id())
            .expect("transit gateway id")
            .to_string()
    }
}

pub fn network_spec(cidr: &str) -> NetworkSpec {
    NetworkSpec {
        id: Uuid::new_v4(),
        name: "test-network".into(),
        region: MOTO_REGION.into(),
        availability_zones: ZONES.iter().map(|z| z.to_string()).collect(),
        cidr_block: cidr.parse().expect("test CIDR"),
    }
}

pub fn group_spec(network: &NetworkSpec, requested_instances: u32) -> DataplaneGroupSpec {
    DataplaneGroupSpec {
        configuration_id: Uuid::new_v4(),
        control_plane_id: Uuid::new_v4(),
        region: network.region.clone(),
        network_id: network.id,
        instance_type: "t3.small".into(),
        requested_instances,
        bootstrap: NodeBootstrap {
            cluster_endpoint: "cp.fleetgate.test:8005".into(),
            cluster_server_name: "cp.cluster.fleetgate.internal".into(),
            cluster_ca_cert_pem:
                "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUTEST\n-----END CERTIFICATE-----\n"
                    .into(),
            dp_download: None,
        },
    }
}

pub fn attachment_spec(
    network: &NetworkSpec,
    transit_gateway_id: &str,
    cidrs: &[&str],
) -> TransitGatewaySpec {
    TransitGatewaySpec {
        id: Uuid::new_v4(),
        network_id: network.id,
        name: "customer-prod".into(),
        cidr_blocks: cidrs
            .iter()
            .map(|c| c.parse().expect("test CIDR"))
            .collect(),
        transit_gateway_id: transit_gateway_id.into(),
        ram_share_arn: "arn:aws:ram:us-east-1:123456789012:resource-share/abc".into(),
    }
}

/// The control plane's side: hands out numbered join tokens, and says a node pinged just now
/// unless its instance id was marked as never heard from (`silent`) or given an older last
/// ping (`last_ping`).
#[derive(Default)]
pub struct Membership {
    pub tokens: Mutex<Vec<String>>,
    pub silent: Mutex<HashSet<String>>,
    pub last_ping: Mutex<HashMap<String, SystemTime>>,
}

#[async_trait]
impl ClusterMembership for Membership {
    async fn join_token(&self, group: &DataplaneGroupSpec, slot: u32) -> anyhow::Result<String> {
        let mut tokens = self.tokens.lock();
        let token = format!(
            "fgjt_{}_{slot}_{}",
            group.configuration_id.simple(),
            tokens.len()
        );
        tokens.push(token.clone());
        Ok(token)
    }

    async fn last_contact(&self, _group: &DataplaneGroupSpec, node: &ObservedNode) -> NodeContact {
        if self.silent.lock().contains(&node.instance_id) {
            return NodeContact::Never;
        }
        let ping = self.last_ping.lock().get(&node.instance_id).copied();
        NodeContact::LastPing(ping.unwrap_or_else(SystemTime::now))
    }
}

/// What exists for a network and a configuration, counted straight from EC2 by tag.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    pub vpcs: usize,
    pub subnets: usize,
    pub security_groups: usize,
    pub internet_gateways: usize,
    pub route_tables: usize,
    pub live_instances: usize,
    pub live_slots: Vec<u32>,
    pub attachments: usize,
    pub tgw_routes: usize,
}

pub async fn census(ec2: &Client, network_id: Uuid, configuration_id: Option<Uuid>) -> Census {
    let net = network_id.to_string();
    let vpcs = ec2
        .describe_vpcs()
        .filters(tag_filter(tags::NETWORK_ID, &net))
        .send()
        .await
        .expect("describe vpcs");
    let subnets = ec2
        .describe_subnets()
        .filters(tag_filter(tags::NETWORK_ID, &net))
        .send()
        .await
        .expect("describe subnets");
    let groups = ec2
        .describe_security_groups()
        .filters(tag_filter(tags::NETWORK_ID, &net))
        .send()
        .await
        .expect("describe security groups");
    let gateways = ec2
        .describe_internet_gateways()
        .filters(tag_filter(tags::NETWORK_ID, &net))
        .send()
        .await
        .expect("describe internet gateways");
    let tables = ec2
        .describe_route_tables()
        .filters(tag_filter(tags::NETWORK_ID, &net))
        .send()
        .await
        .expect("describe route tables");
    let attachments = ec2
        .describe_transit_gateway_vpc_attachments()
        .send()
        .await
        .expect("describe attachments");
    let mut census = Census {
        vpcs: vpcs.vpcs().len(),
        subnets: subnets.subnets().len(),
        security_groups: groups.security_groups().len(),
        internet_gateways: gateways.internet_gateways().len(),
        route_tables: tables.route_tables().len(),
        attachments: attachments
            .transit_gateway_vpc_attachments()
            .iter()
            .filter(|a| a.state().map(|s| s.as_str()) != Some("deleted"))
            .filter(|a| {
                a.tags()
                    .iter()
                    .any(|t| t.key() == Some(tags::NETWORK_ID) && t.value() == Some(&net))
            })
            .count(),
        tgw_routes: tables
            .route_tables()
            .iter()
            .flat_map(|t| t.routes())
            .filter(|r| r.transit_gateway_id().is_some())
            .count(),
        ..Census::default()
    };
    if let Some(configuration_id) = configuration_id {
        let (count, slots) = live_instances(ec2, configuration_id).await;
        census.live_instances = count;
        census.live_slots = slots;
    }
    census
}

/// Pending or running instances of a configuration, and their slots (sorted).
pub async fn live_instances(ec2: &Client, configuration_id: Uuid) -> (usize, Vec<u32>) {
    let instances =
        live_instances_tagged(ec2, tags::CONFIGURATION_ID, &configuration_id.to_string()).await;
    let mut slots: Vec<u32> = instances
        .iter()
        .filter_map(|i| tag_value(i.tags(), tags::NODE_SLOT).and_then(|v| v.parse().ok()))
        .collect();
    slots.sort_unstable();
    (instances.len(), slots)
}

/// Everything in the region that is not moto's default VPC furniture: non-default VPCs,
/// their subnets, and live instances. An untagged orphan shows up here and not in [`census`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionTotals {
    pub vpcs: usize,
    pub subnets: usize,
    pub live_instances: usize,
    pub attachments: usize,
    pub internet_gateways: usize,
}

pub async fn region_totals(ec2: &Client) -> RegionTotals {
    let vpcs = ec2.describe_vpcs().send().await.expect("describe vpcs");
    let custom: HashSet<String> = vpcs
        .vpcs()
        .iter()
        .filter(|v| !v.is_default().unwrap_or(false))
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    let subnets = ec2
        .describe_subnets()
        .send()
        .await
        .expect("describe subnets");
    let instances = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .expect("describe instances");
    let attachments = ec2
        .describe_transit_gateway_vpc_attachments()
        .send()
        .await
        .expect("describe attachments");
    let gateways = ec2
        .describe_internet_gateways()
        .send()
        .await
        .expect("describe internet gateways");
    RegionTotals {
        vpcs: custom.len(),
        subnets: subnets
            .subnets()
            .iter()
            .filter(|s| s.vpc_id().is_some_and(|v| custom.contains(v)))
            .count(),
        live_instances: instances
            .reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum(),
        attachments: attachments
            .transit_gateway_vpc_attachments()
            .iter()
            .filter(|a| a.state().map(|s| s.as_str()) != Some("deleted"))
            .count(),
        internet_gateways: gateways.internet_gateways().len(),
    }
}

/// Captures this thread's tracing output (tests run on a current-thread runtime, so every
/// reconciler log line of the test lands here).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A network, a 3-node group in it, and an attachment of it to the customer's transit gateway:
/// everything one customer region has.
pub struct Scenario {
    pub network: NetworkSpec,
    pub group: DataplaneGroupSpec,
    pub attachment: TransitGatewaySpec,
}

impl Scenario {
    pub fn new(cidr: &str, transit_gateway_id: &str) -> Self {
        let network = network_spec(cidr);
        let group = group_spec(&network, 3);
        let attachment = attachment_spec(
            &network,
            transit_gateway_id,
            &["10.250.0.0/16", "192.168.77.0/24"],
        );
        Self {
            network,
            group,
            attachment,
        }
    }

    /// The census a converged scenario has.
    pub fn expected_census() -> Census {
        Census {
            vpcs: 1,
            subnets: 3,
            security_groups: 1,
            internet_gateways: 1,
            route_tables: 1,
            live_instances: 3,
            live_slots: vec![0, 1, 2],
            attachments: 1,
            tgw_routes: 2,
        }
    }

    /// One pass of each reconciler, in the order a control plane runs them; the states.
    pub async fn reconcile(
        &self,
        ctx: &ReconcileContext,
        membership: &Membership,
    ) -> Result<ScenarioStates, fleetgate_provisioner::ReconcileError> {
        use fleetgate_provisioner::reconcile::{
            reconcile_dataplane_group, reconcile_network, reconcile_transit_gateway,
        };
        let network = reconcile_network(ctx, &self.network).await?;
        let group =
            reconcile_dataplane_group(ctx, &self.group, &network.observed, membership).await?;
        let attachment = reconcile_transit_gateway(
            ctx,
            &self.network.region,
            &self.attachment,
            &network.observed,
        )
        .await?;
        Ok(ScenarioStates {
            network: network.state,
            group: group.state,
            attachment: attachment.state,
        })
    }

    pub async fn census(&self, ec2: &Client) -> Census {
        census(ec2, self.network.id, Some(self.group.configuration_id)).await
    }
}

/// The three states after a scenario pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioStates {
    pub network: fleetgate_provisioner::state::NetworkState,
    pub group: fleetgate_provisioner::state::DataplaneGroupState,
    pub attachment: fleetgate_provisioner::state::TransitGatewayState,
}

impl ScenarioStates {
    /// After the pass that launched the nodes: they are still pending.
    pub fn launched() -> Self {
        Self {
            group: fleetgate_provisioner::state::DataplaneGroupState::Initializing,
            ..Self::all_ready()
        }
    }

    pub fn all_ready() -> Self {
        Self {
            network: fleetgate_provisioner::state::NetworkState::Ready,
            group: fleetgate_provisioner::state::DataplaneGroupState::Ready,
            attachment: fleetgate_provisioner::state::TransitGatewayState::Ready,
        }
    }
}
