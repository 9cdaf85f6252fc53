//! The whole configuration of one control plane, its canonical form and content hash.

use std::collections::{HashMap, HashSet};

/// Keys come from the config being validated, not from an attacker choosing hash
/// collisions per request, so a fast non-DoS-resistant hash is fine.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type IdSet = HashSet<Uuid, foldhash::fast::RandomState>;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entities::{
    CaCertificate, Certificate, Consumer, KeyAuthCredential, Plugin, Route, Service, Sni, Target,
    Upstream,
};
use crate::entity::{Entity, EntityKind, FieldError};

/// Kong's well-known hash of an empty configuration.
pub const EMPTY_CONFIG_HASH: &str = "00000000000000000000000000000000";

/// A configuration hash: 32 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigHash(pub String);

impl fmt::Display for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ConfigHash {
    /// The hash as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every entity of one control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Services.
    pub services: Vec<Service>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Consumers.
    pub consumers: Vec<Consumer>,
    /// Key-auth credentials.
    pub keyauth_credentials: Vec<KeyAuthCredential>,
    /// Plugins.
    pub plugins: Vec<Plugin>,
    /// Upstreams.
    pub upstreams: Vec<Upstream>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Certificates.
    pub certificates: Vec<Certificate>,
    /// SNIs.
    pub snis: Vec<Sni>,
    /// Trusted CA certificates.
    pub ca_certificates: Vec<CaCertificate>,
}

/// The entities of one collection, sorted by id without copying them.
fn sorted<E: Entity>(items: &[E]) -> Vec<&E> {
    let mut refs: Vec<&E> = items.iter().collect();
    refs.sort_by_key(|e| e.id());
    refs
}

/// Writes `"name":[...]` for one collection in canonical order.
fn write_collection<E: Entity>(out: &mut Vec<u8>, name: &str, items: &[E], first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    // Serialising plain data structs into a Vec cannot fail (no I/O, string keys only);
    // should it ever, the collection is written empty rather than panicking.
    let start = out.len();
    if serde_json::to_writer(&mut *out, &sorted(items)).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"[]");
    }
}

