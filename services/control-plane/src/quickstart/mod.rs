//! `fleetgate quickstart`: a working control plane in one command, on SQLite in the data dir,
//! with an organisation, an admin token, a demo control plane, service and route, a demo
//! upstream, and two local gateway nodes (a local network and a configuration) that join the
//! control plane and proxy the route.

use std::path::Path;

use anyhow::Context;
use fleetgate_config::{parse_entity, Route, Service};
use serde_json::json;
use uuid::Uuid;

mod gateways;

pub use gateways::{DEMO_PATH, LOCAL_NETWORK, LOCAL_NODES};

use crate::auth::{hash_token, issue_token};
use crate::server::{self, ServerSettings};
use crate::state::ApiSettings;
use crate::store::{
    ensure_id, ControlPlaneFilter, EntityWrite, NewControlPlane, Role, Store, StoreError, Window,
};

/// What quickstart sets up.
#[derive(Debug, Clone)]
pub struct QuickstartSettings {
    /// Where and how the server runs.
    pub server: ServerSettings,
    /// Organisation name.
    pub org: String,
}

/// Name of the demo control plane.
pub const DEMO_CONTROL_PLANE: &str = "quickstart";
/// File in the data dir holding the admin token (owner-only).
pub const TOKEN_FILE: &str = "admin-token";

/// What quickstart created or found, for printing and tests.
#[derive(Debug, Clone)]
pub struct QuickstartResources {
    /// The admin token.
    pub token: String,
    /// The demo control plane.
    pub control_plane_id: Uuid,
    /// The configuration of its local gateway nodes.
    pub configuration_id: Uuid,
}

/// Reuses the saved admin token when it is still valid, else issues and saves a new one.
async fn admin_token(store: &Store, data_dir: &Path, org: Uuid) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(saved) = std::fs::read_to_string(&path) {
        let saved = saved.trim().to_string();
        if let Some(record) = store.token_by_hash(&hash_token(&saved)).await? {
            if record.organization_id == org {
                return Ok(saved);
            }
        }
    }
    let issued = issue_token(store, org, "quickstart", Role::Admin, None).await?;
    crate::cluster::tls::write_private(&path, &format!("{}\n", issued.secret))?;
    Ok(issued.secret)
}

