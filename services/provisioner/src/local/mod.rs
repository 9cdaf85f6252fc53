//! The `local` provider, the embedded default (docs/cloud-gateways.md): region `local`, no cloud. Each
//! gateway node is a `fleetgate-dp` child process on loopback, supervised and restarted;
//! networks are bookkeeping only; transit gateways are refused.
//!
//! Everything the provider knows lives in files under [`LocalSettings::root_dir`], so a
//! control plane that restarts over the same root finds its nodes again (level-triggered):
//!
//! ```text
//! <root>/networks/<network id>.json        what "exists" of a network (ids are stable)
//! <root>/instances/<instance id>/
//!     instance.json                         tags, client token, ports, state, pid + start time
//!     dp.toml  cluster-ca.pem  dp.log       the node's settings, CA and output
//!     prefix/                               the node's `prefix` (config cache, node id, and
//!                                           the cluster.key/cluster.crt it enrolled for)
//! ```
//!
//! One provider per root dir at a time: two would both supervise the same nodes.

mod network;
mod nodes;
mod process;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ProviderError;
use crate::provider::{
    CloudProvider, Instance, InstanceOwner, InternetGateway, LaunchRequest, RouteTable,
    RouteTarget, SecurityGroup, Subnet, TransitGatewayAttachment, Vpc,
};
use crate::types::{NetworkSpec, TransitGatewaySpec};

pub use nodes::LocalNode;

/// The only region of the local provider.
pub const LOCAL_REGION: &str = "local";

/// What the local provider answers to every transit-gateway change (the API answers 422 with
/// the same words before it gets this far).
pub const TRANSIT_GATEWAYS_UNSUPPORTED: &str =
    "transit gateways are not supported by the local provider";

/// Settings of the local provider.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Where networks, instances and node prefixes live.
    pub root_dir: PathBuf,
    /// The `fleetgate-dp` binary (default: next to the current executable).
    pub dp_binary: PathBuf,
    /// More `key = "value"` lines for every node's settings (default: `proxy_workers = 1`, as
    /// many nodes share one machine). Must not repeat a key the provider writes.
    pub extra_dp_settings: Vec<(String, String)>,
    /// Time a node gets to exit after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// First delay before restarting a node that exited; doubles per quick exit.
    pub restart_backoff_min: Duration,
    /// Cap of the restart delay.
    pub restart_backoff_max: Duration,
}

impl LocalSettings {
    /// Defaults under `root_dir`: the binary next to the current executable, 10 s grace,
    /// restarts after 250 ms doubling to 30 s.
    pub fn new(root_dir: impl Into<PathBuf>) -> Self {
        Self {
            root_dir: root_dir.into(),
            dp_binary: default_dp_binary(),
            extra_dp_settings: vec![("proxy_workers".into(), "1".into())],
            stop_grace: Duration::from_secs(10),
            restart_backoff_min: Duration::from_millis(250),
            restart_backoff_max: Duration::from_secs(30),
        }
    }
}

/// `fleetgate-dp` next to the current executable; from a test binary in
/// `target/<profile>/deps`, the one in `target/<profile>`.
pub fn default_dp_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let beside = dir.join("fleetgate-dp");
    if !beside.exists() && dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(profile_dir) = dir.parent() {
            return profile_dir.join("fleetgate-dp");
        }
    }
    beside
}

/// [`CloudProvider`] on this machine.
pub struct LocalProvider {
    inner: Arc<nodes::Inner>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl LocalProvider {
    /// Opens (or creates) the root dir and takes over its nodes: a node whose process still
    /// runs (same pid and start time) is adopted, a node that should run but does not is
    /// started again, a termination a crash interrupted is finished. Needs a Tokio runtime.
    pub async fn open(settings: LocalSettings) -> anyhow::Result<Self> {
        for sub in ["networks", "instances"] {
            let dir = settings.root_dir.join(sub);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("create the local provider dir {}", dir.display()))?;
        }
        let provider = Self {
            inner: Arc::new(nodes::Inner::new(settings)),
        };
        provider.take_over().await?;
        Ok(provider)
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &LocalSettings {
        &self.inner.settings
    }
}

fn check_region(operation: &str, region: &str) -> Result<(), ProviderError> {
    if region == LOCAL_REGION {
        Ok(())
    } else {
        Err(ProviderError::Rejected {
            operation: operation.into(),
            code: "InvalidRegion".into(),
            message: format!("the local provider has only region {LOCAL_REGION:?}, not {region:?}"),
        })
    }
}

/// Reads a JSON file; `None` when it does not exist.
fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("parse {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Writes a JSON file atomically (temp file, fsync, rename), so a crash leaves the old or the
/// new record, never half of one.
fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).context("serialise a local provider record")?;
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename into {}", path.display()))
}

fn unsupported(operation: &str) -> ProviderError {
    ProviderError::Unsupported {
        operation: operation.into(),
        message: TRANSIT_GATEWAYS_UNSUPPORTED.into(),
    }
}

