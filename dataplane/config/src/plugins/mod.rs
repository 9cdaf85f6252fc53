//! The plugins this control plane supports, with their typed configurations.
//!
//! A plugin's `config` is stored as JSON on the [`crate::Plugin`] entity; this module checks
//! it against the typed struct (Kong's field names and defaults), fills the defaults and
//! publishes each config's JSON Schema.

mod configs;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use utoipa::PartialSchema;

use crate::entity::FieldError;
use crate::parse::{deserialize_at, strip_nulls};

pub use configs::{
    CorsConfig, KeyAuthConfig, LimitBy, Policy, RateLimitingConfig, RequestSizeLimitingConfig,
    SizeUnit,
};

/// Names of the plugins this control plane supports.
pub const PLUGIN_NAMES: &[&str] = &["key-auth", "rate-limiting", "cors", "request-size-limiting"];

/// A typed plugin configuration.
pub trait PluginConfig: Serialize + DeserializeOwned + PartialSchema {
    /// Checks beyond types and ranges serde enforces; paths are relative to `config`.
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

/// JSON Schema of the named plugin's `config`, or `None` for an unknown plugin.
pub fn plugin_schema(name: &str) -> Option<Value> {
    let schema = match name {
        "key-auth" => KeyAuthConfig::schema(),
        "rate-limiting" => RateLimitingConfig::schema(),
        "cors" => CorsConfig::schema(),
        "request-size-limiting" => RequestSizeLimitingConfig::schema(),
        _ => return None,
    };
    serde_json::to_value(schema).ok()
}

/// Checks the named plugin's `config` and returns it with Kong's defaults filled in. Field
/// paths in errors start with "config.". A `null` config means "all defaults".
pub fn normalize_plugin_config(name: &str, config: &Value) -> Result<Value, Vec<FieldError>> {
    match name {
        "key-auth" => normalize::<KeyAuthConfig>(config),
        "rate-limiting" => normalize::<RateLimitingConfig>(config),
        "cors" => normalize::<CorsConfig>(config),
        "request-size-limiting" => normalize::<RequestSizeLimitingConfig>(config),
        _ => Err(vec![FieldError::new(
            "name",
            crate::entities::unknown_plugin(name),
        )]),
    }
}

fn normalize<T: PluginConfig>(config: &Value) -> Result<Value, Vec<FieldError>> {
    let mut map = match config {
        Value::Null => serde_json::Map::new(),
        Value::Object(map) => map.clone(),
        _ => return Err(vec![FieldError::new("config", "expected a record")]),
    };
    // Kong treats an explicit null as "use the default".
    strip_nulls(&mut map);
    let typed: T = deserialize_at(&Value::Object(map)).map_err(|e| vec![e.prefixed("config")])?;
    typed.validate().map_err(|errs| {
        errs.into_iter()
            .map(|e| e.prefixed("config"))
            .collect::<Vec<_>>()
    })?;
    serde_json::to_value(&typed)
        .map_err(|e| vec![FieldError::new("config", format!("cannot encode: {e}"))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_filled() {
        let v = normalize_plugin_config("rate-limiting", &json!({"minute": 5})).expect("valid");
        assert_eq!(v["policy"], "local");
        assert_eq!(v["limit_by"], "consumer");
        assert_eq!(v["error_code"], 429);
        assert_eq!(v["error_message"], "API rate limit exceeded");
        assert_eq!(v["minute"], 5.0);
        assert_eq!(v["second"], Value::Null);
        let v = normalize_plugin_config("key-auth", &Value::Null).expect("valid");
        assert_eq!(v["key_names"], json!(["apikey"]));
        assert_eq!(v["key_in_header"], true);
        let v = normalize_plugin_config("cors", &json!({})).expect("valid");
        assert_eq!(v["methods"].as_array().map(Vec::len), Some(9));
        let v = normalize_plugin_config("request-size-limiting", &json!({})).expect("valid");
        assert_eq!(v["allowed_payload_size"], 128);
        assert_eq!(v["size_unit"], "megabytes");
    }

    #[test]
    fn bad_fields_are_named_under_config() {
        let errs = normalize_plugin_config("rate-limiting", &json!({"minute": "lots"}))
            .expect_err("invalid");
        assert_eq!(errs[0].field, "config.minute");
        let errs = normalize_plugin_config("rate-limiting", &json!({})).expect_err("invalid");
        assert_eq!(errs[0].field, "config");
        let errs = normalize_plugin_config("rate-limiting", &json!({"second": 10, "minute": 5}))
            .expect_err("invalid");
        assert_eq!(errs[0].field, "config.minute");
        let errs =
            normalize_plugin_config("rate-limiting", &json!({"minute": -1})).expect_err("invalid");
        assert_eq!(errs[0].field, "config.minute");
        let errs = normalize_plugin_config("key-auth", &json!({"key_namez": []})).expect_err("x");
        assert_eq!(errs[0].field, "config.key_namez");
        let errs = normalize_plugin_config("cors", &json!({"methods": ["FETCH"]})).expect_err("x");
        assert_eq!(errs[0].field, "config.methods[0]");
        let errs = normalize_plugin_config("nope", &json!({})).expect_err("unknown");
        assert_eq!(errs[0].field, "name");
    }

    #[test]
    fn schemas_exist_for_every_plugin() {
        for name in PLUGIN_NAMES {
            let schema = plugin_schema(name).expect("schema");
            assert!(schema["properties"].is_object(), "{name}: {schema}");
        }
        assert!(plugin_schema("nope").is_none());
        let rl = plugin_schema("rate-limiting").expect("schema");
        assert!(
            rl["properties"]["limit_by"]["oneOf"][0]["enum"].is_array(),
            "{rl}"
        );
    }
}
