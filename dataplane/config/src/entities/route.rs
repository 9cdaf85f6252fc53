//! The Route entity: matching rules that send requests to a service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::service::Protocol;
use crate::entity::{Entity, EntityKind, EntityRef, FieldError, OnDelete, Reference};
use crate::validate::{check_name, check_route_host, check_sni_name, check_tags, Errors};

/// How a route's matched path is combined with the service's path.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PathHandling {
    /// Kong's original behaviour (default).
    #[default]
    V0,
    /// Concatenation without slash collapsing changes.
    V1,
}

/// A Kong route. Fields are declared in alphabetical order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Route {
    /// Stream routes: destination IPs/ports (`{"ip": ..., "port": ...}`).
    #[serde(serialize_with = "crate::canonical::sorted_values")]
    pub destinations: Option<Vec<serde_json::Value>>,
    /// Header name -> accepted values. `Host` is not allowed (use `hosts`).
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Host names matched; a wildcard may be the leftmost or rightmost label.
    pub hosts: Option<Vec<String>>,
    /// Status of the redirect to HTTPS (426, 301, 302, 307 or 308; default 426).
    pub https_redirect_status_code: u16,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// HTTP methods matched.
    pub methods: Option<Vec<String>>,
    /// Unique name.
    pub name: Option<String>,
    /// Path handling algorithm (default v0).
    pub path_handling: PathHandling,
    /// Path prefixes matched; a leading "~" makes the rest a regex.
    pub paths: Option<Vec<String>>,
    /// Whether the client's Host header is sent upstream (default false).
    pub preserve_host: bool,
    /// Protocols matched (default http, https).
    pub protocols: Vec<Protocol>,
    /// Priority among regex paths (default 0).
    pub regex_priority: i64,
    /// Whether request bodies are buffered (default true).
    pub request_buffering: bool,
    /// Whether response bodies are buffered (default true).
    pub response_buffering: bool,
    /// The service requests are sent to.
    pub service: Option<EntityRef>,
    /// TLS server names matched.
    pub snis: Option<Vec<String>>,
    /// Stream routes: source IPs/ports (`{"ip": ..., "port": ...}`).
    #[serde(serialize_with = "crate::canonical::sorted_values")]
    pub sources: Option<Vec<serde_json::Value>>,
    /// Whether the matched path prefix is removed before proxying (default true).
    pub strip_path: bool,
    /// Free-form tags.
    pub tags: Vec<String>,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            destinations: None,
            headers: None,
            hosts: None,
            https_redirect_status_code: 426,
            id: Uuid::nil(),
            methods: None,
            name: None,
            path_handling: PathHandling::V0,
            paths: None,
            preserve_host: false,
            protocols: vec![Protocol::Http, Protocol::Https],
            regex_priority: 0,
            request_buffering: true,
            response_buffering: true,
            service: None,
            snis: None,
            sources: None,
            strip_path: true,
            tags: Vec::new(),
        }
    }
}

/// Redirect statuses Kong accepts.
const REDIRECT_CODES: [u16; 5] = [426, 301, 302, 307, 308];

/// Is an optional list present and non-empty?
fn set<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

impl Route {
    fn check_paths(&self, errors: &mut Errors) {
        for (i, path) in self.paths.iter().flatten().enumerate() {
            let field = format!("paths[{i}]");
            if let Some(pattern) = path.strip_prefix('~') {
                if let Err(err) = regex::Regex::new(pattern) {
                    // The regex crate's message spans several lines; keep it on one.
                    let msg = err.to_string().replace('\n', " ");
                    errors.add(field, format!("invalid regex: '{pattern}': {msg}"));
                }
            } else if !path.starts_with('/') {
                errors.add(
                    field,
                    "should start with: / (fixed path) or ~/ (regex path)",
                );
            }
        }
    }

    fn check_matchers(&self, errors: &mut Errors) {
        for (i, method) in self.methods.iter().flatten().enumerate() {
            if method.is_empty() || !method.chars().all(|c| c.is_ascii_uppercase()) {
                errors.add(
                    format!("methods[{i}]"),
                    format!("invalid value: '{method}': must be an uppercase HTTP method"),
                );
            }
        }
        for (i, host) in self.hosts.iter().flatten().enumerate() {
            if let Err(reason) = check_route_host(host) {
                errors.add(format!("hosts[{i}]"), reason);
            }
        }
        for (name, values) in self.headers.iter().flatten() {
            let field = format!("headers.{name}");
            if name.eq_ignore_ascii_case("host") {
                errors.add(field, "cannot contain 'host' header, which must be specified in the 'hosts' attribute");
            } else if name.is_empty() || values.is_empty() {
                errors.add(field, "a header needs a name and at least one value");
            }
        }
        for (i, sni) in self.snis.iter().flatten().enumerate() {
            if let Err(reason) = check_sni_name(sni) {
                errors.add(format!("snis[{i}]"), reason);
            }
        }
    }
}

impl Entity for Route {
    const KIND: EntityKind = EntityKind::Route;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        self.name.iter().map(|n| ("name", n.clone())).collect()
    }

    fn references(&self) -> Vec<Reference> {
        Reference::from_ref(
            "service",
            EntityKind::Service,
            self.service.as_ref(),
            OnDelete::Restrict,
        )
        .into_iter()
        .collect()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        check_name(&mut errors, "name", self.name.as_deref());
        if self.protocols.is_empty() {
            errors.add("protocols", "length must be at least 1");
        }
        let http = self.protocols.iter().any(|p| p.is_http());
        let stream = self.protocols.iter().any(|p| !p.is_http());
        if http && stream {
            errors.add(
                "protocols",
                "mixing http(s)/grpc(s) and tcp/tls/udp protocols is not supported",
            );
        }
        if !REDIRECT_CODES.contains(&self.https_redirect_status_code) {
            errors.add(
                "https_redirect_status_code",
                "expected one of: 426, 301, 302, 307, 308",
            );
        }
        self.check_paths(&mut errors);
        self.check_matchers(&mut errors);
        let has_headers = self.headers.as_ref().is_some_and(|h| !h.is_empty());
        if http
            && !(set(&self.methods) || set(&self.hosts) || set(&self.paths) || has_headers)
            && !set(&self.snis)
        {
            errors.add(
                "@entity",
                "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http' or 'https'",
            );
        }
        if stream && !(set(&self.sources) || set(&self.destinations) || set(&self.snis)) {
            errors.add(
                "@entity",
                "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'",
            );
        }
        if stream {
            for (field, present) in [
                ("methods", self.methods.is_some()),
                ("paths", self.paths.is_some()),
                ("headers", self.headers.is_some()),
            ] {
                if present {
                    errors.add(
                        field,
                        "cannot be set when 'protocols' is 'tcp', 'tls' or 'udp'",
                    );
                }
            }
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}
