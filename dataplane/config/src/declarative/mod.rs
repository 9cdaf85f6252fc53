//! Kong's declarative configuration format (`kong.yml`, `deck` files): import and export.
//!
//! Import flattens the nested form (routes under services, credentials under consumers,
//! ...), resolves references given by name, gives every entity without an id a
//! deterministic one (UUID v5 of its natural key) so that importing the same file twice
//! yields the same hash, and validates the result as a whole.

mod export;

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entities::normalize_target;
use crate::entity::{Entity, EntityKind, FieldError};
use crate::parse::parse_entity_map_at;
use crate::snapshot::GatewayConfig;

pub use export::{export_value, export_yaml};

/// Why a declarative config was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeclarativeError {
    /// YAML/JSON syntax error.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Schema/validation errors, each naming the field by its path in the document.
    #[error("invalid declarative config: {}", summary(.0))]
    Invalid(Vec<FieldError>),
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `_format_version` values Kong 3.x accepts.
const FORMAT_VERSIONS: [&str; 3] = ["1.1", "2.1", "3.0"];
/// Top-level keys that carry metadata only.
const META_KEYS: [&str; 5] = [
    "_format_version",
    "_transform",
    "_comment",
    "_workspace",
    "_info",
];
/// Namespace of the deterministic ids given to entities imported without one.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_5a0e_2b7d_4e59_9a43_d1f0_8c2e_b7a4);

/// Parses Kong's declarative format (YAML or JSON — JSON is YAML) into a validated
/// configuration in canonical order.
pub fn import(text: &str) -> Result<GatewayConfig, DeclarativeError> {
    let syntax = |err: serde_yaml::Error| {
        let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
        DeclarativeError::Syntax {
            line,
            column,
            message: err.to_string(),
        }
    };
    // Straight into JSON values unless the document uses YAML merge keys (`<<: *base`),
    // which only `serde_yaml::Value` can expand: building and converting that second tree
    // is a third of the parse time of a large file.
    let doc: Value = if text.contains("<<") {
        let mut yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
        yaml.apply_merge()
            .map_err(|err| invalid("", err.to_string()))?;
        serde_json::to_value(&yaml).map_err(|err| invalid("", err.to_string()))?
    } else {
        serde_yaml::from_str(text).map_err(syntax)?
    };
    let Value::Object(top) = doc else {
        return Err(invalid("", "expected a mapping at the top level"));
    };
    Importer::default().run(top)
}

fn invalid(field: &str, reason: impl Into<String>) -> DeclarativeError {
    DeclarativeError::Invalid(vec![FieldError::new(field, reason)])
}

/// The deterministic id of an entity of `kind` with natural key `key`.
fn derived_id(kind: EntityKind, key: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{}|{key}", kind.collection()).as_bytes(),
    )
}

/// One entity found in the document, flattened.
struct Item {
    /// Where it was written, e.g. `services[0].routes[1]`.
    path: String,
    body: Map<String, Value>,
}

/// Reference fields per kind: (field, referenced kind).
fn reference_fields(kind: EntityKind) -> &'static [(&'static str, EntityKind)] {
    match kind {
        EntityKind::Service | EntityKind::Upstream => {
            &[("client_certificate", EntityKind::Certificate)]
        }
        EntityKind::Route => &[("service", EntityKind::Service)],
        EntityKind::KeyAuthCredential => &[("consumer", EntityKind::Consumer)],
        EntityKind::Plugin => &[
            ("service", EntityKind::Service),
            ("route", EntityKind::Route),
            ("consumer", EntityKind::Consumer),
        ],
        EntityKind::Target => &[("upstream", EntityKind::Upstream)],
        EntityKind::Sni => &[("certificate", EntityKind::Certificate)],
        // A service's ca_certificates are a plain list of ids: nothing to resolve by name.
        EntityKind::Consumer | EntityKind::Certificate | EntityKind::CaCertificate => &[],
    }
}

#[derive(Default)]
struct Importer {
    items: BTreeMap<EntityKind, Vec<Item>>,
    errors: Vec<FieldError>,
    /// (kind, name) -> id, for references by name.
    names: HashMap<(EntityKind, String), Uuid, foldhash::fast::RandomState>,
}

fn str_field<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

