//! Typed configurations of the supported plugins, with Kong 3.x field names and defaults.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::PluginConfig;
use crate::entity::FieldError;
use crate::validate::Errors;

/// `key-auth`: authenticate consumers by API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KeyAuthConfig {
    /// Consumer (id or username) used when authentication fails; null rejects instead.
    pub anonymous: Option<String>,
    /// Whether the key is removed from the request before proxying (default false).
    pub hide_credentials: bool,
    /// Look for the key in the request body (default false).
    pub key_in_body: bool,
    /// Look for the key in headers (default true).
    pub key_in_header: bool,
    /// Look for the key in the query string (default true).
    pub key_in_query: bool,
    /// Header/query/body names holding the key (default ["apikey"]).
    pub key_names: Vec<String>,
    /// Realm sent in `WWW-Authenticate` on failure.
    pub realm: Option<String>,
    /// Whether CORS preflight requests are authenticated too (default true).
    pub run_on_preflight: bool,
}

impl Default for KeyAuthConfig {
    fn default() -> Self {
        Self {
            anonymous: None,
            hide_credentials: false,
            key_in_body: false,
            key_in_header: true,
            key_in_query: true,
            key_names: vec!["apikey".into()],
            realm: None,
            run_on_preflight: true,
        }
    }
}

impl PluginConfig for KeyAuthConfig {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.key_names.is_empty() {
            errors.add("key_names", "length must be at least 1");
        }
        for (i, name) in self.key_names.iter().enumerate() {
            // Key names travel as header names, so they must be valid tokens.
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                errors.add(
                    format!("key_names[{i}]"),
                    "bad header name, allowed characters are A-Z, a-z, 0-9, '_', '-' and '.'",
                );
            }
        }
        errors.finish()
    }
}

/// What `rate-limiting` counts requests by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitBy {
    /// The authenticated consumer (falls back to the IP) — default.
    #[default]
    Consumer,
    /// The credential used.
    Credential,
    /// The client IP.
    Ip,
    /// The service.
    Service,
    /// The value of `header_name`.
    Header,
    /// The request path `path`.
    Path,
}

/// Where `rate-limiting` keeps its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// In the gateway's memory (default).
    #[default]
    Local,
    /// In the cluster's database.
    Cluster,
    /// In Redis.
    Redis,
}

/// `rate-limiting`: limit requests per time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Requests per day.
    pub day: Option<f64>,
    /// Status returned when limited (default 429).
    pub error_code: u16,
    /// Message returned when limited.
    pub error_message: String,
    /// Whether requests are proxied when the counter store fails (default true).
    pub fault_tolerant: bool,
    /// Header counted when `limit_by` is "header".
    pub header_name: Option<String>,
    /// Whether the `RateLimit-*` headers are hidden (default false).
    pub hide_client_headers: bool,
    /// Requests per hour.
    pub hour: Option<f64>,
    /// What requests are counted by (default consumer).
    #[schema(inline)]
    pub limit_by: LimitBy,
    /// Requests per minute.
    pub minute: Option<f64>,
    /// Requests per month.
    pub month: Option<f64>,
    /// Path counted when `limit_by` is "path".
    pub path: Option<String>,
    /// Counter store (default local).
    #[schema(inline)]
    pub policy: Policy,
    /// Requests per second.
    pub second: Option<f64>,
    /// Seconds between counter syncs; -1 syncs synchronously (default -1).
    pub sync_rate: f64,
    /// Requests per year.
    pub year: Option<f64>,
}

impl Default for RateLimitingConfig {
    fn default() -> Self {
        Self {
            day: None,
            error_code: 429,
            error_message: "API rate limit exceeded".into(),
            fault_tolerant: true,
            header_name: None,
            hide_client_headers: false,
            hour: None,
            limit_by: LimitBy::Consumer,
            minute: None,
            month: None,
            path: None,
            policy: Policy::Local,
            second: None,
            sync_rate: -1.0,
            year: None,
        }
    }
}

