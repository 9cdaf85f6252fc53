//! The cluster listener's TLS material: a CA data planes trust and a server certificate it
//! signs, generated into the data dir at first start (or given with `--cluster-cert`,
//! `--cluster-cert-key`, `--cluster-ca-cert`), and the rustls server config that asks every
//! data plane for a client certificate.
//!
//! Which control plane a client certificate belongs to is not a TLS question: the verifier
//! here only insists that a certificate, when presented, parses and carries a valid handshake
//! signature, and [`crate::cluster::identity::identify`] decides right after the handshake, so
//! a refused node gets an HTTP answer naming the reason instead of a bare TLS alert. A client
//! certificate is optional at the TLS layer because `/v1/enrol` is how a node without one
//! obtains it; `/v1/outlet` refuses a connection without one (401).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as TlsDn, ServerConfig, SignatureScheme};
use time::OffsetDateTime;

/// Wildcard name under which every control plane has its own cluster server name
/// (`<control_plane_id>.cluster.fleetgate.internal`).
pub const CLUSTER_DOMAIN: &str = "cluster.fleetgate.internal";
/// File names of the generated material in the data dir.
pub const CA_CERT_FILE: &str = "cluster-ca.crt";
/// The generated CA's private key.
pub const CA_KEY_FILE: &str = "cluster-ca.key";
/// The generated server certificate.
pub const CERT_FILE: &str = "cluster.crt";
/// The generated server certificate's private key.
pub const KEY_FILE: &str = "cluster.key";

const DAY: i64 = 24 * 60 * 60;
/// A generated server certificate is replaced at start when it has less than this left.
const RENEW_BEFORE: i64 = 30 * DAY;

/// The cluster server name of one control plane, as shown on the control plane resource.
pub fn cluster_server_name(control_plane_id: uuid::Uuid) -> String {
    format!("{control_plane_id}.{CLUSTER_DOMAIN}")
}

/// Files that replace the generated material (`--cluster-cert`, `--cluster-cert-key`,
/// `--cluster-ca-cert`).
#[derive(Debug, Clone, Default)]
pub struct ClusterTlsFlags {
    /// Server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// The CA data planes must trust (PEM).
    pub ca: Option<PathBuf>,
}

/// The cluster listener's TLS material, loaded once at start.
#[derive(Clone)]
pub struct ClusterTls {
    ca_pem: String,
    server_config: Arc<ServerConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The server config holds the private key: show nothing of it.
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Uses the flag files when given, else the material in `data_dir`, generating it
    /// (owner-only files) at first start. `endpoint_host` is the host data planes dial
    /// (`--cluster-endpoint`), added to the generated server certificate's names.
    pub fn load_or_generate(
        data_dir: &Path,
        flags: &ClusterTlsFlags,
        endpoint_host: &str,
    ) -> anyhow::Result<Self> {
        match (&flags.cert, &flags.key, &flags.ca) {
            (None, None, None) => Self::from_data_dir(data_dir, endpoint_host),
            (Some(cert), Some(key), Some(ca)) => Self::from_files(cert, key, ca),
            _ => anyhow::bail!(
                "--cluster-cert, --cluster-cert-key and --cluster-ca-cert go together: give all \
                 three, or none to use the generated cluster CA"
            ),
        }
    }

    /// Fresh material that lives only in memory: for in-process servers without a data dir.
    pub fn ephemeral(endpoint_host: &str) -> anyhow::Result<Self> {
        let ca = GeneratedCa::new()?;
        let (cert_pem, key_pem) = ca.server_cert(endpoint_host)?;
        Self::from_pem(&cert_pem, &key_pem, ca.cert_pem)
    }

