//! Turning request bodies (JSON) into validated entities, naming the field on every error.

use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::entities::{
    inspect_ca_certificate, normalize_target, unknown_plugin, CaCertificate, Protocol,
};
use crate::entity::{join_path, Entity, EntityKind, FieldError};
use crate::plugins::{normalize_plugin_config, PLUGIN_NAMES};

/// Parse an API request body (JSON) into an entity.
///
/// Rejects unknown fields, wrong types and out-of-range values (each [`FieldError`] names the
/// field path), applies Kong's defaults, expands the service `url` shorthand, fills plugin
/// config defaults, generates a key-auth key when none is given, computes a CA certificate's
/// `cert_digest` (refusing an expired one), drops a key-auth credential's read-only
/// `expires_at`, then runs
/// [`Entity::validate`]. The keys `created_at` and `updated_at` are accepted and ignored
/// because clients echo them back. An explicit `null` means "the default", as in Kong.
pub fn parse_entity<E: Entity>(body: &Value) -> Result<E, Vec<FieldError>> {
    match body {
        Value::Object(map) if E::KIND == EntityKind::KeyAuthCredential => {
            let mut map = map.clone();
            // Read-only through the API: the control plane derives it from `ttl` when it
            // stores the key. A declarative file keeps it (an exported config re-imported on
            // a data plane must expire its keys at the same second).
            map.remove("expires_at");
            parse_entity_map_at(map, "")
        }
        _ => parse_entity_at(body, ""),
    }
}

/// [`parse_entity`] for a body found at `prefix` in a larger document (declarative config):
/// every error path starts with `prefix`.
pub(crate) fn parse_entity_at<E: Entity>(body: &Value, prefix: &str) -> Result<E, Vec<FieldError>> {
    let Value::Object(map) = body else {
        let field = if prefix.is_empty() { "body" } else { prefix };
        return Err(vec![FieldError::new(field, "expected a JSON object")]);
    };
    parse_entity_map_at(map.clone(), prefix)
}

/// [`parse_entity_at`] taking the body by value, so bulk imports avoid a copy per entity.
pub(crate) fn parse_entity_map_at<E: Entity>(
    mut map: serde_json::Map<String, Value>,
    prefix: &str,
) -> Result<E, Vec<FieldError>> {
    map.remove("created_at");
    map.remove("updated_at");
    strip_nulls(&mut map);
    let mut errors = Vec::new();
    match E::KIND {
        EntityKind::Service => expand_url(&mut map, &mut errors),
        EntityKind::KeyAuthCredential => ensure_key(&mut map),
        EntityKind::CaCertificate => prepare_ca_certificate(&mut map, &mut errors),
        EntityKind::Target => {
            if let Some(Value::String(target)) = map.get_mut("target") {
                *target = normalize_target(target);
            }
        }
        EntityKind::Plugin => prepare_plugin(&mut map, &mut errors),
        _ => {}
    }
    match deserialize_at::<E>(&Value::Object(map)) {
        Err(err) => errors.push(err),
        // Entity checks only make sense once the pre-processing succeeded; otherwise they
        // would repeat the same problem in other words.
        Ok(entity) if errors.is_empty() => match entity.validate() {
            Ok(()) => return Ok(entity),
            Err(errs) => errors.extend(errs),
        },
        Ok(_) => {}
    }
    let mut out: Vec<FieldError> = Vec::with_capacity(errors.len());
    for err in errors {
        let err = err.prefixed(prefix);
        if !out.contains(&err) {
            out.push(err);
        }
    }
    Err(out)
}

/// Deserialises `value`, turning the first serde error into a [`FieldError`] naming the
/// field's path (unknown and missing fields name the field itself, not its parent).
pub(crate) fn deserialize_at<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        if let Some(name) = quoted_after(&message, "unknown field `") {
            // serde_path_to_error already ends the path with the unknown key.
            let ends_with_name = path == name || path.ends_with(&format!(".{name}"));
            let field = if ends_with_name {
                path
            } else {
                join_path(&path, name)
            };
            FieldError::new(field, "unknown field")
        } else if let Some(name) = quoted_after(&message, "missing field `") {
            FieldError::new(join_path(&path, name), "required field missing")
        } else {
            let field = if path.is_empty() {
                "body".to_string()
            } else {
                path
            };
            FieldError::new(field, message)
        }
    })
}

