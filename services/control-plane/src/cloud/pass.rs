//! One reconcile pass over everything that is not terminated: networks first (groups and
//! attachments need their VPC, subnets and route tables), then dataplane groups, then
//! transit-gateway attachments, then configurations whose groups are all gone.
//!
//! Each row is converged on its own: one row's failure is written as its reason and logged,
//! and the pass goes on with the next.

use std::collections::HashMap;

use fleetgate_provisioner::reconcile::{
    delete_dataplane_group, delete_network, delete_transit_gateway, reconcile_dataplane_group,
    reconcile_network, reconcile_transit_gateway, ReconcileContext,
};
use fleetgate_provisioner::state::{DataplaneGroupState, NetworkState, TransitGatewayState};
use fleetgate_provisioner::types::{
    DataplaneGroupReport, DpDownload, NetworkObserved, NetworkReport, NodeBootstrap,
    TransitGatewayReport,
};
use uuid::Uuid;

use super::membership::StoreMembership;
use super::{CloudSettings, Providers};
use crate::cluster::artifacts::DP_ARTIFACT_PATH;
use crate::cluster::tls::cluster_server_name;
use crate::state::AppState;
use crate::store::{
    CloudProvider, CloudResource, DataplaneGroupRecord, NetworkRecord, Store, TransitGatewayRecord,
};

/// What a pass did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Networks looked at.
    pub networks: usize,
    /// Dataplane groups looked at.
    pub groups: usize,
    /// Transit-gateway attachments looked at.
    pub transit_gateways: usize,
    /// Rows whose pass failed (they are retried next pass).
    pub failures: usize,
}

/// Where a network stands for the rows that depend on it.
struct NetworkView {
    provider: CloudProvider,
    observed: NetworkObserved,
}