    /// PEM of the CA data planes must trust (`cluster_ca_cert`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The listener's rustls config: TLS 1.3 only, ALPN `http/1.1`, a client certificate
    /// requested (the listener requires one per path).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config.clone()
    }

    fn from_files(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<Self> {
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("read --cluster-cert {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("read --cluster-cert-key {}", key.display()))?;
        let ca_pem = std::fs::read_to_string(ca)
            .with_context(|| format!("read --cluster-ca-cert {}", ca.display()))?;
        check_signed_by(&cert_pem, &ca_pem)
            .context("check that --cluster-cert is signed by --cluster-ca-cert")?;
        Self::from_pem(&cert_pem, &key_pem, ca_pem)
    }

    fn from_data_dir(data_dir: &Path, endpoint_host: &str) -> anyhow::Result<Self> {
        let ca_cert_path = data_dir.join(CA_CERT_FILE);
        let ca_key_path = data_dir.join(CA_KEY_FILE);
        let cert_path = data_dir.join(CERT_FILE);
        let key_path = data_dir.join(KEY_FILE);
        let ca = if ca_cert_path.exists() && ca_key_path.exists() {
            GeneratedCa::load(&ca_cert_path, &ca_key_path)?
        } else {
            let ca = GeneratedCa::new()?;
            write_private(&ca_key_path, &ca.key.serialize_pem())?;
            write_private(&ca_cert_path, &ca.cert_pem)?;
            tracing::info!(path = %ca_cert_path.display(), "generated the cluster CA");
            ca
        };
        let reusable = match (
            std::fs::read_to_string(&cert_path),
            std::fs::read_to_string(&key_path),
        ) {
            (Ok(cert), Ok(key)) => {
                server_cert_still_fits(&cert, endpoint_host, &ca.cert_pem).then_some((cert, key))
            }
            _ => None,
        };
        let (cert_pem, key_pem) = match reusable {
            Some(pair) => pair,
            None => {
                // Missing, expiring, signed by another CA or lacking a name data planes now
                // dial: a new one from the same CA keeps every data plane's trust.
                let (cert, key) = ca.server_cert(endpoint_host)?;
                write_private(&key_path, &key)?;
                write_private(&cert_path, &cert)?;
                tracing::info!(path = %cert_path.display(), "generated the cluster server certificate");
                (cert, key)
            }
        };
        Self::from_pem(&cert_pem, &key_pem, ca.cert_pem)
    }

    fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: String) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("parse the cluster server certificate PEM")?;
        anyhow::ensure!(
            !chain.is_empty(),
            "the cluster server certificate file holds no certificate"
        );
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .context("parse the cluster server private key PEM")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyClientCertificate {
            algorithms: provider.signature_verification_algorithms,
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("restrict the cluster listener to TLS 1.3")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .context("use the cluster server certificate and key")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem,
            server_config: Arc::new(config),
        })
    }
}

