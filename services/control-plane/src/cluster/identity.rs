//! Which control plane a data-plane node belongs to, decided from its client certificate right
//! after the TLS handshake (docs/clustering.md, "Identity").
//!
//! - `pinned_client_certs`: the SHA-256 of the DER leaf equals a registered certificate.
//! - `pki_client_certs`: the leaf is signed by a registered certificate (a CA), found by the
//!   leaf's issuer DN and checked by signature.
//! - A server name `<control_plane_id>.cluster.fleetgate.internal` pins the control plane: a
//!   certificate of any other control plane is refused.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use x509_parser::certificate::X509Certificate;

use super::tls::CLUSTER_DOMAIN;
use crate::api::timestamps::rfc3339;
use crate::store::{CertificateOwner, Store};

/// Who a node is, once identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpIdentity {
    /// The control plane's organisation.
    pub organization_id: Uuid,
    /// The control plane the node belongs to.
    pub control_plane_id: Uuid,
    /// The registered certificate that matched: the pinned leaf, or the pki CA. Deleting it
    /// ends the node's sessions.
    pub certificate_id: Uuid,
    /// The leaf's expiry, Unix seconds (shown on the node, so expiry is visible in advance).
    pub cert_expiry: i64,
}

/// Why a client certificate admits its node to no control plane. The Display text is one line
/// meant for the CP log and the HTTP answer to the node; it never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// Not a DER X.509 certificate.
    #[error("the client certificate is malformed: {0}")]
    Malformed(String),
    /// Past its notAfter.
    #[error("the client certificate expired at {}", rfc3339(*.not_after))]
    Expired {
        /// notAfter, Unix seconds.
        not_after: i64,
    },
    /// Before its notBefore.
    #[error("the client certificate is not valid before {}", rfc3339(*.not_before))]
    NotYetValid {
        /// notBefore, Unix seconds.
        not_before: i64,
    },
    /// No control plane pins it, and no CA registered with a pki control plane signed it.
    #[error(
        "the client certificate (sha256 {fingerprint}) is not registered with any control plane \
         and not signed by a registered CA"
    )]
    Unknown {
        /// SHA-256 of the certificate, lowercase hex.
        fingerprint: String,
    },
    /// The server name names a control plane the certificate does not belong to.
    #[error(
        "the client certificate does not belong to control plane {server_name_control_plane} \
         named by the server name"
    )]
    ControlPlaneMismatch {
        /// The control plane named by the server name.
        server_name_control_plane: Uuid,
    },
    /// Registered with several control planes and no server name to choose.
    #[error(
        "the client certificate belongs to {count} control planes; connect with server name \
         <control_plane_id>.{CLUSTER_DOMAIN} to choose one"
    )]
    Ambiguous {
        /// How many control planes it belongs to.
        count: usize,
    },
    /// The database could not be asked.
    #[error("the client certificate could not be checked: the database is unavailable")]
    Store(#[source] anyhow::Error),
}

impl IdentifyError {
    /// The HTTP status to refuse the upgrade with: 401 for a certificate that admits to
    /// nothing, 403 for one of another control plane than the server name asks for, 503 when
    /// the check itself failed (the node should retry).
    pub fn http_status(&self) -> u16 {
        match self {
            IdentifyError::ControlPlaneMismatch { .. } => 403,
            IdentifyError::Store(_) => 503,
            _ => 401,
        }
    }
}

/// What the API and `identify` read from a certificate.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    /// The DER bytes.
    pub der: Vec<u8>,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint_sha256: String,
    /// Subject DN (x509-parser's rendering; issuer DNs render the same way, which is how a
    /// leaf finds its CA).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

impl CertificateInfo {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not a DER X.509 certificate ({e})"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        Ok(Self {
            der: der.to_vec(),
            fingerprint_sha256: hex::encode(Sha256::digest(der)),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Reads the one certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
        let first = match certs.next() {
            Some(Ok(der)) => der,
            Some(Err(e)) => return Err(format!("is not valid PEM ({e})")),
            None => return Err("holds no PEM CERTIFICATE block".into()),
        };
        if certs.next().is_some() {
            return Err("must hold exactly one certificate".into());
        }
        Self::from_der(&first).map_err(|e| format!("is not a certificate: {e}"))
    }
}

/// The control plane a cluster server name names, if it is one of the per-control-plane names.
pub fn control_plane_of_server_name(sni: &str) -> Option<Uuid> {
    let sni = sni.trim_end_matches('.').to_ascii_lowercase();
    let label = sni.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?;
    Uuid::parse_str(label).ok()
}

