//! The cluster side of the control plane: the mutual-TLS identity of data-plane nodes
//! (cluster TLS material, which control plane a client certificate belongs to, licenses) and
//! the listener and sessions that push config to them.

pub mod artifacts;
pub mod enrol;
pub mod heartbeats;
pub mod hub;
pub mod identity;
pub mod license;
pub mod listener;
pub mod nodes;
pub mod session;
pub mod strip;
pub mod tls;

pub use hub::ClusterHub;
