//! Export to Kong's declarative format, nested the way `deck` writes it.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::entities::{Plugin, Route};
use crate::entity::EntityRef;
use crate::snapshot::GatewayConfig;

/// The `_format_version` written on export.
const FORMAT_VERSION: &str = "3.0";

/// Exports to Kong declarative YAML (see [`export_value`] for the layout).
pub fn export_yaml(cfg: &GatewayConfig) -> String {
    let value = export_value(cfg);
    // Plain JSON data always serialises; JSON text is valid YAML should it ever not.
    serde_yaml::to_string(&value).unwrap_or_else(|_| value.to_string())
}

/// Exports to Kong's declarative form as JSON: `_format_version: "3.0"`, routes nested under
/// their service, key-auth credentials under consumers, targets under upstreams, snis under
/// certificates, CA certificates top-level under `ca_certificates`, and plugins under their owner when they have exactly one (otherwise
/// top-level, referring to entities by name when they have one). Ids are included so a
/// re-import preserves them.
pub fn export_value(cfg: &GatewayConfig) -> Value {
    let mut cfg = cfg.clone();
    cfg.sort_canonical();
    let names = Names::new(&cfg);

    // Plugins with exactly one owner go under it; the rest stay top-level.
    let mut owned: HashMap<(&str, Uuid), Vec<&Plugin>> = HashMap::new();
    let mut global = Vec::new();
    for plugin in &cfg.plugins {
        let scopes: Vec<(&str, Uuid)> = [
            ("service", plugin.service),
            ("route", plugin.route),
            ("consumer", plugin.consumer),
        ]
        .into_iter()
        .filter_map(|(field, r)| r.map(|r| (field, r.id)))
        .collect();
        match scopes.as_slice() {
            [(field, id)] if names.exists(field, *id) => {
                owned.entry((field, *id)).or_default().push(plugin)
            }
            _ => global.push(plugin),
        }
    }
    let plugins_of = |field: &str, id: Uuid| -> Vec<Value> {
        owned
            .get(&(field, id))
            .into_iter()
            .flatten()
            .map(|p| object(*p, &[field]))
            .collect()
    };
    let route_value = |route: &Route, drop: &[&str]| {
        let mut value = object(route, drop);
        put_list(&mut value, "plugins", plugins_of("route", route.id));
        value
    };

    let service_ids: HashSet<Uuid> = cfg.services.iter().map(|s| s.id).collect();
    let mut services = Vec::new();
    for service in &cfg.services {
        let mut value = object(service, &[]);
        let routes: Vec<Value> = cfg
            .routes
            .iter()
            .filter(|r| r.service.map(|s| s.id) == Some(service.id))
            .map(|r| route_value(r, &["service"]))
            .collect();
        put_list(&mut value, "routes", routes);
        put_list(&mut value, "plugins", plugins_of("service", service.id));
        services.push(value);
    }
    let routes: Vec<Value> = cfg
        .routes
        .iter()
        .filter(|r| !r.service.is_some_and(|s| service_ids.contains(&s.id)))
        .map(|r| route_value(r, &[]))
        .collect();

    let consumer_ids: HashSet<Uuid> = cfg.consumers.iter().map(|c| c.id).collect();
    let consumers: Vec<Value> = cfg
        .consumers
        .iter()
        .map(|consumer| {
            let mut value = object(consumer, &[]);
            let keys = cfg
                .keyauth_credentials
                .iter()
                .filter(|k| k.consumer.map(|c| c.id) == Some(consumer.id))
                .map(|k| object(k, &["consumer"]))
                .collect();
            put_list(&mut value, "keyauth_credentials", keys);
            put_list(&mut value, "plugins", plugins_of("consumer", consumer.id));
            value
        })
        .collect();
    let keyauth: Vec<Value> = cfg
        .keyauth_credentials
        .iter()
        .filter(|k| !k.consumer.is_some_and(|c| consumer_ids.contains(&c.id)))
        .map(|k| object(k, &[]))
        .collect();

    let upstream_ids: HashSet<Uuid> = cfg.upstreams.iter().map(|u| u.id).collect();
    let upstreams: Vec<Value> = cfg
        .upstreams
        .iter()
        .map(|upstream| {
            let mut value = object(upstream, &[]);
            let targets = cfg
                .targets
                .iter()
                .filter(|t| t.upstream.map(|u| u.id) == Some(upstream.id))
                .map(|t| object(t, &["upstream"]))
                .collect();
            put_list(&mut value, "targets", targets);
            value
        })
        .collect();
    let targets: Vec<Value> = cfg
        .targets
        .iter()
        .filter(|t| !t.upstream.is_some_and(|u| upstream_ids.contains(&u.id)))
        .map(|t| object(t, &[]))
        .collect();

    let certificate_ids: HashSet<Uuid> = cfg.certificates.iter().map(|c| c.id).collect();
    let certificates: Vec<Value> = cfg
        .certificates
        .iter()
        .map(|certificate| {
            let mut value = object(certificate, &[]);
            let snis = cfg
                .snis
                .iter()
                .filter(|s| s.certificate.map(|c| c.id) == Some(certificate.id))
                .map(|s| object(s, &["certificate"]))
                .collect();
            put_list(&mut value, "snis", snis);
            value
        })
        .collect();
    let snis: Vec<Value> = cfg
        .snis
        .iter()
        .filter(|s| {
            !s.certificate
                .is_some_and(|c| certificate_ids.contains(&c.id))
        })
        .map(|s| object(s, &[]))
        .collect();

    let ca_certificates: Vec<Value> = cfg.ca_certificates.iter().map(|c| object(c, &[])).collect();

    let plugins: Vec<Value> = global
        .into_iter()
        .map(|plugin| {
            let mut value = object(plugin, &[]);
            if let Value::Object(map) = &mut value {
                for field in ["service", "route", "consumer"] {
                    names.name_reference(map, field);
                }
            }
            value
        })
        .collect();

    let mut doc = Map::new();
    doc.insert("_format_version".into(), Value::from(FORMAT_VERSION));
    for (key, list) in [
        ("services", services),
        ("routes", routes),
        ("consumers", consumers),
        ("keyauth_credentials", keyauth),
        ("plugins", plugins),
        ("upstreams", upstreams),
        ("targets", targets),
        ("certificates", certificates),
        ("snis", snis),
        ("ca_certificates", ca_certificates),
    ] {
        if !list.is_empty() {
            doc.insert(key.into(), Value::Array(list));
        }
    }
    Value::Object(doc)
}