/// Decides which control plane the node presenting `leaf_der` belongs to.
pub async fn identify(
    store: &Store,
    leaf_der: &[u8],
    sni: Option<&str>,
    now_unix: i64,
) -> Result<DpIdentity, IdentifyError> {
    let info = CertificateInfo::from_der(leaf_der).map_err(IdentifyError::Malformed)?;
    if now_unix > info.not_after {
        return Err(IdentifyError::Expired {
            not_after: info.not_after,
        });
    }
    if now_unix < info.not_before {
        return Err(IdentifyError::NotYetValid {
            not_before: info.not_before,
        });
    }
    let mut owners = store
        .pinned_certificate_owners(&info.fingerprint_sha256)
        .await
        .map_err(|e| IdentifyError::Store(e.into()))?;
    let issuers = store
        .pki_certificate_owners(&info.issuer)
        .await
        .map_err(|e| IdentifyError::Store(e.into()))?;
    if !issuers.is_empty() {
        // Parsed once here; the CA candidates are few (same DN), each checked by signature.
        let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
            .map_err(|e| IdentifyError::Malformed(e.to_string()))?;
        owners.extend(
            issuers
                .into_iter()
                .filter(|ca| ca.not_after >= now_unix && signed_by(&leaf, &ca.cert)),
        );
    }
    let wanted = sni.and_then(control_plane_of_server_name);
    let owner = match wanted {
        Some(cp) => match owners.iter().find(|o| o.control_plane_id == cp) {
            Some(owner) => owner.clone(),
            None if owners.is_empty() => {
                return Err(IdentifyError::Unknown {
                    fingerprint: info.fingerprint_sha256,
                })
            }
            None => {
                return Err(IdentifyError::ControlPlaneMismatch {
                    server_name_control_plane: cp,
                })
            }
        },
        None => {
            let mut planes: Vec<Uuid> = owners.iter().map(|o| o.control_plane_id).collect();
            planes.sort();
            planes.dedup();
            match planes.len() {
                0 => {
                    return Err(IdentifyError::Unknown {
                        fingerprint: info.fingerprint_sha256,
                    })
                }
                1 => owners.swap_remove(0),
                count => return Err(IdentifyError::Ambiguous { count }),
            }
        }
    };
    let CertificateOwner {
        certificate_id,
        control_plane_id,
        organization_id,
        ..
    } = owner;
    Ok(DpIdentity {
        organization_id,
        control_plane_id,
        certificate_id,
        cert_expiry: info.not_after,
    })
}

fn signed_by(leaf: &X509Certificate<'_>, ca_pem: &str) -> bool {
    let Ok(ca_der) = CertificateDer::from_pem_slice(ca_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, ca)) = x509_parser::parse_x509_certificate(&ca_der) else {
        return false;
    };
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_of_control_planes() {
        let id = Uuid::new_v4();
        assert_eq!(
            control_plane_of_server_name(&format!("{id}.cluster.fleetgate.internal")),
            Some(id)
        );
        assert_eq!(
            control_plane_of_server_name(&format!(
                "{}.CLUSTER.fleetgate.internal.",
                id.to_string().to_uppercase()
            )),
            Some(id)
        );
        assert_eq!(control_plane_of_server_name("localhost"), None);
        assert_eq!(
            control_plane_of_server_name("x.cluster.fleetgate.internal"),
            None
        );
        assert_eq!(
            control_plane_of_server_name(&format!("{id}cluster.fleetgate.internal")),
            None
        );
    }

    #[test]
    fn reasons_read_as_one_line() {
        let expired = IdentifyError::Expired { not_after: 0 };
        assert_eq!(
            expired.to_string(),
            "the client certificate expired at 1970-01-01T00:00:00Z"
        );
        assert_eq!(expired.http_status(), 401);
        let mismatch = IdentifyError::ControlPlaneMismatch {
            server_name_control_plane: Uuid::nil(),
        };
        assert_eq!(mismatch.http_status(), 403);
        assert!(!mismatch.to_string().contains('\n'));
    }

    #[test]
    fn pem_must_hold_one_certificate() {
        let issued = crate::cluster::tls::self_signed_client_cert().expect("generate");
        let info = CertificateInfo::from_pem(&issued.cert_pem).expect("parse");
        assert_eq!(info.fingerprint_sha256.len(), 64);
        assert!(info.subject.contains("fleetgate-dp"), "{}", info.subject);
        assert!(CertificateInfo::from_pem("hello").is_err());
        assert!(CertificateInfo::from_pem(&issued.key_pem).is_err());
        let two = format!("{}{}", issued.cert_pem, issued.cert_pem);
        assert!(CertificateInfo::from_pem(&two).is_err());
    }
}