/// Creates (or finds) the organisation, token, demo control plane, service (pointed at
/// `upstream_url`) and route, and the local network and gateway configuration.
pub async fn provision(
    store: &Store,
    data_dir: &Path,
    org_name: &str,
    upstream_url: &str,
) -> anyhow::Result<QuickstartResources> {
    let org = store
        .ensure_organization(org_name)
        .await
        .context("create the organization")?;
    let token = admin_token(store, data_dir, org.id)
        .await
        .context("issue the admin token")?;
    let by_name = ControlPlaneFilter {
        name_eq: Some(DEMO_CONTROL_PLANE.into()),
        ..ControlPlaneFilter::default()
    };
    let existing = store
        .list_control_planes(
            org.id,
            &by_name,
            Window {
                offset: 0,
                limit: 1,
            },
        )
        .await?
        .0
        .into_iter()
        .next();
    let control_plane = match existing {
        Some(cp) => cp,
        None => store
            .create_control_plane(
                org.id,
                NewControlPlane {
                    name: DEMO_CONTROL_PLANE.into(),
                    description: "Created by fleetgate quickstart".into(),
                    labels: Default::default(),
                    cluster_type: "CLUSTER_TYPE_CONTROL_PLANE".into(),
                    auth_type: "pinned_client_certs".into(),
                    cloud_gateway: false,
                    proxy_urls: Vec::new(),
                },
            )
            .await
            .context("create the demo control plane")?,
    };
    let cp = control_plane.id;
    let demo_service = |id: Option<Uuid>| -> anyhow::Result<EntityWrite> {
        let mut body = json!({"name": "demo", "url": upstream_url});
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        let mut service: Service =
            parse_entity(&body).map_err(|e| anyhow::anyhow!("build the demo service: {e:?}"))?;
        ensure_id(&mut service);
        EntityWrite::from_entity(&service)
    };
    let service = match store
        .find_entity(org.id, cp, fleetgate_config::EntityKind::Service, "demo")
        .await
    {
        Ok(record) => {
            // The demo upstream gets a fresh port each run: follow it.
            let wanted = demo_service(Some(record.id))?;
            if record.body.get("port") != wanted.body.get("port")
                || record.body.get("host") != wanted.body.get("host")
            {
                store
                    .update_entity(org.id, cp, wanted)
                    .await
                    .context("point the demo service at the demo upstream")?;
            }
            record.id
        }
        Err(StoreError::NotFound(_)) => {
            store
                .create_entity(org.id, cp, demo_service(None)?)
                .await
                .context("create the demo service")?
                .id
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(StoreError::NotFound(_)) = store
        .find_entity(org.id, cp, fleetgate_config::EntityKind::Route, "demo")
        .await
    {
        let mut route: Route = parse_entity(&json!({
            "name": "demo",
            "paths": ["/demo"],
            "service": {"id": service},
        }))
        .map_err(|e| anyhow::anyhow!("build the demo route: {e:?}"))?;
        ensure_id(&mut route);
        store
            .create_entity(org.id, cp, EntityWrite::from_entity(&route)?)
            .await
            .context("create the demo route")?;
    }
    let configuration_id = gateways::provision_local_gateways(store, org.id, cp).await?;
    Ok(QuickstartResources {
        token,
        control_plane_id: cp,
        configuration_id,
    })
}

/// Runs quickstart: provisions, prints ready-to-paste commands, serves until stopped.
pub async fn run(settings: QuickstartSettings) -> anyhow::Result<()> {
    let data_dir = settings.server.data_dir.clone();
    let store = server::open_store(&data_dir, settings.server.database_url.as_deref()).await?;
    let upstream = gateways::start_demo_upstream().await?;
    let resources = provision(
        &store,
        &data_dir,
        &settings.org,
        &format!("http://{upstream}/"),
    )
    .await?;
    let api = ApiSettings {
        data_dir: Some(data_dir.clone()),
        cluster_tls: settings.server.cluster_tls.clone(),
        cluster_endpoint: settings
            .server
            .cluster_endpoint
            .clone()
            .unwrap_or_else(|| settings.server.cluster.listen.to_string()),
        analytics: settings.server.analytics,
        cloud: settings.server.cloud.clone(),
    };
    let running = server::start_with(
        store,
        settings.server.api_listen,
        api,
        settings.server.cluster.clone(),
    )
    .await?;
    let base = format!("http://{}", running.addr);
    let gateways = match &running.cloud {
        Some(providers) => {
            println!("Starting {LOCAL_NODES} local gateway nodes…");
            match gateways::wait_for_demo_route(
                providers,
                resources.configuration_id,
                std::time::Duration::from_secs(90),
            )
            .await
            {
                Ok(nodes) => nodes
                    .iter()
                    .map(|n| format!("curl -s http://{}{DEMO_PATH}\n", n.proxy))
                    .collect::<String>(),
                Err(e) => format!(
                    "# The gateway nodes are not ready yet ({e}); see \
                     {base}/v2/cloud-gateways/configurations\n"
                ),
            }
        }
        None => String::new(),
    };
    let token = &resources.token;
    let cp = resources.control_plane_id;
    println!(
        "Fleetgate is running at {base} (data in {dir}).\n\
         Admin token (also saved in {dir}/{TOKEN_FILE}):\n  {token}\n\n\
         Through the gateway nodes ({LOCAL_NODES} local fleetgate-dp processes):\n\
         {gateways}\n\
         Try the API:\n\
         export FLEETGATE_TOKEN={token}\n\
         curl -s -H \"Authorization: Bearer $FLEETGATE_TOKEN\" {base}/v2/organizations/me\n\
         curl -s -H \"Authorization: Bearer $FLEETGATE_TOKEN\" {base}/v2/control-planes\n\
         curl -s -H \"Authorization: Bearer $FLEETGATE_TOKEN\" {base}/v2/control-planes/{cp}/core-entities/services\n\
         curl -s -H \"Authorization: Bearer $FLEETGATE_TOKEN\" -H 'Content-Type: application/json' \
         -d '{{\"name\":\"orders\",\"url\":\"http://127.0.0.1:9001\"}}' {base}/v2/control-planes/{cp}/core-entities/services\n\
         curl -s -H \"Authorization: Bearer $FLEETGATE_TOKEN\" {base}/v2/control-planes/{cp}/expected-config-hash\n\
         curl -s -H \"Authorization: Bearer $FLEETGATE_TOKEN\" {base}/v2/control-planes/{cp}/declarative-config\n\n\
         Press Ctrl-C to stop.",
        dir = data_dir.display(),
    );
    server::shutdown_signal().await;
    running.shutdown().await
}
