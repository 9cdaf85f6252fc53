//! Fleetgate's gateway configuration model, shared by the control plane and the data plane.
//!
//! Field names and defaults follow the Kong 3.x Admin API so that a real Kong `kong.yml`
//! imports as-is. The crate provides:
//! - the core entities ([`Service`], [`Route`], [`Consumer`], ...) with Kong's defaults and
//!   per-entity validation ([`Entity`]),
//! - [`parse_entity`], which turns an API request body into a validated entity and names the
//!   offending field on every error,
//! - [`GatewayConfig`], the whole configuration of one control plane, with its canonical JSON
//!   form and content hash,
//! - [`declarative`], Kong's declarative (`kong.yml`) import and export,
//! - [`plugins`], the typed configuration of the supported plugins.

mod canonical;
pub mod declarative;
mod entities;
mod entity;
mod parse;
pub mod plugins;
pub mod snapshot;
mod validate;

pub use uuid::Uuid;

pub use entities::{inspect_ca_certificate, CaCertificate, CaInfo};
pub use entities::{
    ActiveHealthcheck, ActiveHealthy, ActiveUnhealthy, PassiveHealthcheck, PassiveHealthy,
    PassiveUnhealthy,
};
pub use entities::{
    Algorithm, Certificate, Consumer, Healthchecks, KeyAuthCredential, PathHandling, Plugin,
    Protocol, Route, Service, Sni, Target, Upstream,
};
pub use entity::{Entity, EntityKind, EntityRef, FieldError, OnDelete, Reference};
pub use parse::parse_entity;
pub use snapshot::{ConfigHash, GatewayConfig, EMPTY_CONFIG_HASH};
