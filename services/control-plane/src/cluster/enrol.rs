//! `/v1/enrol` on the cluster listener: a node holding a join token sends a CSR and gets its
//! cluster certificate (docs/clustering.md, "Joining with a token"). No client certificate is
//! needed; the join token is the credential, and the node's private key never leaves it.
//!
//! The control plane decides everything in the certificate (subject `fleetgate-dp`,
//! client-auth, 365 days) whatever the CSR asks for; only its public key is used.
//!
//! - `pki_client_certs`: signed by the control plane's CA (created on first use, as
//!   `dp-client-certificates/generate` does). The CA is the trust: nothing is registered.
//! - `pinned_client_certs`: signed by a throwaway issuer key (the node's key is not ours, so
//!   the certificate cannot be self-signed; the pin is what authenticates) and registered as a
//!   dp-client-certificate in the same transaction that redeems the token.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use fleetgate_protocol::{EnrolAnswer, EnrolRequest};
use futures_util::{SinkExt, StreamExt};
use rcgen::{Issuer, KeyPair, PublicKeyData, SignatureAlgorithm};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateSigningRequestDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use super::identity::CertificateInfo;
use super::tls;
use crate::store::{
    ControlPlaneCa, JoinTokenRecord, JoinTokenRefusal, NewDpCertificate, Store, StoreError,
    StoreResult,
};

/// The node must send its enrol message within this after the upgrade.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest RSA modulus accepted in a CSR.
const MIN_RSA_BITS: usize = 2048;
/// What a CSR's key must be; said to the node when it is not.
const SUPPORTED_KEYS: &str =
    "the CSR key must be ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits";

/// Why an enrolment was refused: told to the node, logged with the token id when known.
#[derive(Debug)]
struct Refusal {
    reason: String,
    token_id: Option<Uuid>,
}

impl From<JoinTokenRefusal> for Refusal {
    fn from(refusal: JoinTokenRefusal) -> Self {
        Self {
            token_id: refusal.token_id(),
            reason: refusal.to_string(),
        }
    }
}

/// How an enrolment ended, other than with a certificate.
#[derive(Debug)]
enum Failure {
    /// The token or the CSR is not acceptable: answered with `enrol_refused`.
    Refused(Refusal),
    /// The control plane failed (database, signing): the connection closes without an
    /// answer, so the node retries.
    Internal(anyhow::Error),
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Internal(anyhow::Error::new(err))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Internal(err)
    }
}

/// A certificate issued for a redeemed token.
struct Enrolled {
    token: JoinTokenRecord,
    cert_pem: String,
    fingerprint_sha256: String,
}

/// Serves one enrolment on an upgraded connection: one request, one answer, close.
pub async fn serve<S>(mut ws: WebSocketStream<S>, store: &Store, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let outcome = match read_request(&mut ws).await {
        Ok(EnrolRequest::Enrol {
            join_token,
            csr,
            node_hostname,
        }) => {
            let hostname: String = node_hostname.chars().take(253).collect();
            enrol(store, &join_token, &csr)
                .await
                .map(|enrolled| (enrolled, hostname.clone()))
                .map_err(|failure| (failure, hostname))
        }
        Err(reason) => Err((
            Failure::Refused(Refusal {
                reason,
                token_id: None,
            }),
            String::new(),
        )),
    };
    let answer = match outcome {
        Ok((enrolled, hostname)) => {
            tracing::info!(
                peer = %peer,
                node_hostname = %hostname,
                token_id = %enrolled.token.id,
                control_plane_id = %enrolled.token.control_plane_id,
                fingerprint = %enrolled.fingerprint_sha256,
                "data plane enrolled with a join token"
            );
            EnrolAnswer::Enrolled {
                cert: enrolled.cert_pem,
            }
        }
        Err((Failure::Refused(refusal), hostname)) => {
            tracing::warn!(
                peer = %peer,
                node_hostname = %hostname,
                token_id = ?refusal.token_id,
                reason = %refusal.reason,
                "data plane enrolment refused"
            );
            EnrolAnswer::EnrolRefused {
                reason: refusal.reason,
            }
        }
        Err((Failure::Internal(err), hostname)) => {
            tracing::error!(peer = %peer, node_hostname = %hostname, error = %format!("{err:#}"), "data plane enrolment failed");
            let frame = CloseFrame {
                code: CloseCode::Error,
                reason: "the control plane could not enrol the node; retry later".into(),
            };
            let _ = ws.close(Some(frame)).await;
            drain(&mut ws).await;
            return;
        }
    };
    if ws.send(Message::text(answer.to_text())).await.is_ok() {
        let _ = ws.close(None).await;
        drain(&mut ws).await;
    }
}

