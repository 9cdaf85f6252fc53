//! Fleetgate provisioner: dedicated cloud gateways (docs/cloud-gateways.md).
//!
//! - [`types`]: desired state (networks, dataplane groups, transit-gateway attachments) and
//!   observed state, as plain structs; [`state`]: Konnect's state names and the mapping from
//!   provider states; [`cidr`]: the CIDR rules the API enforces.
//! - [`CloudProvider`]: find / create / delete operations on tagged resources, implemented
//!   by [`aws::AwsProvider`] (EC2, or moto through `AWS_ENDPOINT_URL`) and
//!   [`local::LocalProvider`] (gateway nodes as `fleetgate-dp` child processes), and wrapped by
//!   [`FaultyProvider`] in tests.
//! - [`reconcile`]: level-triggered, idempotent reconcilers the control plane calls with
//!   desired state; they answer with observed state and a state + reason to show.
//!
//! The provisioner does not know the control plane: the control plane maps its store rows to
//! these types and implements [`reconcile::ClusterMembership`] (join tokens, "has this node
//! connected"). Dependencies point one way: control plane -> provisioner.

pub mod aws;
pub mod bootstrap;
pub mod cidr;
mod error;
mod faulty;
pub mod local;
mod provider;
pub mod reconcile;
pub mod retry;
pub mod state;
pub mod types;

pub use error::{CrashTiming, ProviderError, ReconcileError};
pub use faulty::{Fault, FaultyProvider};
pub use provider::{
    tags, CloudProvider, Instance, InstanceOwner, InternetGateway, LaunchRequest, Operation,
    Replacement, Route, RouteTable, RouteTableAssociation, RouteTarget, SecurityGroup, Subnet,
    TransitGatewayAttachment, Vpc,
};
pub use retry::RetryPolicy;
