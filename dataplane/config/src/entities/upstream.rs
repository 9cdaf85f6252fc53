//! Upstreams (load-balanced virtual hosts) and their targets. The health-check section lives
//! in `healthchecks.rs`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::healthchecks::Healthchecks;
use crate::entity::{Entity, EntityKind, EntityRef, FieldError, OnDelete, Reference};
use crate::validate::{check_tags, is_hostname, split_host_port, Errors};

/// Load-balancing algorithm of an upstream.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Weighted round robin (default).
    #[default]
    RoundRobin,
    /// Consistent hashing on `hash_on`.
    ConsistentHashing,
    /// Fewest active connections.
    LeastConnections,
    /// Lowest latency.
    Latency,
}

/// Values Kong accepts for `hash_on` / `hash_fallback`.
const HASH_ON: [&str; 8] = [
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];

/// A Kong upstream. Fields are declared in alphabetical order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Upstream {
    /// Load-balancing algorithm (default round-robin).
    pub algorithm: Algorithm,
    /// Client certificate presented to targets (mTLS).
    pub client_certificate: Option<EntityRef>,
    /// Hash input used when `hash_on` yields nothing (default "none").
    pub hash_fallback: String,
    /// Header used when `hash_fallback` is "header".
    pub hash_fallback_header: Option<String>,
    /// Query argument used when `hash_fallback` is "query_arg".
    pub hash_fallback_query_arg: Option<String>,
    /// URI capture used when `hash_fallback` is "uri_capture".
    pub hash_fallback_uri_capture: Option<String>,
    /// Hash input for consistent hashing (default "none").
    pub hash_on: String,
    /// Cookie used when `hash_on` is "cookie".
    pub hash_on_cookie: Option<String>,
    /// Path of the cookie set when `hash_on` is "cookie" (default "/").
    pub hash_on_cookie_path: Option<String>,
    /// Header used when `hash_on` is "header".
    pub hash_on_header: Option<String>,
    /// Query argument used when `hash_on` is "query_arg".
    pub hash_on_query_arg: Option<String>,
    /// URI capture used when `hash_on` is "uri_capture".
    pub hash_on_uri_capture: Option<String>,
    /// Active and passive health checks.
    pub healthchecks: Healthchecks,
    /// Host header sent to targets.
    pub host_header: Option<String>,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// Unique host name services use to point at this upstream. Required.
    pub name: String,
    /// Slots of the consistent-hashing ring (10..=65536, default 10000).
    pub slots: u32,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Whether the SRV record's name is used as the Host header.
    pub use_srv_name: bool,
}

impl Default for Upstream {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::RoundRobin,
            client_certificate: None,
            hash_fallback: "none".into(),
            hash_fallback_header: None,
            hash_fallback_query_arg: None,
            hash_fallback_uri_capture: None,
            hash_on: "none".into(),
            hash_on_cookie: None,
            hash_on_cookie_path: Some("/".into()),
            hash_on_header: None,
            hash_on_query_arg: None,
            hash_on_uri_capture: None,
            healthchecks: Healthchecks::default(),
            host_header: None,
            id: Uuid::nil(),
            name: String::new(),
            slots: 10_000,
            tags: Vec::new(),
            use_srv_name: false,
        }
    }
}