/// An entity as a JSON object without nulls, empty tags and the `drop`ped fields (the
/// reference to the parent it is nested under).
fn object<T: Serialize>(entity: &T, drop: &[&str]) -> Value {
    let mut value = serde_json::to_value(entity).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.retain(|k, v| {
            let empty_tags = k == "tags" && v.as_array().is_some_and(Vec::is_empty);
            !(v.is_null() || empty_tags || drop.contains(&k.as_str()))
        });
    }
    value
}

/// Adds a nested list unless it is empty.
fn put_list(value: &mut Value, key: &str, list: Vec<Value>) {
    if let (Value::Object(map), false) = (value, list.is_empty()) {
        map.insert(key.into(), Value::Array(list));
    }
}

/// Names of the entities plugins can point at, for references by name.
struct Names {
    by_field: HashMap<(&'static str, Uuid), Option<String>>,
}

impl Names {
    fn new(cfg: &GatewayConfig) -> Self {
        let mut by_field = HashMap::new();
        for s in &cfg.services {
            by_field.insert(("service", s.id), s.name.clone());
        }
        for r in &cfg.routes {
            by_field.insert(("route", r.id), r.name.clone());
        }
        for c in &cfg.consumers {
            by_field.insert(("consumer", c.id), c.username.clone());
        }
        Self { by_field }
    }

    fn exists(&self, field: &str, id: Uuid) -> bool {
        self.by_field.contains_key(&(field, id))
    }

    /// Replaces `{id: ...}` in `field` by the entity's name when it has one that cannot be
    /// mistaken for an id.
    fn name_reference(&self, map: &mut Map<String, Value>, field: &'static str) {
        let Some(reference) = map
            .get(field)
            .cloned()
            .and_then(|v| serde_json::from_value::<EntityRef>(v).ok())
        else {
            return;
        };
        if let Some(Some(name)) = self.by_field.get(&(field, reference.id)) {
            if Uuid::parse_str(name).is_err() {
                map.insert(field.into(), Value::from(name.clone()));
            }
        }
    }
}
