//! Quickstart's gateway side: a demo upstream, a local network, and a configuration of two
//! local gateway nodes that join the demo control plane and proxy its route.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleetgate_provisioner::local::LocalNode;
use ipnet::Ipv4Net;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::cloud::{catalogue, Providers};
use crate::store::{
    Autoscale, CloudProvider, DesiredConfiguration, DesiredDataplaneGroup, NewNetwork,
    NewProviderAccount, Store,
};

/// Name of the quickstart's local network.
pub const LOCAL_NETWORK: &str = "quickstart-local";
/// Gateway nodes quickstart asks for.
pub const LOCAL_NODES: u32 = 2;
/// The route quickstart's curl lines go through.
pub const DEMO_PATH: &str = "/demo";

/// Answers every request with a short JSON greeting: something for the demo route to reach
/// on a machine with nothing else running.
pub async fn start_demo_upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("bind the demo upstream")?;
    let addr = listener
        .local_addr()
        .context("read the demo upstream address")?;
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        axum::Json(serde_json::json!({
            "message": "Hello from the Fleetgate demo upstream",
            "path": uri.path(),
        }))
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "demo upstream stopped");
        }
    });
    Ok(addr)
}

/// Creates (or finds) the local provider account and network, and a configuration of
/// [`LOCAL_NODES`] nodes for the control plane unless it already has one (a user's later
/// change to it is kept). Answers the configuration id.
pub async fn provision_local_gateways(
    store: &Store,
    org: Uuid,
    control_plane_id: Uuid,
) -> anyhow::Result<Uuid> {
    let account = store
        .ensure_provider_account(
            org,
            NewProviderAccount {
                provider: CloudProvider::Local,
                provider_account_id: "local".into(),
            },
        )
        .await
        .context("find the local provider account")?;
    let networks = store.list_networks(org).await?;
    let network = match networks.into_iter().find(|n| n.name == LOCAL_NETWORK) {
        Some(network) => network,
        None => store
            .create_network(
                org,
                NewNetwork {
                    provider_account_id: account.id,
                    name: LOCAL_NETWORK.into(),
                    region: fleetgate_provisioner::local::LOCAL_REGION.into(),
                    availability_zones: vec!["local-a".into()],
                    cidr_block: "10.0.0.0/16"
                        .parse::<Ipv4Net>()
                        .context("parse the local network range")?,
                },
            )
            .await
            .context("create the local network")?,
    };
    let configurations = store.list_configurations(org).await?;
    if let Some(existing) = configurations
        .iter()
        .find(|c| c.control_plane_id == control_plane_id && !c.deleted)
    {
        return Ok(existing.id);
    }
    let (configuration, _) = store
        .put_configuration(
            org,
            DesiredConfiguration {
                control_plane_id,
                control_plane_geo: "us".into(),
                gateway_version: catalogue::current_gateway_version(),
                api_access: "private+public".into(),
                dataplane_groups: vec![DesiredDataplaneGroup {
                    provider: CloudProvider::Local,
                    region: fleetgate_provisioner::local::LOCAL_REGION.into(),
                    network_id: network.id,
                    autoscale: Autoscale::Static {
                        instance_type: "small".into(),
                        requested_instances: LOCAL_NODES,
                    },
                    environment: Vec::new(),
                }],
            },
        )
        .await
        .context("create the local gateway configuration")?;
    Ok(configuration.id)
}

/// Waits (at most `patience`) until every running local node of the configuration answers
/// 200 on [`DEMO_PATH`]: launched, enrolled, connected, config applied. Answers the nodes;
/// `Err` lists what was still missing.
pub async fn wait_for_demo_route(
    providers: &Providers,
    configuration_id: Uuid,
    patience: Duration,
) -> anyhow::Result<Vec<LocalNode>> {
    let deadline = Instant::now() + patience;
    let mut last = String::from("no gateway node has been launched yet");
    loop {
        let nodes: Vec<LocalNode> = providers
            .local()
            .nodes()?
            .into_iter()
            .filter(|n| {
                n.configuration_id == Some(configuration_id)
                    && n.state == fleetgate_provisioner::state::InstanceState::Running
            })
            .collect();
        if nodes.len() >= LOCAL_NODES as usize {
            let mut waiting = Vec::new();
            for node in &nodes {
                match demo_status(node.proxy).await {
                    Ok(200) => {}
                    Ok(status) => waiting.push(format!("{} answers {status}", node.proxy)),
                    Err(e) => waiting.push(format!("{}: {e}", node.proxy)),
                }
            }
            if waiting.is_empty() {
                return Ok(nodes);
            }
            last = waiting.join("; ");
        } else if !nodes.is_empty() {
            last = format!("{} of {LOCAL_NODES} nodes running", nodes.len());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("{last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The status code of `GET /demo` through a node (one plain HTTP/1.1 request).
async fn demo_status(proxy: SocketAddr) -> anyhow::Result<u16> {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(proxy),
    )
    .await
    .context("connect timed out")??;
    stream
        .write_all(
            format!("GET {DEMO_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head))
        .await
        .context("no answer within 2 s")??;
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .context("not an HTTP answer")?;
    Ok(status)
}