impl PluginConfig for RateLimitingConfig {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        let windows = [
            ("second", self.second),
            ("minute", self.minute),
            ("hour", self.hour),
            ("day", self.day),
            ("month", self.month),
            ("year", self.year),
        ];
        let mut previous: Option<(&str, f64)> = None;
        for (field, value) in windows {
            let Some(value) = value else { continue };
            if value <= 0.0 || !value.is_finite() {
                errors.add(field, "value must be greater than 0");
                continue;
            }
            // A longer window can never allow fewer requests than a shorter one (Kong).
            if let Some((shorter, limit)) = previous {
                if value < limit {
                    errors.add(field, format!("the limit for {field} ({value}) cannot be lower than the limit for {shorter} ({limit})"));
                }
            }
            previous = Some((field, value));
        }
        if windows.iter().all(|(_, v)| v.is_none()) {
            errors.add("@entity", "at least one of these fields must be non-empty: 'second', 'minute', 'hour', 'day', 'month', 'year'");
        }
        if self.limit_by == LimitBy::Header && self.header_name.as_deref().is_none_or(str::is_empty)
        {
            errors.add(
                "header_name",
                "required field missing when 'limit_by' is 'header'",
            );
        }
        if self.limit_by == LimitBy::Path && self.path.as_deref().is_none_or(str::is_empty) {
            errors.add("path", "required field missing when 'limit_by' is 'path'");
        }
        if let Some(path) = &self.path {
            if !path.starts_with('/') {
                errors.add("path", "should start with: /");
            }
        }
        if !(100..=999).contains(&self.error_code) {
            errors.add("error_code", "value should be between 100 and 999");
        }
        if self.sync_rate != -1.0 && (self.sync_rate < 0.0 || !self.sync_rate.is_finite()) {
            errors.add("sync_rate", "value must be -1 or at least 0");
        }
        // Errors are reported at `config` level for the entity-wide check.
        for e in &mut errors.0 {
            if e.field == "@entity" {
                e.field.clear();
            }
        }
        errors.finish()
    }
}

/// HTTP methods the `cors` plugin accepts.
const CORS_METHODS: [&str; 9] = [
    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

/// `cors`: answer CORS preflights and add CORS headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Whether `Access-Control-Allow-Credentials` is sent (default false).
    pub credentials: bool,
    /// `Access-Control-Expose-Headers` values.
    pub exposed_headers: Option<Vec<String>>,
    /// `Access-Control-Allow-Headers` values (null: echo the request's).
    pub headers: Option<Vec<String>>,
    /// Seconds a preflight may be cached.
    pub max_age: Option<u32>,
    /// `Access-Control-Allow-Methods` values.
    pub methods: Vec<String>,
    /// Allowed origins (exact or regex); null allows any.
    pub origins: Option<Vec<String>>,
    /// Whether preflights are proxied upstream (default false).
    pub preflight_continue: bool,
    /// Whether `Access-Control-Allow-Private-Network` is sent (default false).
    pub private_network: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            credentials: false,
            exposed_headers: None,
            headers: None,
            max_age: None,
            methods: CORS_METHODS.iter().map(|m| (*m).to_string()).collect(),
            origins: None,
            preflight_continue: false,
            private_network: false,
        }
    }
}

impl PluginConfig for CorsConfig {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        for (i, method) in self.methods.iter().enumerate() {
            if !CORS_METHODS.contains(&method.as_str()) {
                errors.add(
                    format!("methods[{i}]"),
                    format!("expected one of: {}", CORS_METHODS.join(", ")),
                );
            }
        }
        for (i, origin) in self.origins.iter().flatten().enumerate() {
            if origin.is_empty() {
                errors.add(format!("origins[{i}]"), "must not be empty");
            }
        }
        errors.finish()
    }
}

/// Unit of `allowed_payload_size`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SizeUnit {
    /// Megabytes (default).
    #[default]
    Megabytes,
    /// Kilobytes.
    Kilobytes,
    /// Bytes.
    Bytes,
}

/// `request-size-limiting`: refuse request bodies above a size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RequestSizeLimitingConfig {
    /// Largest allowed body, in `size_unit` (default 128).
    pub allowed_payload_size: u32,
    /// Whether requests without `Content-Length` are refused (default false).
    pub require_content_length: bool,
    /// Unit of `allowed_payload_size` (default megabytes).
    #[schema(inline)]
    pub size_unit: SizeUnit,
}

impl Default for RequestSizeLimitingConfig {
    fn default() -> Self {
        Self {
            allowed_payload_size: 128,
            require_content_length: false,
            size_unit: SizeUnit::Megabytes,
        }
    }
}

impl PluginConfig for RequestSizeLimitingConfig {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}