/// The text between `prefix` and the next backtick, if `message` starts with `prefix`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// Removes `null` members of objects, recursively, so that null means "default".
pub(crate) fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for value in map.values_mut() {
        match value {
            Value::Object(inner) => strip_nulls(inner),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        strip_nulls(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The fields the `url` shorthand sets.
const URL_PARTS: [&str; 4] = ["protocol", "host", "port", "path"];

/// Replaces a service's `url` by protocol/host/port/path, as Kong does.
fn expand_url(map: &mut Map<String, Value>, errors: &mut Vec<FieldError>) {
    let Some(url) = map.remove("url") else { return };
    let conflicts: Vec<&str> = URL_PARTS
        .into_iter()
        .filter(|k| map.contains_key(*k))
        .collect();
    if !conflicts.is_empty() {
        errors.push(FieldError::new(
            "url",
            format!(
                "cannot be set together with '{}': the url sets protocol, host, port and path",
                conflicts.join("', '")
            ),
        ));
        return;
    }
    let Value::String(url) = url else {
        errors.push(FieldError::new("url", "expected a string"));
        return;
    };
    match split_url(&url) {
        Ok((protocol, host, port, path)) => {
            map.insert("protocol".into(), Value::from(protocol.as_str()));
            map.insert("host".into(), Value::from(host));
            map.insert("port".into(), Value::from(port));
            if let Some(path) = path {
                map.insert("path".into(), Value::from(path));
            }
        }
        Err(reason) => errors.push(FieldError::new("url", reason)),
    }
}

/// Splits a service URL into protocol, host, port and path (None when the URL has none).
fn split_url(raw: &str) -> Result<(Protocol, String, u16, Option<String>), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("invalid url '{raw}': {e}"))?;
    let protocol = Protocol::parse(url.scheme()).ok_or_else(|| {
        format!(
            "unsupported protocol '{}': expected one of: {}",
            url.scheme(),
            Protocol::ALL.map(Protocol::as_str).join(", ")
        )
    })?;
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => return Err(format!("invalid url '{raw}': missing host")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the url are not supported".into());
    }
    let port = url.port().unwrap_or_else(|| protocol.default_port());
    // The url crate reports "/" for "http://h"; Kong keeps the path null unless written.
    let after_scheme = raw.split_once("://").map_or("", |(_, rest)| rest);
    let authority_and_path = after_scheme.split(['?', '#']).next().unwrap_or("");
    let path = authority_and_path
        .contains('/')
        .then(|| url.path().to_string());
    Ok((protocol, host, port, path))
}

/// Kong generates a random key when a key-auth credential is created without one.
fn ensure_key(map: &mut Map<String, Value>) {
    let missing = match map.get("key") {
        None => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if missing {
        map.insert(
            "key".into(),
            Value::from(Uuid::new_v4().simple().to_string()),
        );
    }
}

/// Kong computes `cert_digest` from `cert` on every write and refuses a CA certificate that
/// has already expired. A malformed certificate is left for [`Entity::validate`] to report.
fn prepare_ca_certificate(map: &mut Map<String, Value>, errors: &mut Vec<FieldError>) {
    let Some(Value::String(pem)) = map.get("cert") else {
        return;
    };
    let Ok(info) = inspect_ca_certificate(pem) else {
        return;
    };
    if let Err(reason) = CaCertificate::check_not_expired(&info, SystemTime::now()) {
        errors.push(FieldError::new("cert", reason));
    }
    map.insert("cert_digest".into(), Value::from(info.digest));
}

/// Checks the plugin name and replaces `config` by its normalised form (defaults filled).
fn prepare_plugin(map: &mut Map<String, Value>, errors: &mut Vec<FieldError>) {
    let Some(Value::String(name)) = map.get("name") else {
        return;
    };
    if !PLUGIN_NAMES.contains(&name.as_str()) {
        errors.push(FieldError::new("name", unknown_plugin(name)));
        return;
    }
    let config = map.get("config").cloned().unwrap_or(Value::Null);
    match normalize_plugin_config(name, &config) {
        Ok(config) => {
            map.insert("config".into(), config);
        }
        Err(errs) => errors.extend(errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        let (p, h, port, path) = split_url("http://h").expect("ok");
        assert_eq!((p, h.as_str(), port, path), (Protocol::Http, "h", 80, None));
        let (p, _, port, path) = split_url("https://h/v1?x=/y").expect("ok");
        assert_eq!(
            (p, port, path.as_deref()),
            (Protocol::Https, 443, Some("/v1"))
        );
        let (_, _, port, path) = split_url("grpc://h:50051/").expect("ok");
        assert_eq!((port, path.as_deref()), (50051, Some("/")));
        assert!(split_url("ftp://h").is_err());
        assert!(split_url("not a url").is_err());
    }
}