impl GatewayConfig {
    /// Whether the configuration holds no entity at all.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.routes.is_empty()
            && self.consumers.is_empty()
            && self.keyauth_credentials.is_empty()
            && self.plugins.is_empty()
            && self.upstreams.is_empty()
            && self.targets.is_empty()
            && self.certificates.is_empty()
            && self.snis.is_empty()
            && self.ca_certificates.is_empty()
    }

    /// Number of entities of `kind`.
    pub fn count(&self, kind: EntityKind) -> usize {
        match kind {
            EntityKind::Service => self.services.len(),
            EntityKind::Route => self.routes.len(),
            EntityKind::Consumer => self.consumers.len(),
            EntityKind::KeyAuthCredential => self.keyauth_credentials.len(),
            EntityKind::Plugin => self.plugins.len(),
            EntityKind::Upstream => self.upstreams.len(),
            EntityKind::Target => self.targets.len(),
            EntityKind::Certificate => self.certificates.len(),
            EntityKind::Sni => self.snis.len(),
            EntityKind::CaCertificate => self.ca_certificates.len(),
        }
    }

    /// Sorts every collection by id (the canonical order), so insertion order never matters.
    pub fn sort_canonical(&mut self) {
        self.services.sort_by_key(|e| e.id);
        self.routes.sort_by_key(|e| e.id);
        self.consumers.sort_by_key(|e| e.id);
        self.keyauth_credentials.sort_by_key(|e| e.id);
        self.plugins.sort_by_key(|e| e.id);
        self.upstreams.sort_by_key(|e| e.id);
        self.targets.sort_by_key(|e| e.id);
        self.certificates.sort_by_key(|e| e.id);
        self.snis.sort_by_key(|e| e.id);
        self.ca_certificates.sort_by_key(|e| e.id);
    }

    /// Canonical JSON bytes: collections sorted by id, object keys sorted at every level, no
    /// whitespace, every field present (defaults filled).
    ///
    /// Entities are serialised directly (not through `serde_json::Value`) for speed; their
    /// structs declare fields alphabetically so serde writes keys in sorted order, and
    /// free-form JSON inside them is written sorted (see `canonical.rs`).
    pub fn canonical_json(&self) -> Vec<u8> {
        // About 400 bytes per service/route; reserving avoids most regrowth.
        let entities: usize = EntityKind::ALL.iter().map(|k| self.count(*k)).sum();
        let mut out = Vec::with_capacity(256 + entities * 512);
        out.push(b'{');
        // Top-level keys in sorted order.
        write_collection(&mut out, "ca_certificates", &self.ca_certificates, true);
        write_collection(&mut out, "certificates", &self.certificates, false);
        write_collection(&mut out, "consumers", &self.consumers, false);
        write_collection(
            &mut out,
            "keyauth_credentials",
            &self.keyauth_credentials,
            false,
        );
        write_collection(&mut out, "plugins", &self.plugins, false);
        write_collection(&mut out, "routes", &self.routes, false);
        write_collection(&mut out, "services", &self.services, false);
        write_collection(&mut out, "snis", &self.snis, false);
        write_collection(&mut out, "targets", &self.targets, false);
        write_collection(&mut out, "upstreams", &self.upstreams, false);
        out.push(b'}');
        out
    }

    /// First 32 hex characters of SHA-256 over [`Self::canonical_json`];
    /// [`EMPTY_CONFIG_HASH`] for an empty configuration.
    pub fn hash(&self) -> ConfigHash {
        self.canonical_json_and_hash().1
    }

    /// [`Self::canonical_json`] and [`Self::hash`] together, serialising only once (a
    /// snapshot needs both; serialisation is the expensive part).
    pub fn canonical_json_and_hash(&self) -> (Vec<u8>, ConfigHash) {
        let bytes = self.canonical_json();
        let hash = if self.is_empty() {
            EMPTY_CONFIG_HASH.to_string()
        } else {
            hex::encode(&Sha256::digest(&bytes)[..16])
        };
        (bytes, ConfigHash(hash))
    }

    /// Cross-entity checks: every entity's own [`Entity::validate`], ids unique per kind
    /// (and assigned), natural keys unique, and every reference resolving. Paths look like
    /// `routes[3].service`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.validate_with(&|kind, index| format!("{}[{index}]", kind.collection()))
    }

    /// [`Self::validate`] with the path of each entity given by `path(kind, index)`, so the
    /// declarative import can name entities by where they were written.
    pub(crate) fn validate_with(
        &self,
        path: &dyn Fn(EntityKind, usize) -> String,
    ) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut ids: HashMap<EntityKind, IdSet> = HashMap::new();
        check_kind(&self.services, path, &mut ids, &mut errors);
        check_kind(&self.routes, path, &mut ids, &mut errors);
        check_kind(&self.consumers, path, &mut ids, &mut errors);
        check_kind(&self.keyauth_credentials, path, &mut ids, &mut errors);
        check_kind(&self.plugins, path, &mut ids, &mut errors);
        check_kind(&self.upstreams, path, &mut ids, &mut errors);
        check_kind(&self.targets, path, &mut ids, &mut errors);
        check_kind(&self.certificates, path, &mut ids, &mut errors);
        check_kind(&self.snis, path, &mut ids, &mut errors);
        check_kind(&self.ca_certificates, path, &mut ids, &mut errors);
        let empty = IdSet::default();
        let resolve = |kind: EntityKind, id: &Uuid| ids.get(&kind).unwrap_or(&empty).contains(id);
        check_refs(&self.services, path, &resolve, &mut errors);
        check_refs(&self.routes, path, &resolve, &mut errors);
        check_refs(&self.keyauth_credentials, path, &resolve, &mut errors);
        check_refs(&self.plugins, path, &resolve, &mut errors);
        check_refs(&self.upstreams, path, &resolve, &mut errors);
        check_refs(&self.targets, path, &resolve, &mut errors);
        check_refs(&self.snis, path, &resolve, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Own validation, id and natural-key uniqueness for one collection; records its ids.
fn check_kind<E: Entity>(
    items: &[E],
    path: &dyn Fn(EntityKind, usize) -> String,
    ids: &mut HashMap<EntityKind, IdSet>,
    errors: &mut Vec<FieldError>,
) {
    let seen = ids.entry(E::KIND).or_default();
    let mut keys: FastMap<(&'static str, String), usize> = FastMap::default();
    for (i, item) in items.iter().enumerate() {
        // The path is built only for errors: formatting it for every entity of a large
        // config costs more than validating it.
        let at = || path(E::KIND, i);
        if let Err(errs) = item.validate() {
            let at = at();
            errors.extend(errs.into_iter().map(|e| e.prefixed(&at)));
        }
        let id = item.id();
        if id.is_nil() {
            errors.push(FieldError::new(
                format!("{}.id", at()),
                "required field missing",
            ));
        } else if !seen.insert(id) {
            errors.push(FieldError::new(
                format!("{}.id", at()),
                format!("another {} has the id {id}", E::KIND.singular()),
            ));
        }
        for (field, value) in item.unique_keys() {
            let key = (field, value);
            if let Some(first) = keys.get(&key) {
                errors.push(FieldError::new(
                    format!("{}.{field}", at()),
                    format!(
                        "unique constraint violation: {} at {} has the same {field} '{}'",
                        E::KIND.singular(),
                        path(E::KIND, *first),
                        key.1
                    ),
                ));
            } else {
                keys.insert(key, i);
            }
        }
    }
}

/// Reports references of one collection that resolve to no entity.
fn check_refs<E: Entity>(
    items: &[E],
    path: &dyn Fn(EntityKind, usize) -> String,
    resolve: &dyn Fn(EntityKind, &Uuid) -> bool,
    errors: &mut Vec<FieldError>,
) {
    for (i, item) in items.iter().enumerate() {
        for reference in item.references() {
            if !resolve(reference.kind, &reference.id) {
                errors.push(FieldError::new(
                    format!("{}.{}", path(E::KIND, i), reference.field),
                    format!(
                        "no {} with id {} exists in this configuration",
                        reference.kind.singular(),
                        reference.id
                    ),
                ));
            }
        }
    }
}
