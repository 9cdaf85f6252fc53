//! Level-triggered, idempotent reconcilers: desired state in, observed state and a
//! Konnect-style state + reason out.
//!
//! Each call looks at the provider afresh (nothing is remembered between calls), creates what
//! is missing and removes what should not be there, one retried step at a time. Calling again
//! after any failure — including a control-plane crash between two provider calls — converges
//! to the same resources without duplicates or orphans, because every resource is found by its
//! Fleetgate tags before anything is created.
//!
//! Errors of a pass come back as `Err` (the caller keeps the current state, records the
//! message as the reason and requeues); problems only the user can fix (an unknown AMI, an
//! invalid zone, a rejected attachment) come back as `Ok` with state `error` and a reason.

mod dataplane_group;
mod network;
mod network_teardown;
mod node_health;
mod transit_gateway;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::bootstrap::{NODE_PROXY_PORT, NODE_PROXY_TLS_PORT};
use crate::error::{ProviderError, ReconcileError};
use crate::provider::CloudProvider;
use crate::retry::RetryPolicy;
use crate::types::{DataplaneGroupSpec, ObservedNode};

pub use dataplane_group::{delete_dataplane_group, reconcile_dataplane_group};
pub use network::{delete_network, ensure_network_unused, reconcile_network, NetworkInUse};
pub use node_health::{replacement_reason, NodeContact};
pub use transit_gateway::{delete_transit_gateway, reconcile_transit_gateway};

/// What every reconciler needs: the provider and how patient to be with it.
#[derive(Clone)]
pub struct ReconcileContext {
    /// The cloud to converge.
    pub provider: Arc<dyn CloudProvider>,
    /// Retry policy for each step.
    pub retry: RetryPolicy,
    /// TCP ports the gateway nodes' security group opens to the world.
    pub gateway_ports: Vec<u16>,
    /// A running node that has not connected to its control plane this long after launch, or
    /// whose last ping is this old, is replaced.
    pub node_connect_deadline: Duration,
}

impl std::fmt::Debug for ReconcileContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconcileContext")
            .field("provider", &self.provider.name())
            .field("retry", &self.retry)
            .field("gateway_ports", &self.gateway_ports)
            .field("node_connect_deadline", &self.node_connect_deadline)
            .finish()
    }
}

impl ReconcileContext {
    /// Defaults: [`RetryPolicy::default`], proxy ports 8000 and 8443, 10 minutes for a node to
    /// connect (an instance boots, installs nothing, and dials in well within that).
    pub fn new(provider: Arc<dyn CloudProvider>) -> Self {
        Self {
            provider,
            retry: RetryPolicy::default(),
            gateway_ports: vec![NODE_PROXY_PORT, NODE_PROXY_TLS_PORT],
            node_connect_deadline: Duration::from_secs(600),
        }
    }

    /// The same context with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The same context with another connect deadline.
    pub fn with_node_connect_deadline(mut self, deadline: Duration) -> Self {
        self.node_connect_deadline = deadline;
        self
    }
}

/// What the control plane knows about its nodes, which the group reconciler needs and the
/// provider cannot tell: join tokens, and when a node last pinged.
#[async_trait]
pub trait ClusterMembership: Send + Sync {
    /// A fresh single-use, short-lived join token for the node about to be launched into
    /// `slot`. Called once per launch (not per retry of it).
    async fn join_token(&self, group: &DataplaneGroupSpec, slot: u32) -> anyhow::Result<String>;

    /// When this instance's node last pinged the control plane since its launch (matched by
    /// private IP, host name or the instance id it enrolled with — the control plane's
    /// choice); [`NodeContact::Unknown`] when that could not be found out.
    async fn last_contact(&self, group: &DataplaneGroupSpec, node: &ObservedNode) -> NodeContact;
}

/// A permanent provider refusal becomes the report's `error` state; anything else stays an
/// `Err` for the caller to requeue.
fn user_must_act(err: &ReconcileError) -> Option<String> {
    match err {
        ReconcileError::Provider(e @ ProviderError::Rejected { .. }) => Some(e.to_string()),
        ReconcileError::Provider(ProviderError::Unsupported { message, .. }) => {
            Some(message.clone())
        }
        ReconcileError::InvalidDesiredState(message) => Some(message.clone()),
        _ => None,
    }
}

/// A deterministic idempotency token (≤ 64 characters) for a create owned by `owner`.
fn client_token(owner: Uuid, what: &str) -> String {
    Uuid::new_v5(&owner, what.as_bytes()).to_string()
}
