//! Fleetgate's control plane: the REST API people and tools drive, its store, and the config
//! snapshots data-plane nodes receive.

pub mod api;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod cloud;
pub mod cluster;
pub mod error;
pub mod openapi;
pub mod quickstart;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod telemetry;

pub use api::app;
pub use state::{ApiSettings, AppState};
pub use store::Store;