impl Upstream {
    fn check_hashing(&self, errors: &mut Errors) {
        for (field, value) in [
            ("hash_on", &self.hash_on),
            ("hash_fallback", &self.hash_fallback),
        ] {
            if !HASH_ON.contains(&value.as_str()) {
                errors.add(field, format!("expected one of: {}", HASH_ON.join(", ")));
            }
        }
        // Each hashing input needs its parameter, as in Kong's entity checks.
        let needs =
            |value: &str, param: &Option<String>, kind: &str, field: &str, errors: &mut Errors| {
                if value == kind && param.as_deref().is_none_or(str::is_empty) {
                    errors.add(
                        field,
                        format!("required field missing when the hash input is '{kind}'"),
                    );
                }
            };
        needs(
            &self.hash_on,
            &self.hash_on_header,
            "header",
            "hash_on_header",
            errors,
        );
        needs(
            &self.hash_on,
            &self.hash_on_cookie,
            "cookie",
            "hash_on_cookie",
            errors,
        );
        needs(
            &self.hash_on,
            &self.hash_on_query_arg,
            "query_arg",
            "hash_on_query_arg",
            errors,
        );
        needs(
            &self.hash_on,
            &self.hash_on_uri_capture,
            "uri_capture",
            "hash_on_uri_capture",
            errors,
        );
        needs(
            &self.hash_fallback,
            &self.hash_fallback_header,
            "header",
            "hash_fallback_header",
            errors,
        );
        needs(
            &self.hash_fallback,
            &self.hash_fallback_query_arg,
            "query_arg",
            "hash_fallback_query_arg",
            errors,
        );
        needs(
            &self.hash_fallback,
            &self.hash_fallback_uri_capture,
            "uri_capture",
            "hash_fallback_uri_capture",
            errors,
        );
        if self.hash_on == "none" && self.hash_fallback != "none" {
            errors.add("hash_fallback", "must be 'none' when 'hash_on' is 'none'");
        }
        if self.hash_on == "cookie" && self.hash_fallback != "none" {
            errors.add("hash_fallback", "must be 'none' when 'hash_on' is 'cookie'");
        }
        if self.hash_on != "none"
            && self.hash_on == self.hash_fallback
            && !matches!(
                self.hash_on.as_str(),
                "header" | "query_arg" | "uri_capture"
            )
        {
            errors.add("hash_fallback", "must differ from 'hash_on'");
        }
        if let Some(path) = &self.hash_on_cookie_path {
            if !path.starts_with('/') {
                errors.add("hash_on_cookie_path", "should start with: /");
            }
        }
    }
}

impl Entity for Upstream {
    const KIND: EntityKind = EntityKind::Upstream;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        vec![("name", self.name.clone())]
    }

    fn references(&self) -> Vec<Reference> {
        Reference::from_ref(
            "client_certificate",
            EntityKind::Certificate,
            self.client_certificate.as_ref(),
            OnDelete::Restrict,
        )
        .into_iter()
        .collect()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.name.is_empty() {
            errors.add("name", "required field missing");
        } else if !is_hostname(&self.name) {
            errors.add("name", format!("invalid hostname: '{}'", self.name));
        }
        if !(10..=65_536).contains(&self.slots) {
            errors.add("slots", "value should be between 10 and 65536");
        }
        self.check_hashing(&mut errors);
        if let Err(errs) = self.healthchecks.validate() {
            errors.extend_prefixed("healthchecks", errs);
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}

/// A backend address of an upstream. Fields in alphabetical order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    /// Id; nil until assigned.
    pub id: Uuid,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// "host:port" (the port defaults to 8000 when a request leaves it out). Required.
    pub target: String,
    /// The upstream this target belongs to. Required.
    pub upstream: Option<EntityRef>,
    /// Share of traffic (0..=65535, default 100; 0 disables the target).
    pub weight: u16,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            id: Uuid::nil(),
            tags: Vec::new(),
            target: String::new(),
            upstream: None,
            weight: 100,
        }
    }
}

/// Kong's default port for a target given without one.
pub(crate) const DEFAULT_TARGET_PORT: u16 = 8000;

/// Appends Kong's default port to a target without one (`host` -> `host:8000`,
/// `::1` -> `[::1]:8000`).
pub(crate) fn normalize_target(target: &str) -> String {
    if target.is_empty() {
        return String::new();
    }
    match split_host_port(target) {
        (_, Some(_)) => target.to_string(),
        (host, None) if host.contains(':') && !host.starts_with('[') => {
            format!("[{host}]:{DEFAULT_TARGET_PORT}")
        }
        (host, None) => format!("{host}:{DEFAULT_TARGET_PORT}"),
    }
}

impl Entity for Target {
    const KIND: EntityKind = EntityKind::Target;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        let upstream = self
            .upstream
            .map(|u| u.id.to_string())
            .unwrap_or_else(|| "-".into());
        vec![("target", format!("{upstream}/{}", self.target))]
    }

    fn references(&self) -> Vec<Reference> {
        Reference::from_ref(
            "upstream",
            EntityKind::Upstream,
            self.upstream.as_ref(),
            OnDelete::Cascade,
        )
        .into_iter()
        .collect()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.upstream.is_none() {
            errors.add("upstream", "required field missing");
        }
        if self.target.is_empty() {
            errors.add("target", "required field missing");
        } else {
            let (host, port) = split_host_port(&self.target);
            if !crate::validate::is_host(host) {
                errors.add(
                    "target",
                    format!("invalid target: '{}': bad host", self.target),
                );
            }
            match port {
                Some(Ok(_)) | None => {}
                Some(Err(())) => errors.add(
                    "target",
                    format!("invalid target: '{}': bad port", self.target),
                ),
            }
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}
