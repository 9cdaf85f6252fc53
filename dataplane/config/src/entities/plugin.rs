//! The Plugin entity: a plugin instance, global or scoped to a service, route and/or
//! consumer. Its `config` is checked and completed by [`crate::plugins`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::service::Protocol;
use crate::entity::{Entity, EntityKind, EntityRef, FieldError, OnDelete, Reference};
use crate::plugins::{normalize_plugin_config, PLUGIN_NAMES};
use crate::validate::{check_name, check_tags, Errors};

/// A Kong plugin instance. Fields are declared in alphabetical order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Plugin {
    /// The plugin's configuration (an object; defaults filled at parse time).
    #[serde(serialize_with = "crate::canonical::sorted_value")]
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Only requests of this consumer.
    pub consumer: Option<EntityRef>,
    /// Whether the plugin runs (default true).
    pub enabled: bool,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// Unique name of this instance.
    pub instance_name: Option<String>,
    /// Plugin name, e.g. "rate-limiting". Required.
    pub name: String,
    /// Protocols the plugin runs on (default grpc, grpcs, http, https).
    pub protocols: Vec<Protocol>,
    /// Only requests matched by this route.
    pub route: Option<EntityRef>,
    /// Only requests proxied to this service.
    pub service: Option<EntityRef>,
    /// Free-form tags.
    pub tags: Vec<String>,
}

impl Default for Plugin {
    fn default() -> Self {
        Self {
            config: serde_json::Value::Object(serde_json::Map::new()),
            consumer: None,
            enabled: true,
            id: Uuid::nil(),
            instance_name: None,
            name: String::new(),
            protocols: vec![
                Protocol::Grpc,
                Protocol::Grpcs,
                Protocol::Http,
                Protocol::Https,
            ],
            route: None,
            service: None,
            tags: Vec::new(),
        }
    }
}

/// The message for a plugin name this control plane does not know.
pub(crate) fn unknown_plugin(name: &str) -> String {
    format!(
        "plugin '{name}' is not enabled on this control plane; available: {}",
        PLUGIN_NAMES.join(", ")
    )
}

impl Plugin {
    /// Kong allows one plugin of a name per scope: "<name>|<service>|<route>|<consumer>",
    /// with "-" for an unset scope.
    pub fn scope_key(&self) -> String {
        let id = |r: &Option<EntityRef>| r.map(|r| r.id.to_string()).unwrap_or_else(|| "-".into());
        format!(
            "{}|{}|{}|{}",
            self.name,
            id(&self.service),
            id(&self.route),
            id(&self.consumer)
        )
    }
}

impl Entity for Plugin {
    const KIND: EntityKind = EntityKind::Plugin;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = vec![("name", self.scope_key())];
        if let Some(instance) = &self.instance_name {
            keys.push(("instance_name", instance.clone()));
        }
        keys
    }

    fn references(&self) -> Vec<Reference> {
        [
            ("service", EntityKind::Service, &self.service),
            ("route", EntityKind::Route, &self.route),
            ("consumer", EntityKind::Consumer, &self.consumer),
        ]
        .into_iter()
        .filter_map(|(field, kind, r)| {
            Reference::from_ref(field, kind, r.as_ref(), OnDelete::Cascade)
        })
        .collect()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.name.is_empty() {
            errors.add("name", "required field missing");
        } else if !PLUGIN_NAMES.contains(&self.name.as_str()) {
            errors.add("name", unknown_plugin(&self.name));
        } else if let Err(errs) = normalize_plugin_config(&self.name, &self.config) {
            errors.0.extend(errs);
        }
        check_name(&mut errors, "instance_name", self.instance_name.as_deref());
        if self.protocols.is_empty() {
            errors.add("protocols", "length must be at least 1");
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}