#[async_trait]
impl CloudProvider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn find_vpcs(&self, region: &str, network_id: Uuid) -> Result<Vec<Vpc>, ProviderError> {
        if region != LOCAL_REGION {
            return Ok(Vec::new());
        }
        self.local_vpcs(network_id)
    }

    async fn create_vpc(&self, network: &NetworkSpec) -> Result<Vpc, ProviderError> {
        check_region("create vpc", &network.region)?;
        self.local_create_vpc(network)
    }

    async fn delete_vpc(&self, _region: &str, vpc_id: &str) -> Result<(), ProviderError> {
        self.local_delete_vpc(vpc_id)
    }

    async fn find_subnets(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<Subnet>, ProviderError> {
        if region != LOCAL_REGION {
            return Ok(Vec::new());
        }
        self.local_subnets(network_id)
    }

    async fn create_subnet(
        &self,
        network: &NetworkSpec,
        _vpc_id: &str,
        availability_zone: &str,
        cidr_block: Ipv4Net,
    ) -> Result<Subnet, ProviderError> {
        check_region("create subnet", &network.region)?;
        self.local_create_subnet(network, availability_zone, cidr_block)
    }

    async fn delete_subnet(&self, _region: &str, subnet_id: &str) -> Result<(), ProviderError> {
        self.local_delete_subnet(subnet_id)
    }

    async fn find_security_groups(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<SecurityGroup>, ProviderError> {
        if region != LOCAL_REGION {
            return Ok(Vec::new());
        }
        self.local_security_groups(network_id)
    }

    async fn create_security_group(
        &self,
        network: &NetworkSpec,
        _vpc_id: &str,
    ) -> Result<SecurityGroup, ProviderError> {
        check_region("create security group", &network.region)?;
        self.local_create_security_group(network.id)
    }

    async fn open_tcp_port(
        &self,
        _region: &str,
        security_group_id: &str,
        port: u16,
    ) -> Result<(), ProviderError> {
        self.local_open_tcp_port(security_group_id, port)
    }

    async fn delete_security_group(
        &self,
        _region: &str,
        security_group_id: &str,
    ) -> Result<(), ProviderError> {
        self.local_delete_security_group(security_group_id)
    }

    async fn find_internet_gateways(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<InternetGateway>, ProviderError> {
        if region != LOCAL_REGION {
            return Ok(Vec::new());
        }
        self.local_internet_gateways(network_id)
    }

    async fn create_internet_gateway(
        &self,
        network: &NetworkSpec,
    ) -> Result<InternetGateway, ProviderError> {
        check_region("create internet gateway", &network.region)?;
        self.local_create_internet_gateway(network.id)
    }

    async fn attach_internet_gateway(
        &self,
        _region: &str,
        internet_gateway_id: &str,
        _vpc_id: &str,
    ) -> Result<(), ProviderError> {
        self.local_set_internet_gateway_attached(internet_gateway_id, true)
    }

    async fn detach_internet_gateway(
        &self,
        _region: &str,
        internet_gateway_id: &str,
        _vpc_id: &str,
    ) -> Result<(), ProviderError> {
        self.local_set_internet_gateway_attached(internet_gateway_id, false)
    }

    async fn delete_internet_gateway(
        &self,
        _region: &str,
        internet_gateway_id: &str,
    ) -> Result<(), ProviderError> {
        self.local_delete_internet_gateway(internet_gateway_id)
    }

    async fn find_route_tables(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<RouteTable>, ProviderError> {
        if region != LOCAL_REGION {
            return Ok(Vec::new());
        }
        self.local_route_tables(network_id)
    }

    async fn create_route_table(
        &self,
        network: &NetworkSpec,
        _vpc_id: &str,
    ) -> Result<RouteTable, ProviderError> {
        check_region("create route table", &network.region)?;
        self.local_create_route_table(network.id)
    }

    async fn associate_route_table(
        &self,
        _region: &str,
        route_table_id: &str,
        subnet_id: &str,
    ) -> Result<String, ProviderError> {
        self.local_associate_route_table(route_table_id, subnet_id)
    }

    async fn disassociate_route_table(
        &self,
        _region: &str,
        association_id: &str,
    ) -> Result<(), ProviderError> {
        self.local_disassociate_route_table(association_id)
    }

    async fn delete_route_table(
        &self,
        _region: &str,
        route_table_id: &str,
    ) -> Result<(), ProviderError> {
        self.local_delete_route_table(route_table_id)
    }

    async fn create_route(
        &self,
        _region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
        target: &RouteTarget,
    ) -> Result<(), ProviderError> {
        self.local_create_route(route_table_id, destination, target)
    }

    async fn delete_route(
        &self,
        _region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
    ) -> Result<(), ProviderError> {
        self.local_delete_route(route_table_id, destination)
    }

    async fn find_instances(
        &self,
        region: &str,
        owner: InstanceOwner,
    ) -> Result<Vec<Instance>, ProviderError> {
        if region != LOCAL_REGION {
            return Ok(Vec::new());
        }
        self.local_find_instances(owner)
    }

    async fn launch_instance(&self, launch: &LaunchRequest) -> Result<Instance, ProviderError> {
        check_region("run instances", &launch.group.region)?;
        self.local_launch(launch).await
    }

    async fn terminate_instances(
        &self,
        _region: &str,
        instance_ids: &[String],
    ) -> Result<(), ProviderError> {
        self.local_terminate(instance_ids).await
    }

    async fn find_transit_gateway_attachments(
        &self,
        _region: &str,
        _network_id: Uuid,
    ) -> Result<Vec<TransitGatewayAttachment>, ProviderError> {
        // None can exist; answering (rather than refusing) lets network teardown and the
        // deletion of a refused attachment complete.
        Ok(Vec::new())
    }

    async fn create_transit_gateway_attachment(
        &self,
        _region: &str,
        _attachment: &TransitGatewaySpec,
        _vpc_id: &str,
        _subnet_ids: &[String],
    ) -> Result<TransitGatewayAttachment, ProviderError> {
        Err(unsupported("create transit gateway attachment"))
    }

    async fn delete_transit_gateway_attachment(
        &self,
        _region: &str,
        _attachment_id: &str,
    ) -> Result<(), ProviderError> {
        Err(unsupported("delete transit gateway attachment"))
    }
}
