//! Downstream TLS: certificates chosen by SNI from the running config. The resolver reads the
//! current config on every handshake, so a config swap changes certificates without
//! restarting the listener.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use fleetgate_config::GatewayConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::gateway::Gateway;

/// Certificates of one config, indexed by server name.
#[derive(Debug, Default)]
pub struct CertificateIndex {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `.example.com`.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
}

fn certified_key(cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parse the certificate PEM")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "the certificate PEM holds no certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parse the key PEM")?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .context("use the private key (unsupported type?)")?;
    let certified = CertifiedKey::new(chain, signing);
    // A key that does not belong to the certificate would fail every handshake later; refuse
    // the config now, while the old one is still serving.
    match certified.keys_match() {
        // `Unknown`: the key type cannot report its public half; nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => anyhow::bail!("the private key does not match the certificate ({e})"),
    }
    Ok(Arc::new(certified))
}

impl CertificateIndex {
    /// Builds the index; a certificate that does not parse fails the whole config (the error
    /// names it), so a broken certificate never silently disables HTTPS.
    pub fn build(config: &GatewayConfig) -> anyhow::Result<Self> {
        let mut by_id = HashMap::new();
        for (i, cert) in config.certificates.iter().enumerate() {
            let key = certified_key(&cert.cert, &cert.key)
                .with_context(|| format!("certificates[{i}] ({})", cert.id))?;
            by_id.insert(cert.id, key);
        }
        let mut index = CertificateIndex::default();
        for sni in &config.snis {
            let Some(key) = sni.certificate.as_ref().and_then(|c| by_id.get(&c.id)) else {
                continue;
            };
            let name = sni.name.to_ascii_lowercase();
            match name.strip_prefix('*') {
                Some(suffix) => index.wildcard.push((suffix.to_string(), key.clone())),
                None => {
                    index.exact.insert(name, key.clone());
                }
            }
        }
        // Longest suffix first, so the most specific wildcard wins.
        index
            .wildcard
            .sort_by_key(|entry| std::cmp::Reverse(entry.0.len()));
        Ok(index)
    }

    /// The certificate for a server name.
    pub fn lookup(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key.clone());
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix.as_str()) && name.len() > suffix.len())
            .map(|(_, key)| key.clone())
    }
}

/// rustls resolver over the gateway's current config.
#[derive(Debug)]
pub struct SniResolver {
    gateway: Arc<Gateway>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        self.gateway.current().certificates.lookup(name)
    }
}

/// The crypto provider of every TLS config the node builds, named explicitly: another crate
/// in the same build (the AWS clients of object storage) enables a second provider, and then
/// rustls cannot pick a process default on its own.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server TLS config of the HTTPS proxy listener (HTTP/2 and HTTP/1.1 by ALPN).
pub fn server_config(gateway: Arc<Gateway>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { gateway }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