/// Reads until the peer's close (or a short timeout), so the close handshake completes.
async fn drain<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Result<EnrolRequest, String> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("no enrol message within {REQUEST_TIMEOUT:?}"))?;
        match next {
            Some(Ok(Message::Text(text))) => return EnrolRequest::from_text(&text),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) => return Err("the enrol message must be one JSON text frame".into()),
            Some(Err(e)) => return Err(format!("reading the enrol message failed: {e}")),
            None => return Err("the node closed before sending its enrol message".into()),
        }
    }
}

/// Checks the token and the CSR, issues the certificate and redeems the token.
async fn enrol(store: &Store, join_token: &str, csr_pem: &str) -> Result<Enrolled, Failure> {
    // Refuse a bad token before looking at the CSR or signing anything.
    let token = store
        .check_join_token(join_token)
        .await?
        .map_err(|r| Failure::Refused(r.into()))?;
    let refuse = |reason: String| {
        Failure::Refused(Refusal {
            reason,
            token_id: Some(token.id),
        })
    };
    let public_key = csr_public_key(csr_pem).map_err(refuse)?;
    let control_plane = store
        .control_plane(token.organization_id, token.control_plane_id)
        .await?;
    let redeemed = if control_plane.auth_type == "pki_client_certs" {
        let ca =
            ensure_control_plane_ca(store, token.organization_id, token.control_plane_id).await?;
        let cert_pem = sign_with_control_plane_ca(&public_key, token.control_plane_id, &ca)?;
        let info = new_registration(&cert_pem)?;
        store
            .redeem_join_token(join_token, &info.fingerprint_sha256)
            .await?
            .map(|token| (token, info))
    } else {
        let cert_pem = sign_with_throwaway_issuer(&public_key, token.control_plane_id)?;
        let info = new_registration(&cert_pem)?;
        store
            .redeem_join_token_registering(join_token, info.clone())
            .await?
            .map(|(token, _registered)| (token, info))
    };
    // A refusal here means another node redeemed the token between the check and now.
    let (token, info) = redeemed.map_err(|r| Failure::Refused(r.into()))?;
    Ok(Enrolled {
        token,
        cert_pem: info.cert,
        fingerprint_sha256: info.fingerprint_sha256,
    })
}

/// The public key a CSR asks a certificate for, after checking the CSR's signature (proof
/// that the node holds the key) and that the key is of a supported kind.
#[derive(Debug)]
pub struct CsrPublicKey {
    alg: &'static SignatureAlgorithm,
    subject_public_key: Vec<u8>,
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.subject_public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// Reads and verifies a PEM CSR; the error is the one-line reason told to the node. Every
/// extension and name the CSR requests is ignored.
pub fn csr_public_key(csr_pem: &str) -> Result<CsrPublicKey, String> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| format!("malformed CSR: not a PEM CERTIFICATE REQUEST ({e})"))?;
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der.as_ref())
            .map_err(|e| format!("malformed CSR: {e}"))?;
    if !rest.is_empty() {
        return Err("malformed CSR: trailing bytes after the request".into());
    }
    let spki = &csr.certification_request_info.subject_pki;
    let algorithm = &spki.algorithm.algorithm;
    let alg: &'static SignatureAlgorithm = if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == OID_EC_P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Some(c) if c == OID_NIST_EC_P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => return Err(SUPPORTED_KEYS.into()),
        }
    } else if *algorithm == OID_SIG_ED25519 {
        &rcgen::PKCS_ED25519
    } else if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = spki.parsed().map(|k| k.key_size()).unwrap_or(0);
        if bits < MIN_RSA_BITS {
            return Err(format!("{SUPPORTED_KEYS} (this RSA key has {bits} bits)"));
        }
        &rcgen::PKCS_RSA_SHA256
    } else {
        return Err(SUPPORTED_KEYS.into());
    };
    csr.verify_signature()
        .map_err(|_| "malformed CSR: its signature does not verify with its own key".to_string())?;
    Ok(CsrPublicKey {
        alg,
        subject_public_key: spki.subject_public_key.data.to_vec(),
    })
}

