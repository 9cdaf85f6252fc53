//! Trusted CA certificates (Kong's `ca_certificates`): the roots a service verifies its
//! upstream's TLS certificate against (`service.ca_certificates` with `tls_verify: true`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use x509_parser::pem::Pem;

use crate::entity::{Entity, EntityKind, FieldError, Reference};
use crate::validate::{check_tags, Errors};

/// One CA certificate (PEM). Fields in alphabetical order (canonical JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CaCertificate {
    /// One PEM certificate with the CA basic constraint. Required.
    pub cert: String,
    /// SHA-256 of the certificate's DER, lowercase hex; computed from `cert` (a value sent
    /// by a client is replaced, as Kong does). Unique within a control plane.
    pub cert_digest: Option<String>,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// What parsing a CA certificate tells: its digest, DER and end of validity.
#[derive(Debug, Clone)]
pub struct CaInfo {
    /// SHA-256 of the DER, lowercase hex.
    pub digest: String,
    /// The certificate's DER bytes.
    pub der: Vec<u8>,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// Parses one PEM CA certificate with Kong's rules and messages: exactly one certificate,
/// well-formed, carrying the `CA` basic constraint. Expiry is not checked here (see
/// [`CaCertificate::check_not_expired`]): a configuration must not become invalid on a data
/// plane because time passed.
pub fn inspect_ca_certificate(pem: &str) -> Result<CaInfo, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    match pem.matches(BEGIN).count() {
        0 => return Err(format!("invalid certificate: not a PEM \"{BEGIN}\" block")),
        1 => {}
        _ => return Err("please submit only one certificate at a time".into()),
    }
    let block = Pem::iter_from_buffer(pem.trim().as_bytes())
        .next()
        .ok_or("invalid certificate: no PEM block found")?
        .map_err(|e| format!("invalid certificate: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "invalid certificate: expected a \"CERTIFICATE\" PEM block, found \"{}\"",
            block.label
        ));
    }
    let cert = block
        .parse_x509()
        .map_err(|e| format!("invalid certificate: {e}"))?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(
            "certificate does not appear to be a CA because it is missing the \"CA\" basic constraint"
                .into(),
        );
    }
    let not_after = cert.validity().not_after.timestamp();
    Ok(CaInfo {
        digest: hex::encode(Sha256::digest(&block.contents)),
        der: block.contents.clone(),
        not_after,
    })
}

impl CaCertificate {
    /// The certificate's parsed facts, if `cert` is a valid CA certificate.
    pub fn inspect(&self) -> Result<CaInfo, String> {
        inspect_ca_certificate(&self.cert)
    }

    /// Kong refuses a CA certificate whose `notAfter` is in the past when it is written.
    pub(crate) fn check_not_expired(info: &CaInfo, now: SystemTime) -> Result<(), String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if info.not_after < now {
            Err("certificate expired, \"Not After\" time is in the past".into())
        } else {
            Ok(())
        }
    }
}

impl Entity for CaCertificate {
    const KIND: EntityKind = EntityKind::CaCertificate;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        // Kong's cert_digest is unique: the same CA cannot be stored twice.
        self.cert_digest
            .iter()
            .map(|d| ("cert_digest", d.clone()))
            .collect()
    }

    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.cert.trim().is_empty() {
            errors.add("cert", "required field missing");
        } else {
            match self.inspect() {
                Err(reason) => errors.add("cert", reason),
                Ok(info) => {
                    if self
                        .cert_digest
                        .as_deref()
                        .is_some_and(|d| d != info.digest)
                    {
                        errors.add(
                            "cert_digest",
                            "does not match the certificate (it is the SHA-256 of its DER)",
                        );
                    }
                }
            }
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}