/// Accepts no client certificate, or any that parses as X.509 when the client proves it holds
/// the private key (the handshake signature). Identification happens after the handshake.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        // Optional so `/v1/enrol` works for a node without a certificate yet; the listener
        // refuses `/v1/outlet` without one.
        false
    }

    fn root_hint_subjects(&self) -> &[TlsDn] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        x509_parser::parse_x509_certificate(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Unreachable with a TLS 1.3-only config, but verified properly all the same.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The generated cluster CA.
struct GeneratedCa {
    cert_pem: String,
    key: KeyPair,
}

impl GeneratedCa {
    fn new() -> anyhow::Result<Self> {
        let key = KeyPair::generate().context("generate the cluster CA key")?;
        let cert = ca_params("Fleetgate cluster CA", 10 * 365)?
            .self_signed(&key)
            .context("self-sign the cluster CA")?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let cert_pem =
            std::fs::read_to_string(cert).with_context(|| format!("read {}", cert.display()))?;
        let key_pem =
            std::fs::read_to_string(key).with_context(|| format!("read {}", key.display()))?;
        let key =
            KeyPair::from_pem(&key_pem).with_context(|| format!("parse {}", key.display()))?;
        Ok(Self { cert_pem, key })
    }

    /// A server certificate for the cluster listener, valid one year.
    fn server_cert(&self, endpoint_host: &str) -> anyhow::Result<(String, String)> {
        let issuer = Issuer::new(ca_params("Fleetgate cluster CA", 10 * 365)?, &self.key);
        let key = KeyPair::generate().context("generate the cluster server key")?;
        let mut params = leaf_params("fleetgate-cluster", 365)?;
        params.subject_alt_names = server_names(endpoint_host)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .context("sign the cluster server certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The names the cluster server certificate is valid for (docs/clustering.md): localhost,
/// 127.0.0.1, the endpoint host, and every control plane's own cluster server name.
fn server_names(endpoint_host: &str) -> anyhow::Result<Vec<SanType>> {
    let mut names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        SanType::DnsName(format!("*.{CLUSTER_DOMAIN}").try_into()?),
    ];
    let host = endpoint_host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        // An address data planes dial must be in the certificate too, or the default server
        // name (the endpoint's host part) could never verify.
        Ok(ip) if !ip.is_unspecified() && ip != IpAddr::from([127, 0, 0, 1]) => {
            names.push(SanType::IpAddress(ip))
        }
        Ok(_) => {}
        Err(_) if !host.is_empty() && host != "localhost" => names.push(SanType::DnsName(
            host.to_string()
                .try_into()
                .with_context(|| format!("use {host:?} as a certificate name"))?,
        )),
        Err(_) => {}
    }
    Ok(names)
}

/// Whether a stored server certificate can be used again: signed by the current CA, not about
/// to expire, and valid for every name data planes may dial.
fn server_cert_still_fits(cert_pem: &str, endpoint_host: &str, ca_pem: &str) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    if cert.validity().not_after.timestamp() - crate::store::now_unix() < RENEW_BEFORE {
        return false;
    }
    if check_signed_by(cert_pem, ca_pem).is_err() {
        return false;
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let present: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                _ => String::new(),
            },
            _ => String::new(),
        })
        .collect();
    let Ok(wanted) = server_names(endpoint_host) else {
        return false;
    };
    wanted.iter().all(|name| {
        let name = match name {
            SanType::DnsName(d) => d.as_str().to_string(),
            SanType::IpAddress(ip) => ip.to_string(),
            _ => return true,
        };
        present.contains(&name)
    })
}

/// Checks the (first) certificate of `cert_pem` carries a signature of the CA in `ca_pem`.
fn check_signed_by(cert_pem: &str, ca_pem: &str) -> anyhow::Result<()> {
    let cert_der =
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).context("parse the certificate")?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("parse the CA")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
        .map_err(|e| anyhow::anyhow!("decode the certificate: {e}"))?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| anyhow::anyhow!("decode the CA: {e}"))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|e| anyhow::anyhow!("the certificate is not signed by the CA: {e}"))
}

/// Parameters of a CA named `common_name`. Rebuilding the same parameters later gives an
/// [`Issuer`] whose issuer name matches the stored CA certificate exactly.
pub fn ca_params(common_name: &str, days: i64) -> anyhow::Result<CertificateParams> {
    let mut params = validity(days)?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Parameters of an end-entity certificate named `common_name`, valid `days` from now.
pub fn leaf_params(common_name: &str, days: i64) -> anyhow::Result<CertificateParams> {
    let mut params = validity(days)?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Fleetgate");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(days: i64) -> anyhow::Result<CertificateParams> {
    let now = crate::store::now_unix();
    let mut params = CertificateParams::default();
    // A minute of slack so a clock slightly behind ours still accepts a fresh certificate.
    params.not_before =
        OffsetDateTime::from_unix_timestamp(now - 60).context("compute not_before")?;
    params.not_after =
        OffsetDateTime::from_unix_timestamp(now + days * DAY).context("compute not_after")?;
    Ok(params)
}

/// A data-plane client certificate and its key, both PEM.
#[derive(Clone)]
pub struct IssuedClientCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8): handed out once, never stored.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedClientCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Common name of generated data-plane client certificates.
pub const DP_COMMON_NAME: &str = "fleetgate-dp";
/// Validity of generated data-plane client certificates.
pub const DP_CERT_DAYS: i64 = 365;