/// What the store registers for a certificate the control plane just issued.
fn new_registration(cert_pem: &str) -> anyhow::Result<NewDpCertificate> {
    let info = CertificateInfo::from_pem(cert_pem)
        .map_err(|e| anyhow::anyhow!("read back an issued certificate: it {e}"))?;
    Ok(NewDpCertificate {
        cert: cert_pem.trim().to_string() + "\n",
        fingerprint_sha256: info.fingerprint_sha256,
        subject: info.subject,
        not_after: info.not_after,
        title: None,
    })
}

/// The control plane's data-plane CA (pki mode), created and registered on first use.
pub async fn ensure_control_plane_ca(
    store: &Store,
    org: Uuid,
    control_plane_id: Uuid,
) -> StoreResult<ControlPlaneCa> {
    if let Some(ca) = store.control_plane_ca(org, control_plane_id).await? {
        return Ok(ca);
    }
    let fresh = tls::new_control_plane_ca(control_plane_id)?;
    let registration = new_registration(&fresh.cert_pem)?;
    store
        .create_control_plane_ca(org, control_plane_id, registration, &fresh.key_pem)
        .await
}

fn sign_with_control_plane_ca(
    public_key: &CsrPublicKey,
    control_plane_id: Uuid,
    ca: &ControlPlaneCa,
) -> anyhow::Result<String> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).context("parse the data-plane CA key")?;
    let issuer = Issuer::new(
        tls::ca_params(
            &tls::control_plane_ca_name(control_plane_id),
            tls::CONTROL_PLANE_CA_DAYS,
        )?,
        &ca_key,
    );
    let cert = tls::client_leaf_params()?
        .signed_by(public_key, &issuer)
        .context("sign an enrolled data-plane certificate with the control plane's CA")?;
    Ok(cert.pem())
}

fn sign_with_throwaway_issuer(
    public_key: &CsrPublicKey,
    control_plane_id: Uuid,
) -> anyhow::Result<String> {
    // Dropped right after: nothing can ever be signed with this key again, so the issuer
    // vouches for nothing beyond the pin registered with the certificate.
    let key = KeyPair::generate().context("generate a one-time issuer key")?;
    let issuer = Issuer::new(
        tls::ca_params(
            &format!("Fleetgate enrolment {control_plane_id}"),
            tls::DP_CERT_DAYS,
        )?,
        &key,
    );
    let cert = tls::client_leaf_params()?
        .signed_by(public_key, &issuer)
        .context("sign an enrolled data-plane certificate")?;
    Ok(cert.pem())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn csr_of(key: &KeyPair, params: rcgen::CertificateParams) -> String {
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn the_csr_key_is_used_and_everything_else_decided_here() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut asked = rcgen::CertificateParams::new(vec!["evil.example".into()]).unwrap();
        asked.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let public_key = csr_public_key(&csr_of(&key, asked)).unwrap();
        let pem = sign_with_throwaway_issuer(&public_key, Uuid::nil()).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
        assert!(cert.subject().to_string().contains("CN=fleetgate-dp"));
        assert!(!cert.is_ca());
        assert!(cert.subject_alternative_name().unwrap().is_none());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, tls::DP_CERT_DAYS);
    }

    #[test]
    fn bad_csrs_are_refused_with_a_reason() {
        let err = csr_public_key("not a csr").unwrap_err();
        assert!(err.starts_with("malformed CSR"), "{err}");
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let key = KeyPair::generate_for(alg).unwrap();
            csr_public_key(&csr_of(&key, rcgen::CertificateParams::default())).unwrap();
        }
        // A CSR whose signature was made by another key.
        let key = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap();
        let good = csr_of(&key, rcgen::CertificateParams::default());
        let forged_der = {
            let der = CertificateSigningRequestDer::from_pem_slice(good.as_bytes()).unwrap();
            let mut bytes = der.as_ref().to_vec();
            let theirs = other.der_bytes().to_vec();
            let ours = key.der_bytes().to_vec();
            let at = bytes
                .windows(ours.len())
                .position(|w| w == ours.as_slice())
                .unwrap();
            bytes[at..at + ours.len()].copy_from_slice(&theirs);
            bytes
        };
        let forged = pem_of(&forged_der);
        let err = csr_public_key(&forged).unwrap_err();
        assert!(err.contains("signature"), "{err}");
    }

    fn pem_of(der: &[u8]) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            lines.join("\n")
        )
    }
}
