//! The cluster link's TLS client configuration: TLS 1.3 only, trusting only
//! `cluster_ca_cert`, presenting `cluster_cert`/`cluster_cert_key` (docs/clustering.md).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Builds the client config from PEM files. The result is immutable and cheap to share: a
/// benchmark running many sessions in one process builds it once and clones the `Arc`.
pub fn client_config(
    cert: &Path,
    key: &Path,
    ca: &Path,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let read = |what: &str, path: &Path| {
        std::fs::read(path).with_context(|| format!("read {what} {}", path.display()))
    };
    client_config_from_pem(
        &read("cluster_cert", cert)?,
        &read("cluster_cert_key", key)?,
        &read("cluster_ca_cert", ca)?,
    )
}

/// [`client_config`] from PEM bytes.
pub fn client_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("parse cluster_cert as PEM certificates")?;
    anyhow::ensure!(!chain.is_empty(), "cluster_cert holds no certificate");
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .context("parse cluster_cert_key as a PEM private key")?;
    let config = builder(ca_pem)?
        .with_client_auth_cert(chain, key)
        .context("use cluster_cert with cluster_cert_key (do they match?)")?;
    Ok(Arc::new(config))
}

/// The config of `/v1/enrol`: as [`client_config_from_pem`] but without a client certificate
/// (the node has none yet; its join token is the credential).
pub fn enrol_client_config(ca_pem: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(builder(ca_pem)?.with_no_client_auth()))
}

/// TLS 1.3 only, trusting only the `cluster_ca_cert` certificates.
fn builder(
    ca_pem: &[u8],
) -> anyhow::Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut added = 0;
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.context("parse cluster_ca_cert as PEM certificates")?;
        roots
            .add(ca)
            .context("add a cluster_ca_cert certificate to the trust roots")?;
        added += 1;
    }
    anyhow::ensure!(added > 0, "cluster_ca_cert holds no certificate");
    // An explicit provider, so the process needs no global default installed.
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("enable TLS 1.3")?
            .with_root_certificates(roots),
    )
}

/// The TLS server name for `endpoint` (`host:port`): `server_name` when set, else the host.
pub fn server_name(
    endpoint: &str,
    server_name: Option<&str>,
) -> anyhow::Result<ServerName<'static>> {
    let name = match server_name {
        Some(name) => name.to_string(),
        None => host_of(endpoint).to_string(),
    };
    ServerName::try_from(name.clone())
        .with_context(|| format!("use {name:?} as the control plane's TLS server name"))
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub fn host_of(endpoint: &str) -> &str {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_part_and_server_name() {
        assert_eq!(host_of("cp.example:8005"), "cp.example");
        assert_eq!(host_of("[::1]:8005"), "::1");
        assert!(matches!(
            server_name("127.0.0.1:8005", None),
            Ok(ServerName::IpAddress(_))
        ));
        assert_eq!(
            server_name("127.0.0.1:8005", Some("cp.internal"))
                .map(|n| n.to_str().into_owned())
                .ok(),
            Some("cp.internal".to_string())
        );
    }
}