fn id_ref(id: Uuid) -> Value {
    let mut map = Map::new();
    map.insert("id".into(), Value::from(id.to_string()));
    Value::Object(map)
}

impl Importer {
    fn run(mut self, mut top: Map<String, Value>) -> Result<GatewayConfig, DeclarativeError> {
        self.check_format(&top);
        for key in top.keys() {
            let known =
                META_KEYS.contains(&key.as_str()) || EntityKind::from_collection(key).is_some();
            if !known {
                self.errors
                    .push(FieldError::new(key.clone(), "unknown field"));
            }
        }
        for kind in EntityKind::ALL {
            let collection = kind.collection();
            for (i, body) in self
                .list(&mut top, collection, collection)
                .into_iter()
                .enumerate()
            {
                self.collect(kind, format!("{collection}[{i}]"), body, i, None);
            }
        }
        if !self.errors.is_empty() {
            return Err(DeclarativeError::Invalid(self.errors));
        }
        self.resolve_all();
        let (config, paths) = self.parse_all();
        if !self.errors.is_empty() {
            return Err(DeclarativeError::Invalid(self.errors));
        }
        let path_of = |kind: EntityKind, i: usize| {
            paths
                .get(&kind)
                .and_then(|p| p.get(i).cloned())
                .unwrap_or_else(|| format!("{}[{i}]", kind.collection()))
        };
        config
            .validate_with(&path_of)
            .map_err(DeclarativeError::Invalid)?;
        let mut config = config;
        config.sort_canonical();
        Ok(config)
    }

    fn check_format(&mut self, top: &Map<String, Value>) {
        let ok = match top.get("_format_version") {
            None => {
                self.errors
                    .push(FieldError::new("_format_version", "required field missing"));
                return;
            }
            Some(Value::String(s)) => FORMAT_VERSIONS.contains(&s.as_str()),
            // An unquoted `3.0` in YAML is a number.
            Some(Value::Number(n)) => n
                .as_f64()
                .is_some_and(|v| FORMAT_VERSIONS.iter().any(|f| f.parse::<f64>() == Ok(v))),
            Some(_) => false,
        };
        if !ok {
            self.errors.push(FieldError::new(
                "_format_version",
                format!("expected one of: {}", FORMAT_VERSIONS.join(", ")),
            ));
        }
    }