/// Parameters of every data-plane client certificate the control plane issues: subject
/// `fleetgate-dp`, client-auth only, [`DP_CERT_DAYS`] from now.
pub fn client_leaf_params() -> anyhow::Result<CertificateParams> {
    let mut params = leaf_params(DP_COMMON_NAME, DP_CERT_DAYS)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// A self-signed data-plane client certificate (pinned mode).
pub fn self_signed_client_cert() -> anyhow::Result<IssuedClientCert> {
    let key = KeyPair::generate().context("generate a data-plane key")?;
    let mut params = client_leaf_params()?;
    params.use_authority_key_identifier_extension = false;
    let cert = params
        .self_signed(&key)
        .context("self-sign a data-plane certificate")?;
    Ok(IssuedClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Name of the CA Fleetgate keeps for a control plane in pki mode.
pub fn control_plane_ca_name(control_plane_id: uuid::Uuid) -> String {
    format!("Fleetgate data-plane CA {control_plane_id}")
}

/// Validity of a control plane's data-plane CA.
pub const CONTROL_PLANE_CA_DAYS: i64 = 10 * 365;

/// A new data-plane CA for a control plane (pki mode): certificate and key, PEM.
pub fn new_control_plane_ca(control_plane_id: uuid::Uuid) -> anyhow::Result<IssuedClientCert> {
    let key = KeyPair::generate().context("generate a data-plane CA key")?;
    let cert = ca_params(
        &control_plane_ca_name(control_plane_id),
        CONTROL_PLANE_CA_DAYS,
    )?
    .self_signed(&key)
    .context("self-sign the data-plane CA")?;
    Ok(IssuedClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A data-plane client certificate signed by the control plane's CA (pki mode).
pub fn client_cert_signed_by_control_plane_ca(
    control_plane_id: uuid::Uuid,
    ca_key_pem: &str,
) -> anyhow::Result<IssuedClientCert> {
    let ca_key = KeyPair::from_pem(ca_key_pem).context("parse the data-plane CA key")?;
    let issuer = Issuer::new(
        ca_params(
            &control_plane_ca_name(control_plane_id),
            CONTROL_PLANE_CA_DAYS,
        )?,
        &ca_key,
    );
    let key = KeyPair::generate().context("generate a data-plane key")?;
    let cert = client_leaf_params()?
        .signed_by(&key, &issuer)
        .context("sign a data-plane certificate")?;
    Ok(IssuedClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a file readable by its owner only (keys, and certificates next to them).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("sync {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn generates_owner_only_material_once_and_reuses_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first =
            ClusterTls::load_or_generate(dir.path(), &ClusterTlsFlags::default(), "cp.example.com")
                .expect("generate");
        for file in [CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE] {
            assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
        }
        let cert_before = std::fs::read_to_string(dir.path().join(CERT_FILE)).expect("read");
        let second =
            ClusterTls::load_or_generate(dir.path(), &ClusterTlsFlags::default(), "cp.example.com")
                .expect("reload");
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(
            cert_before,
            std::fs::read_to_string(dir.path().join(CERT_FILE)).expect("read")
        );
        // A new endpoint name: same CA, new server certificate carrying that name.
        let third =
            ClusterTls::load_or_generate(dir.path(), &ClusterTlsFlags::default(), "10.1.2.3")
                .expect("reload with a new endpoint");
        assert_eq!(first.ca_pem(), third.ca_pem());
        let cert_after = std::fs::read_to_string(dir.path().join(CERT_FILE)).expect("read");
        assert_ne!(cert_before, cert_after);
        assert!(server_cert_still_fits(
            &cert_after,
            "10.1.2.3",
            third.ca_pem()
        ));
        assert!(!server_cert_still_fits(
            &cert_after,
            "other.example.com",
            third.ca_pem()
        ));
    }

    /// A client config trusting `ca_pem`, optionally presenting `client` (cert, key PEM).
    fn client_config(
        ca_pem: &str,
        client: Option<&IssuedClientCert>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("ca pem"))
            .expect("add ca");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
        let mut config = match client {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).expect("cert")],
                    PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).expect("key"),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Runs a handshake over real loopback sockets; returns the client certificate the server
    /// saw and the negotiated ALPN, or the server's error.
    async fn handshake(
        tls: &ClusterTls,
        client: Arc<rustls::ClientConfig>,
        server_name: &'static str,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let stream = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let (_, conn) = stream.get_ref();
            Ok::<_, String>((
                conn.peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec())
                    .unwrap_or_default(),
                conn.alpn_protocol().map(<[u8]>::to_vec),
            ))
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = rustls::pki_types::ServerName::try_from(server_name).expect("name");
        // The client side may fail or succeed; the server's verdict is what is tested.
        let client_side = connector.connect(name, tcp).await;
        let verdict = server.await.expect("server task");
        drop(client_side);
        verdict
    }

    #[tokio::test]
    async fn listener_takes_an_optional_client_certificate_over_tls13_only() {
        let tls = ClusterTls::ephemeral("127.0.0.1").expect("generate");
        let dp = self_signed_client_cert().expect("client cert");
        let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

        let (seen, alpn) = handshake(
            &tls,
            client_config(tls.ca_pem(), Some(&dp), tls13),
            "localhost",
        )
        .await
        .expect("handshake with a client certificate");
        let expected = CertificateDer::from_pem_slice(dp.cert_pem.as_bytes()).expect("der");
        assert_eq!(seen, expected.to_vec());
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

        // Every control plane's own server name verifies against the CA.
        handshake(
            &tls,
            client_config(tls.ca_pem(), Some(&dp), tls13),
            "0f8a3c2e-7d4b-4e55-9a1e-3b2c1d0e9f8a.cluster.fleetgate.internal",
        )
        .await
        .expect("per-control-plane server name");

        // Without a client certificate the handshake succeeds (for `/v1/enrol`); the listener
        // refuses `/v1/outlet` after it.
        let (seen, _) = handshake(&tls, client_config(tls.ca_pem(), None, tls13), "localhost")
            .await
            .expect("handshake without a client certificate");
        assert!(seen.is_empty(), "no certificate was presented");

        let tls12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        handshake(
            &tls,
            client_config(tls.ca_pem(), Some(&dp), tls12),
            "localhost",
        )
        .await
        .expect_err("TLS 1.2 is refused");
    }

    #[test]
    fn flags_must_come_together() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = ClusterTls::load_or_generate(
            dir.path(),
            &ClusterTlsFlags {
                cert: Some(dir.path().join("x.crt")),
                ..Default::default()
            },
            "localhost",
        )
        .expect_err("incomplete flags");
        assert!(err.to_string().contains("go together"), "{err}");
    }

    #[test]
    fn flag_files_are_used_and_checked_against_the_ca() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = GeneratedCa::new().expect("ca");
        let (cert, key) = ca.server_cert("localhost").expect("server cert");
        let paths = ["s.crt", "s.key", "ca.crt"].map(|f| dir.path().join(f));
        std::fs::write(&paths[0], &cert).expect("write");
        std::fs::write(&paths[1], &key).expect("write");
        std::fs::write(&paths[2], &ca.cert_pem).expect("write");
        let flags = ClusterTlsFlags {
            cert: Some(paths[0].clone()),
            key: Some(paths[1].clone()),
            ca: Some(paths[2].clone()),
        };
        let tls = ClusterTls::load_or_generate(dir.path(), &flags, "localhost").expect("load");
        assert_eq!(tls.ca_pem(), ca.cert_pem);
        assert!(!dir.path().join(CA_KEY_FILE).exists(), "nothing generated");
        // A CA that did not sign the certificate is refused at start.
        let other = GeneratedCa::new().expect("other ca");
        std::fs::write(&paths[2], &other.cert_pem).expect("write");
        let err =
            ClusterTls::load_or_generate(dir.path(), &flags, "localhost").expect_err("wrong CA");
        assert!(
            format!("{err:#}").contains("not signed by the CA"),
            "{err:#}"
        );
    }
}
