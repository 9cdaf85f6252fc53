//! The core entities, one module per family. Every struct declares its fields in
//! alphabetical order: the canonical JSON relies on serde writing fields in declaration
//! order (a test in `snapshot` proves the bytes have sorted keys).

mod ca_certificate;
mod certificate;
mod consumer;
mod healthchecks;
mod plugin;
mod route;
mod service;
mod upstream;

pub use ca_certificate::{inspect_ca_certificate, CaCertificate, CaInfo};
pub use certificate::{Certificate, Sni};
pub use consumer::{Consumer, KeyAuthCredential};
pub use healthchecks::{
    ActiveHealthcheck, ActiveHealthy, ActiveUnhealthy, Healthchecks, PassiveHealthcheck,
    PassiveHealthy, PassiveUnhealthy,
};
pub(crate) use plugin::unknown_plugin;
pub use plugin::Plugin;
pub use route::{PathHandling, Route};
pub use service::{Protocol, Service};
pub(crate) use upstream::normalize_target;
pub use upstream::{Algorithm, Target, Upstream};