    /// Takes the list `key` out of `body`; `path` names it in errors.
    fn list(&mut self, body: &mut Map<String, Value>, key: &str, path: &str) -> Vec<Value> {
        match body.remove(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.errors.push(FieldError::new(path, "expected an array"));
                Vec::new()
            }
        }
    }

    /// Records one entity written at `path` (the `index`-th of its list), with the
    /// reference to its parent when nested, then its nested children.
    fn collect(
        &mut self,
        kind: EntityKind,
        path: String,
        value: Value,
        index: usize,
        parent: Option<(&'static str, Uuid)>,
    ) {
        let value = match (kind, value) {
            // Kong 3 accepts snis under a certificate as plain names.
            (EntityKind::Sni, Value::String(name)) => {
                let mut map = Map::new();
                map.insert("name".into(), Value::String(name));
                Value::Object(map)
            }
            (_, value) => value,
        };
        let Value::Object(mut body) = value else {
            self.errors
                .push(FieldError::new(path, "expected an object"));
            return;
        };
        if let Some((field, id)) = parent {
            body.insert(field.into(), id_ref(id));
        }
        let children: &[(&str, EntityKind, &'static str)] = match kind {
            EntityKind::Service => &[
                ("routes", EntityKind::Route, "service"),
                ("plugins", EntityKind::Plugin, "service"),
            ],
            EntityKind::Route => &[("plugins", EntityKind::Plugin, "route")],
            EntityKind::Consumer => &[
                (
                    "keyauth_credentials",
                    EntityKind::KeyAuthCredential,
                    "consumer",
                ),
                ("plugins", EntityKind::Plugin, "consumer"),
            ],
            EntityKind::Upstream => &[("targets", EntityKind::Target, "upstream")],
            EntityKind::Certificate => &[("snis", EntityKind::Sni, "certificate")],
            _ => &[],
        };
        let mut nested = Vec::new();
        for (key, child_kind, parent_field) in children {
            let child_path = format!("{path}.{key}");
            for (i, child) in self
                .list(&mut body, key, &child_path)
                .into_iter()
                .enumerate()
            {
                nested.push((
                    *child_kind,
                    format!("{child_path}[{i}]"),
                    child,
                    i,
                    *parent_field,
                ));
            }
        }
        // Parents need their id now: nested children point at it.
        let id = match self.explicit_id(&path, &body) {
            Some(id) => Some(id),
            None if !children.is_empty() => {
                let scope = parent.map_or_else(|| "-".to_string(), |(_, id)| id.to_string());
                Some(derived_id(
                    kind,
                    &parent_natural_key(kind, &body, &scope, index),
                ))
            }
            None => None,
        };
        if let Some(id) = id {
            body.insert("id".into(), Value::from(id.to_string()));
            self.remember_names(kind, &body, id);
        }
        self.items
            .entry(kind)
            .or_default()
            .push(Item { path, body });
        if let Some(id) = id {
            for (child_kind, child_path, child, i, parent_field) in nested {
                self.collect(child_kind, child_path, child, i, Some((parent_field, id)));
            }
        }
    }

    /// The id written in the document, if any (a malformed one is reported).
    fn explicit_id(&mut self, path: &str, body: &Map<String, Value>) -> Option<Uuid> {
        let raw = body.get("id")?;
        match raw.as_str().map(Uuid::parse_str) {
            Some(Ok(id)) => Some(id),
            _ => {
                self.errors
                    .push(FieldError::new(format!("{path}.id"), "expected a UUID"));
                None
            }
        }
    }

    fn remember_names(&mut self, kind: EntityKind, body: &Map<String, Value>, id: Uuid) {
        let fields: &[&str] = match kind {
            EntityKind::Consumer => &["username", "custom_id"],
            EntityKind::Service | EntityKind::Route | EntityKind::Upstream => &["name"],
            _ => &[],
        };
        for field in fields {
            if let Some(name) = str_field(body, field) {
                self.names.entry((kind, name.to_string())).or_insert(id);
            }
        }
    }

    /// Rewrites references given by name (`service: orders`, `{name: orders}`) or as a bare
    /// id string into Kong's `{id: ...}` form, then gives the remaining entities their ids.
    fn resolve_all(&mut self) {
        let mut items = std::mem::take(&mut self.items);
        for (kind, list) in &mut items {
            for (i, item) in list.iter_mut().enumerate() {
                for (field, target) in reference_fields(*kind) {
                    self.resolve(item, field, *target);
                }
                if !item.body.contains_key("id") {
                    let key = child_natural_key(*kind, &item.body, i);
                    let id = derived_id(*kind, &key);
                    item.body.insert("id".into(), Value::from(id.to_string()));
                }
                // A key left out would be random at parse time; derive it from the id so
                // that importing the same file twice gives the same config.
                if *kind == EntityKind::KeyAuthCredential
                    && str_field(&item.body, "key").is_none_or(str::is_empty)
                {
                    let id = str_field(&item.body, "id").unwrap_or_default();
                    let digest = Sha256::digest(id.as_bytes());
                    item.body
                        .insert("key".into(), Value::from(hex::encode(&digest[..16])));
                }
            }
        }
        self.items = items;
    }

    fn resolve(&mut self, item: &mut Item, field: &str, target: EntityKind) {
        let Some(value) = item.body.get(field) else {
            return;
        };
        let name = match value {
            Value::String(s) => match Uuid::parse_str(s) {
                Ok(id) => {
                    item.body.insert(field.into(), id_ref(id));
                    return;
                }
                Err(_) => s.clone(),
            },
            Value::Object(map) if !map.contains_key("id") => {
                let by_name = ["name", "username", "custom_id"]
                    .iter()
                    .find_map(|k| map.get(*k).and_then(Value::as_str));
                match by_name {
                    Some(name) if map.len() == 1 => name.to_string(),
                    // Anything else is left for the typed parser to report.
                    _ => return,
                }
            }
            _ => return,
        };
        match self.names.get(&(target, name.clone())) {
            Some(id) => {
                item.body.insert(field.into(), id_ref(*id));
            }
            None => self.errors.push(FieldError::new(
                format!("{}.{field}", item.path),
                format!("no {} named '{name}' in this config", target.singular()),
            )),
        }
    }

    /// Parses every item into its typed entity; returns the config and each entity's path.
    fn parse_all(&mut self) -> (GatewayConfig, HashMap<EntityKind, Vec<String>>) {
        let mut config = GatewayConfig::default();
        let mut paths: HashMap<EntityKind, Vec<String>> = HashMap::new();
        let mut items = std::mem::take(&mut self.items);
        for kind in EntityKind::ALL {
            let list = items.remove(&kind).unwrap_or_default();
            let p = paths.entry(kind).or_default();
            match kind {
                EntityKind::Service => self.parse_into(list, &mut config.services, p),
                EntityKind::Route => self.parse_into(list, &mut config.routes, p),
                EntityKind::Consumer => self.parse_into(list, &mut config.consumers, p),
                EntityKind::KeyAuthCredential => {
                    self.parse_into(list, &mut config.keyauth_credentials, p)
                }
                EntityKind::Plugin => self.parse_into(list, &mut config.plugins, p),
                EntityKind::Upstream => self.parse_into(list, &mut config.upstreams, p),
                EntityKind::Target => self.parse_into(list, &mut config.targets, p),
                EntityKind::Certificate => self.parse_into(list, &mut config.certificates, p),
                EntityKind::Sni => self.parse_into(list, &mut config.snis, p),
                EntityKind::CaCertificate => self.parse_into(list, &mut config.ca_certificates, p),
            }
        }
        (config, paths)
    }

    fn parse_into<E: Entity>(
        &mut self,
        items: Vec<Item>,
        out: &mut Vec<E>,
        paths: &mut Vec<String>,
    ) {
        for item in items {
            // Items are consumed: parsing takes each body without copying it.
            match parse_entity_map_at::<E>(item.body, &item.path) {
                Ok(entity) => {
                    out.push(entity);
                    paths.push(item.path);
                }
                Err(errs) => self.errors.extend(errs),
            }
        }
    }
}

/// Natural key of a parent entity (service, route, consumer, upstream, certificate); the
/// position is used only when the entity has no name.
fn parent_natural_key(
    kind: EntityKind,
    body: &Map<String, Value>,
    scope: &str,
    index: usize,
) -> String {
    let named = match kind {
        EntityKind::Consumer => str_field(body, "username")
            .map(|u| format!("username:{u}"))
            .or_else(|| str_field(body, "custom_id").map(|c| format!("custom_id:{c}"))),
        EntityKind::Certificate => str_field(body, "cert").map(|c| {
            // The certificate itself identifies it; hash it to keep the key short.
            format!("cert:{}", hex::encode(Sha256::digest(c.trim().as_bytes())))
        }),
        _ => str_field(body, "name").map(|n| format!("name:{n}")),
    };
    named.unwrap_or_else(|| format!("{scope}#{index}"))
}

/// Natural key of a child entity (plugin, target, key-auth credential, sni) or a CA
/// certificate once its
/// references are resolved; the position is used only when nothing else identifies it.
fn child_natural_key(kind: EntityKind, body: &Map<String, Value>, index: usize) -> String {
    let ref_id = |field: &str| {
        body.get(field)
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    match kind {
        EntityKind::Plugin => format!(
            "{}|{}|{}|{}|{}",
            str_field(body, "name").unwrap_or_default(),
            ref_id("service"),
            ref_id("route"),
            ref_id("consumer"),
            str_field(body, "instance_name").unwrap_or("-"),
        ),
        EntityKind::Target => format!(
            "{}/{}",
            ref_id("upstream"),
            normalize_target(str_field(body, "target").unwrap_or_default())
        ),
        EntityKind::KeyAuthCredential => match str_field(body, "key").filter(|k| !k.is_empty()) {
            Some(key) => format!("key:{key}"),
            None => format!("{}#{index}", ref_id("consumer")),
        },
        EntityKind::Sni => format!("name:{}", str_field(body, "name").unwrap_or_default()),
        // The certificate identifies a CA certificate, wherever it is written.
        EntityKind::CaCertificate => match str_field(body, "cert") {
            Some(cert) => format!(
                "cert:{}",
                hex::encode(Sha256::digest(cert.trim().as_bytes()))
            ),
            None => format!("-#{index}"),
        },
        _ => format!("-#{index}"),
    }
}

#[cfg(test)]
mod tests;