pub(super) async fn run(
    state: &AppState,
    providers: &Providers,
    settings: &CloudSettings,
) -> PassSummary {
    let store = &state.store;
    let mut summary = PassSummary::default();
    let networks = match store.networks_to_reconcile().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cloud-gateway pass: could not read networks");
            summary.failures += 1;
            return summary;
        }
    };
    let mut views: HashMap<Uuid, NetworkView> = HashMap::new();
    for network in &networks {
        summary.networks += 1;
        if let Some(observed) = converge_network(store, providers, network, &mut summary).await {
            views.insert(
                network.id,
                NetworkView {
                    provider: network.provider,
                    observed,
                },
            );
        }
    }

    match store.dataplane_groups_to_reconcile().await {
        Ok(groups) => {
            for group in &groups {
                summary.groups += 1;
                converge_group(state, providers, settings, group, &views, &mut summary).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cloud-gateway pass: could not read dataplane groups");
            summary.failures += 1;
        }
    }

    match store.transit_gateways_to_reconcile().await {
        Ok(attachments) => {
            for attachment in &attachments {
                summary.transit_gateways += 1;
                converge_transit_gateway(store, providers, attachment, &views, &mut summary).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cloud-gateway pass: could not read transit gateways");
            summary.failures += 1;
        }
    }

    if let Err(e) = store.remove_finished_configurations().await {
        tracing::warn!(error = %e, "cloud-gateway pass: could not remove finished configurations");
        summary.failures += 1;
    }
    summary
}

/// Converges one network; answers what dependants should work from (`None` once it is gone).
async fn converge_network(
    store: &Store,
    providers: &Providers,
    network: &NetworkRecord,
    summary: &mut PassSummary,
) -> Option<NetworkObserved> {
    let id = network.id;
    let ctx = match providers.context(network.provider) {
        Ok(ctx) => ctx,
        Err(reason) => {
            let report = NetworkReport {
                state: NetworkState::Error,
                reason: Some(reason),
                observed: network.provider_metadata.clone(),
            };
            write(
                store.record_network_observation(id, &report).await,
                "network",
                id,
            );
            return Some(network.provider_metadata.clone());
        }
    };
    let result = if network.state == NetworkState::Terminating {
        delete_network(ctx, &network.region, id).await
    } else {
        reconcile_network(ctx, &network.spec()).await
    };
    match result {
        Ok(report) if report.state == NetworkState::Terminated => {
            write(store.remove_network(id).await, "network", id);
            tracing::info!(network_id = %id, "network deleted at the provider");
            None
        }
        Ok(report) => {
            if report.state != network.state {
                tracing::info!(network_id = %id, state = report.state.as_str(), reason = report.reason.as_deref().unwrap_or(""), "network state");
            }
            write(
                store.record_network_observation(id, &report).await,
                "network",
                id,
            );
            Some(report.observed)
        }
        Err(e) => {
            failed(store, summary, CloudResource::Network, id, &e).await;
            Some(network.provider_metadata.clone())
        }
    }
}

async fn converge_group(
    state: &AppState,
    providers: &Providers,
    settings: &CloudSettings,
    group: &DataplaneGroupRecord,
    networks: &HashMap<Uuid, NetworkView>,
    summary: &mut PassSummary,
) {
    let store = &state.store;
    let id = group.id;
    let ctx = match providers.context(group.provider) {
        Ok(ctx) => ctx,
        Err(reason) => {
            let report = DataplaneGroupReport {
                state: DataplaneGroupState::Error,
                reason: Some(reason),
                nodes: group.nodes.clone(),
            };
            write(
                store.record_dataplane_group_observation(id, &report).await,
                "dataplane group",
                id,
            );
            return;
        }
    };
    let result = if group.state == DataplaneGroupState::Terminating {
        delete_dataplane_group(ctx, &group.region, group.configuration_id).await
    } else {
        let observed = networks
            .get(&group.network_id)
            .map(|n| n.observed.clone())
            .unwrap_or_default();
        let bootstrap = NodeBootstrap {
            cluster_endpoint: settings
                .node_cluster_endpoint
                .clone()
                .unwrap_or_else(|| state.settings.cluster_endpoint.clone()),
            cluster_server_name: cluster_server_name(group.control_plane_id),
            cluster_ca_cert_pem: state.cluster_tls.ca_pem().to_string(),
            dp_download: node_binary(state).await,
        };
        let membership = StoreMembership {
            store,
            organization_id: group.organization_id,
            join_token_ttl: settings.join_token_ttl,
        };
        // Autopilot groups take their node count from measured traffic first.
        let mut group = group.clone();
        super::autopilot::apply(store, &mut group).await;
        reconcile_dataplane_group(ctx, &group.spec(bootstrap), &observed, &membership).await
    };
    match result {
        Ok(report) if report.state == DataplaneGroupState::Terminated => {
            write(
                store.remove_dataplane_group(id).await,
                "dataplane group",
                id,
            );
            tracing::info!(group_id = %id, configuration_id = %group.configuration_id, "dataplane group's nodes terminated");
        }
        Ok(report) => {
            if report.state != group.state {
                tracing::info!(group_id = %id, state = report.state.as_str(), reason = report.reason.as_deref().unwrap_or(""), nodes = report.nodes.len(), "dataplane group state");
            }
            write(
                store.record_dataplane_group_observation(id, &report).await,
                "dataplane group",
                id,
            );
        }
        Err(e) => failed(store, summary, CloudResource::DataplaneGroup, id, &e).await,
    }
}

async fn converge_transit_gateway(
    store: &Store,
    providers: &Providers,
    attachment: &TransitGatewayRecord,
    networks: &HashMap<Uuid, NetworkView>,
    summary: &mut PassSummary,
) {
    let id = attachment.id;
    let Some(network) = networks.get(&attachment.network_id) else {
        // Its network is gone (or unreadable this pass): nothing to attach to.
        return;
    };
    let ctx: &ReconcileContext = match providers.context(network.provider) {
        Ok(ctx) => ctx,
        Err(reason) => {
            let report = TransitGatewayReport {
                state: TransitGatewayState::Error,
                reason: Some(reason),
                observed: attachment.provider_metadata.clone(),
            };
            write(
                store.record_transit_gateway_observation(id, &report).await,
                "transit gateway",
                id,
            );
            return;
        }
    };
    let spec = attachment.spec();
    let result = if attachment.state == TransitGatewayState::Terminating {
        delete_transit_gateway(ctx, &attachment.region, &spec).await
    } else {
        reconcile_transit_gateway(ctx, &attachment.region, &spec, &network.observed).await
    };
    match result {
        Ok(report) if report.state == TransitGatewayState::Terminated => {
            write(
                store.remove_transit_gateway(id).await,
                "transit gateway",
                id,
            );
            tracing::info!(transit_gateway_id = %id, "transit-gateway attachment deleted at the provider");
        }
        Ok(report) => {
            if report.state != attachment.state {
                tracing::info!(transit_gateway_id = %id, state = report.state.as_str(), reason = report.reason.as_deref().unwrap_or(""), "transit gateway state");
            }
            write(
                store.record_transit_gateway_observation(id, &report).await,
                "transit gateway",
                id,
            );
        }
        Err(e) => failed(store, summary, CloudResource::TransitGateway, id, &e).await,
    }
}

/// Logs a store write the pass could not make (the next pass writes again).
fn write<T>(result: crate::store::StoreResult<T>, what: &str, id: Uuid) {
    if let Err(e) = result {
        tracing::warn!(error = %e, %id, "cloud-gateway pass: could not record the {what}'s state");
    }
}

/// A pass that failed keeps the row's state, shows the error as its reason, and is retried.
async fn failed(
    store: &Store,
    summary: &mut PassSummary,
    resource: CloudResource,
    id: Uuid,
    error: &fleetgate_provisioner::ReconcileError,
) {
    summary.failures += 1;
    tracing::warn!(%id, kind = resource.as_str(), error = %error, "cloud-gateway reconcile failed; retrying next pass");
    write(
        store
            .record_reconcile_failure(resource, id, &error.to_string())
            .await,
        resource.as_str(),
        id,
    );
}

/// Where nodes on a stock image download `fleetgate-dp` and its SHA-256 (hashed once per
/// file version); `None` when this control plane has no binary to serve, which the AWS
/// provider refuses for a stock image with the reason.
async fn node_binary(state: &AppState) -> Option<DpDownload> {
    let artifact = state.cluster.dp_artifact();
    match artifact.digest().await {
        Ok(digest) => Some(DpDownload {
            path: DP_ARTIFACT_PATH.to_string(),
            sha256: digest.sha256,
        }),
        Err(e) => {
            tracing::debug!(error = %e, "no fleetgate-dp to offer booting gateway nodes");
            None
        }
    }
}
