//! TLS certificates and the server names (SNIs) pointing at them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Entity, EntityKind, EntityRef, FieldError, OnDelete, Reference};
use crate::validate::{check_sni_name, check_tags, Errors};

/// A certificate and its private key (PEM), optionally with an alternate pair (e.g. ECDSA
/// next to RSA). Fields in alphabetical order (canonical JSON).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Certificate {
    /// PEM certificate (chain). Required.
    pub cert: String,
    /// Alternate PEM certificate.
    pub cert_alt: Option<String>,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// PEM private key. Required.
    pub key: String,
    /// Alternate PEM private key.
    pub key_alt: Option<String>,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// Private keys are secrets: Debug output (logs, panics) must not leak them.
impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("cert", &self.cert)
            .field("cert_alt", &self.cert_alt)
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("key_alt", &self.key_alt.as_ref().map(|_| "<redacted>"))
            .field("tags", &self.tags)
            .finish()
    }
}

/// Does `text` hold a PEM block whose label ends with `label`?
fn has_pem_block(text: &str, label: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        line.strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    }) && text.contains("-----END ")
}

fn check_cert(errors: &mut Errors, field: &str, pem: &str) {
    if pem.trim().is_empty() {
        errors.add(field, "required field missing");
    } else if !has_pem_block(pem, "CERTIFICATE")
        || !pem.trim_start().starts_with("-----BEGIN CERTIFICATE-----")
    {
        errors.add(
            field,
            "invalid certificate: not a PEM \"-----BEGIN CERTIFICATE-----\" block",
        );
    }
}

fn check_key(errors: &mut Errors, field: &str, pem: &str) {
    if pem.trim().is_empty() {
        errors.add(field, "required field missing");
    } else if !has_pem_block(pem, "PRIVATE KEY") {
        errors.add(field, "invalid key: not a PEM \"PRIVATE KEY\" block");
    }
}

impl Entity for Certificate {
    const KIND: EntityKind = EntityKind::Certificate;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        check_cert(&mut errors, "cert", &self.cert);
        check_key(&mut errors, "key", &self.key);
        match (&self.cert_alt, &self.key_alt) {
            (Some(cert), Some(key)) => {
                check_cert(&mut errors, "cert_alt", cert);
                check_key(&mut errors, "key_alt", key);
            }
            (Some(_), None) => errors.add("key_alt", "required when 'cert_alt' is set"),
            (None, Some(_)) => errors.add("cert_alt", "required when 'key_alt' is set"),
            (None, None) => {}
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}

/// A server name served with a certificate. Fields in alphabetical order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Sni {
    /// The certificate served for this name. Required.
    pub certificate: Option<EntityRef>,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// Host name; a wildcard may be the leftmost label. Required, unique.
    pub name: String,
    /// Free-form tags.
    pub tags: Vec<String>,
}

impl Entity for Sni {
    const KIND: EntityKind = EntityKind::Sni;

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
            "certificate",
            EntityKind::Certificate,
            self.certificate.as_ref(),
            OnDelete::Cascade,
        )
        .into_iter()
        .collect()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.name.is_empty() {
            errors.add("name", "required field missing");
        } else if let Err(reason) = check_sni_name(&self.name) {
            errors.add("name", reason);
        }
        if self.certificate.is_none() {
            errors.add("certificate", "required field missing");
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}
