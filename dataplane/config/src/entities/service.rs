//! The Service entity: an upstream API Kong proxies to.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Entity, EntityKind, EntityRef, FieldError, OnDelete, Reference};
use crate::validate::{check_name, check_tags, is_host, Errors};

/// Protocols of services, routes and plugins (Kong's names, lowercase).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
    /// gRPC over plain HTTP/2.
    Grpc,
    /// gRPC over TLS.
    Grpcs,
    /// Raw TCP.
    Tcp,
    /// TCP over TLS.
    Tls,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Every protocol, for messages.
    pub const ALL: [Protocol; 7] = [
        Protocol::Http,
        Protocol::Https,
        Protocol::Grpc,
        Protocol::Grpcs,
        Protocol::Tcp,
        Protocol::Tls,
        Protocol::Udp,
    ];

    /// Kong's name of the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Udp => "udp",
        }
    }

    /// The protocol named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Is this an HTTP-family protocol (where paths, methods and headers apply)?
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Https | Protocol::Grpc | Protocol::Grpcs
        )
    }

    /// The port a URL of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Https | Protocol::Grpcs | Protocol::Tls => 443,
            _ => 80,
        }
    }
}

/// A Kong service. Fields are declared in alphabetical order because the canonical JSON
/// relies on serde writing struct fields in declaration order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Service {
    /// CA certificates (ids) the upstream's certificate must chain to when `tls_verify` is
    /// true; unset or empty: the Mozilla roots.
    pub ca_certificates: Option<Vec<Uuid>>,
    /// Client certificate presented to the upstream (mTLS).
    pub client_certificate: Option<EntityRef>,
    /// Connect timeout in milliseconds (1..=2147483646, default 60000).
    pub connect_timeout: u32,
    /// Whether the service is proxied to (default true).
    pub enabled: bool,
    /// Upstream host (hostname, IP or an upstream's name). Required.
    pub host: String,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// Unique name.
    pub name: Option<String>,
    /// Path prefix used in requests to the upstream; starts with "/".
    pub path: Option<String>,
    /// Upstream port (default 80).
    pub port: u16,
    /// Protocol used to talk to the upstream (default http).
    pub protocol: Protocol,
    /// Read timeout in milliseconds (1..=2147483646, default 60000).
    pub read_timeout: u32,
    /// Retries on proxy failure (0..=32767, default 5).
    pub retries: u16,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Whether the upstream's TLS certificate is verified (null: the gateway's default).
    pub tls_verify: Option<bool>,
    /// Maximum depth of the upstream's certificate chain when verifying (0..=64).
    pub tls_verify_depth: Option<u8>,
    /// Write timeout in milliseconds (1..=2147483646, default 60000).
    pub write_timeout: u32,
}

/// Kong's default timeout, in milliseconds.
const DEFAULT_TIMEOUT: u32 = 60_000;
/// Kong's maximum timeout (2^31 - 2 ms).
const MAX_TIMEOUT: u32 = 2_147_483_646;
/// Kong's maximum number of retries (2^15 - 1).
const MAX_RETRIES: u16 = 32_767;

impl Default for Service {
    fn default() -> Self {
        Self {
            ca_certificates: None,
            client_certificate: None,
            connect_timeout: DEFAULT_TIMEOUT,
            enabled: true,
            host: String::new(),
            id: Uuid::nil(),
            name: None,
            path: None,
            port: 80,
            protocol: Protocol::Http,
            read_timeout: DEFAULT_TIMEOUT,
            retries: 5,
            tags: Vec::new(),
            tls_verify: None,
            tls_verify_depth: None,
            write_timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Entity for Service {
    const KIND: EntityKind = EntityKind::Service;

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
        let mut refs: Vec<Reference> = Reference::from_ref(
            "client_certificate",
            EntityKind::Certificate,
            self.client_certificate.as_ref(),
            OnDelete::Restrict,
        )
        .into_iter()
        .collect();
        // Kong refuses to delete a CA certificate a service still trusts.
        for (i, id) in self.ca_certificates.iter().flatten().enumerate() {
            refs.push(Reference {
                field: Cow::Owned(format!("ca_certificates[{i}]")),
                kind: EntityKind::CaCertificate,
                id: *id,
                on_delete: OnDelete::Restrict,
            });
        }
        refs
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        check_name(&mut errors, "name", self.name.as_deref());
        if self.host.is_empty() {
            errors.add("host", "required field missing");
        } else if !is_host(&self.host) {
            errors.add("host", format!("invalid hostname: '{}'", self.host));
        }
        if let Some(path) = &self.path {
            if !path.starts_with('/') {
                errors.add("path", "should start with: /");
            } else if path.contains("//") {
                errors.add("path", "must not have empty segments");
            }
            if !self.protocol.is_http() {
                errors.add(
                    "path",
                    "value must be null: path can only be set when protocol is 'http', 'https', 'grpc' or 'grpcs'",
                );
            }
        }
        if self.retries > MAX_RETRIES {
            errors.add(
                "retries",
                format!("value should be between 0 and {MAX_RETRIES}"),
            );
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if !(1..=MAX_TIMEOUT).contains(&value) {
                errors.add(
                    field,
                    format!("value should be between 1 and {MAX_TIMEOUT}"),
                );
            }
        }
        if let Some(depth) = self.tls_verify_depth {
            if depth > 64 {
                errors.add("tls_verify_depth", "value should be between 0 and 64");
            }
        }
        if self.client_certificate.is_some()
            && !matches!(self.protocol, Protocol::Https | Protocol::Tls)
        {
            errors.add(
                "client_certificate",
                "value must be null: client_certificate can only be set when protocol is 'https' or 'tls'",
            );
        }
        if let Some(cas) = &self.ca_certificates {
            if !matches!(
                self.protocol,
                Protocol::Https | Protocol::Grpcs | Protocol::Tls
            ) {
                errors.add(
                    "ca_certificates",
                    "value must be null: ca_certificates can only be set when protocol is 'https', 'grpcs' or 'tls'",
                );
            }
            for (i, id) in cas.iter().enumerate() {
                if cas[..i].contains(id) {
                    errors.add(
                        format!("ca_certificates[{i}]"),
                        "duplicate CA certificate id",
                    );
                }
            }
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}
