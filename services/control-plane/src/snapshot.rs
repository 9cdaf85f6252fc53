//! Config snapshots: the exact gateway config (and its hash) a control plane's data-plane
//! nodes receive, built once per config version and shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use fleetgate_config::{ConfigHash, EntityKind, GatewayConfig};
use uuid::Uuid;

use crate::store::{Store, StoreResult};

/// One built config version of a control plane.
#[derive(Debug)]
pub struct ConfigSnapshot {
    /// The control plane's config version this was built from.
    pub version: i64,
    /// Hash of the canonical serialisation.
    pub hash: ConfigHash,
    /// The config itself.
    pub config: GatewayConfig,
    /// Canonical JSON bytes (what is hashed and what data planes are sent).
    pub canonical: Vec<u8>,
}

impl ConfigSnapshot {
    /// Builds and hashes a snapshot from a config.
    pub fn build(version: i64, mut config: GatewayConfig) -> Self {
        config.sort_canonical();
        let (canonical, hash) = config.canonical_json_and_hash();
        Self {
            version,
            hash,
            config,
            canonical,
        }
    }
}

/// Decodes stored entity bodies into a config.
pub fn config_from_rows(
    rows: Vec<(EntityKind, serde_json::Value)>,
) -> anyhow::Result<GatewayConfig> {
    fn decode<T: serde::de::DeserializeOwned>(
        kind: EntityKind,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        serde_json::from_value(body).with_context(|| format!("decode stored {}", kind.singular()))
    }
    let mut config = GatewayConfig::default();
    for (kind, body) in rows {
        match kind {
            EntityKind::Service => config.services.push(decode(kind, body)?),
            EntityKind::Route => config.routes.push(decode(kind, body)?),
            EntityKind::Consumer => config.consumers.push(decode(kind, body)?),
            EntityKind::KeyAuthCredential => config.keyauth_credentials.push(decode(kind, body)?),
            EntityKind::Plugin => config.plugins.push(decode(kind, body)?),
            EntityKind::Upstream => config.upstreams.push(decode(kind, body)?),
            EntityKind::Target => config.targets.push(decode(kind, body)?),
            EntityKind::Certificate => config.certificates.push(decode(kind, body)?),
            EntityKind::Sni => config.snis.push(decode(kind, body)?),
            EntityKind::CaCertificate => config.ca_certificates.push(decode(kind, body)?),
        }
    }
    Ok(config)
}

/// The newest snapshot of each control plane. Several API replicas each keep their own; the
/// version in the database decides which one is current, so they never disagree.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    latest: Mutex<HashMap<Uuid, Arc<ConfigSnapshot>>>,
}

impl SnapshotCache {
    /// The snapshot of the control plane's current config version, built if needed.
    pub async fn get(
        &self,
        store: &Store,
        org: Uuid,
        control_plane: Uuid,
    ) -> StoreResult<Arc<ConfigSnapshot>> {
        let version = store.config_version(org, control_plane).await?;
        if let Some(hit) = self.cached(control_plane, version) {
            return Ok(hit);
        }
        let (version, rows) = store.load_config(org, control_plane).await?;
        let config = config_from_rows(rows)?;
        let snapshot = Arc::new(ConfigSnapshot::build(version, config));
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        // Keep whichever is newer: a slower builder must not replace a newer snapshot.
        let entry = latest
            .entry(control_plane)
            .or_insert_with(|| snapshot.clone());
        if entry.version < snapshot.version {
            *entry = snapshot.clone();
        }
        Ok(snapshot)
    }

    fn cached(&self, control_plane: Uuid, version: i64) -> Option<Arc<ConfigSnapshot>> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest
            .get(&control_plane)
            .filter(|s| s.version == version)
            .cloned()
    }

    /// Drops a deleted control plane's snapshot.
    pub fn forget(&self, control_plane: Uuid) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.remove(&control_plane);
    }
}
