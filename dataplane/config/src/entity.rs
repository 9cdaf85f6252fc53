//! The vocabulary shared by all entities: kinds, references, field errors and the
//! [`Entity`] trait.

use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of entity a control plane stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// An upstream API (`services`).
    Service,
    /// A set of matching rules pointing at a service (`routes`).
    Route,
    /// A user of the APIs (`consumers`).
    Consumer,
    /// An API key of a consumer (`keyauth_credentials`).
    KeyAuthCredential,
    /// A plugin instance (`plugins`).
    Plugin,
    /// A load-balanced virtual host (`upstreams`).
    Upstream,
    /// A backend address of an upstream (`targets`).
    Target,
    /// A TLS certificate and key (`certificates`).
    Certificate,
    /// A server name pointing at a certificate (`snis`).
    Sni,
    /// A trusted CA certificate services verify their upstream with (`ca_certificates`).
    CaCertificate,
}

impl EntityKind {
    /// Every kind, in the order parents come before the entities pointing at them.
    pub const ALL: [EntityKind; 10] = [
        EntityKind::Service,
        EntityKind::Route,
        EntityKind::Consumer,
        EntityKind::KeyAuthCredential,
        EntityKind::Plugin,
        EntityKind::Upstream,
        EntityKind::Target,
        EntityKind::Certificate,
        EntityKind::Sni,
        EntityKind::CaCertificate,
    ];

    /// Kong collection name: "services", "routes", "consumers", "keyauth_credentials",
    /// "plugins", "upstreams", "targets", "certificates", "snis", "ca_certificates" (the
    /// declarative keys and the names the store records).
    pub fn collection(self) -> &'static str {
        match self {
            EntityKind::Service => "services",
            EntityKind::Route => "routes",
            EntityKind::Consumer => "consumers",
            EntityKind::KeyAuthCredential => "keyauth_credentials",
            EntityKind::Plugin => "plugins",
            EntityKind::Upstream => "upstreams",
            EntityKind::Target => "targets",
            EntityKind::Certificate => "certificates",
            EntityKind::Sni => "snis",
            EntityKind::CaCertificate => "ca_certificates",
        }
    }

    /// The collection's URL path segment under `core-entities/`: Konnect spells
    /// `ca-certificates` with a hyphen where Kong's declarative key has an underscore; every
    /// other collection is written the same in both places.
    pub fn path_segment(self) -> &'static str {
        match self {
            EntityKind::CaCertificate => "ca-certificates",
            other => other.collection(),
        }
    }

    /// The kind whose collection name is `s`, if any.
    pub fn from_collection(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.collection() == s)
    }

    /// Singular name for messages: "service", "route", "consumer", "key-auth credential",
    /// "plugin", "upstream", "target", "certificate", "sni", "ca certificate".
    pub fn singular(self) -> &'static str {
        match self {
            EntityKind::Service => "service",
            EntityKind::Route => "route",
            EntityKind::Consumer => "consumer",
            EntityKind::KeyAuthCredential => "key-auth credential",
            EntityKind::Plugin => "plugin",
            EntityKind::Upstream => "upstream",
            EntityKind::Target => "target",
            EntityKind::Certificate => "certificate",
            EntityKind::Sni => "sni",
            EntityKind::CaCertificate => "ca certificate",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

/// One problem with an input, naming the field by its JSON path (`port`, `paths[1]`,
/// `config.minute`, `services[2].routes[0].paths`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// A field error from anything string-like.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error with `prefix` put in front of the path (`routes[0]` + `paths` ->
    /// `routes[0].paths`).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.field = join_path(prefix, &self.field);
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldError {}

/// Joins two JSON path fragments; array indices attach without a dot.
pub(crate) fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else if field.is_empty() {
        prefix.to_string()
    } else if field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

/// A reference to another entity: `{"id": "..."}` in JSON (Kong form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRef {
    /// Id of the referenced entity.
    pub id: Uuid,
}

impl EntityRef {
    /// A reference to the entity with this id.
    pub fn new(id: Uuid) -> Self {
        Self { id }
    }
}

/// What happens to the referencing entity when the referenced one is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnDelete {
    /// The delete is refused while the reference exists.
    Restrict,
    /// The referencing entity is deleted too.
    Cascade,
}

/// One reference from an entity to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Field holding the reference (`service`, `client_certificate`, ...); an element of a
    /// list of references is named with its index (`ca_certificates[1]`), so every reference
    /// of one entity has its own field.
    pub field: Cow<'static, str>,
    /// Kind of the referenced entity.
    pub kind: EntityKind,
    /// Id of the referenced entity.
    pub id: Uuid,
    /// Behaviour when the referenced entity is deleted.
    pub on_delete: OnDelete,
}

impl Reference {
    /// A reference from `field`, if the field is set.
    pub(crate) fn from_ref(
        field: &'static str,
        kind: EntityKind,
        target: Option<&EntityRef>,
        on_delete: OnDelete,
    ) -> Option<Self> {
        target.map(|r| Reference {
            field: Cow::Borrowed(field),
            kind,
            id: r.id,
            on_delete,
        })
    }
}

/// A gateway configuration entity.
pub trait Entity:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The kind of this entity.
    const KIND: EntityKind;
    /// The entity's id; `Uuid::nil()` means "not assigned yet".
    fn id(&self) -> Uuid;
    /// Assigns the id.
    fn set_id(&mut self, id: Uuid);
    /// Natural keys unique within one control plane, as (field name, value). Entities without
    /// a name return none for it.
    fn unique_keys(&self) -> Vec<(&'static str, String)>;
    /// The entities this one points at, with Kong's delete semantics.
    fn references(&self) -> Vec<Reference>;
    /// Checks of the entity on its own (not cross references): every problem, each naming
    /// the field.
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_round_trip() {
        for kind in EntityKind::ALL {
            assert_eq!(EntityKind::from_collection(kind.collection()), Some(kind));
        }
        assert_eq!(EntityKind::from_collection("nope"), None);
        assert_eq!(
            EntityKind::KeyAuthCredential.singular(),
            "key-auth credential"
        );
    }

    #[test]
    fn paths_join() {
        assert_eq!(join_path("", "port"), "port");
        assert_eq!(join_path("paths", "[1]"), "paths[1]");
        assert_eq!(
            join_path("services[0]", "routes[1].x"),
            "services[0].routes[1].x"
        );
    }
}
