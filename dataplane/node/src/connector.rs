//! Upstream connections: plain TCP or TLS (service `protocol: https`), with Kong's
//! `write_timeout` — the longest a single write to the upstream may wait. hyper's connector
//! has a connect timeout only, so the stream is wrapped to time out writes that make no
//! progress.
//!
//! Upstream TLS follows Kong: certificates are verified only when the service sets
//! `tls_verify: true`; Kong's default, unset, does not verify, because internal upstreams
//! commonly use private or self-signed certificates. A verifying service trusts exactly its
//! `ca_certificates` when it lists any (Kong's per-service `proxy_ssl_trusted_certificate`),
//! otherwise the Mozilla roots (where Kong would use `lua_ssl_trusted_certificate`); the
//! upstream's name (the service host, also sent as SNI) must match the certificate, and
//! `tls_verify_depth` bounds the chain.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Connects like [`HttpConnector`] (adding TLS for `https` URIs) and bounds every write by
/// `write_timeout`.
#[derive(Clone)]
pub struct TimeoutConnector {
    inner: HttpConnector,
    write_timeout: Duration,
    tls: TlsConnector,
}

impl std::fmt::Debug for TimeoutConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeoutConnector")
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

/// How a service's upstream certificate is checked: Kong's `tls_verify`,
/// `tls_verify_depth` and `ca_certificates`, resolved to certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum UpstreamTls {
    /// Encrypt without verifying (Kong's default: `tls_verify` unset or false).
    #[default]
    Unverified,
    /// Verify the chain and the name.
    Verified {
        /// DER of the trusted CA certificates; empty: the Mozilla roots.
        roots: Vec<Vec<u8>>,
        /// Kong's `tls_verify_depth`: how many certificates may stand above the upstream's
        /// own one (the trusted CA included); `None`: no limit.
        depth: Option<u8>,
    },
}

/// A failed TLS handshake with an upstream (an unverifiable certificate, most often): kept
/// as its own error so the proxy can log why it answered 502.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with upstream {host} failed: {source}")]
pub struct UpstreamTlsError {
    /// The name the certificate was checked against.
    pub host: String,
    /// What rustls reported.
    #[source]
    pub source: io::Error,
}

impl TimeoutConnector {
    /// A connector with the given connect and write limits; `tls` says how upstream
    /// certificates are checked. Fails when a CA certificate cannot be used as a root.
    pub fn new(
        connect_timeout: Duration,
        write_timeout: Duration,
        tls: &UpstreamTls,
    ) -> anyhow::Result<Self> {
        let mut inner = HttpConnector::new();
        inner.set_connect_timeout(Some(connect_timeout));
        inner.set_nodelay(true);
        // https URIs are accepted; this connector adds the TLS layer itself.
        inner.enforce_http(false);
        Ok(Self {
            inner,
            write_timeout,
            tls: TlsConnector::from(upstream_tls_config(tls)?),
        })
    }
}

fn upstream_tls_config(tls: &UpstreamTls) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut config = if let UpstreamTls::Verified { roots, depth } = tls {
        let mut store = rustls::RootCertStore::empty();
        if roots.is_empty() {
            store.roots = webpki_roots::TLS_SERVER_ROOTS.to_vec();
        }
        for der in roots {
            store
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| anyhow::anyhow!("a CA certificate cannot be a trust anchor: {e}"))?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            crate::tls::crypto_provider(),
        )
        .build()
        .map_err(|e| anyhow::anyhow!("build the upstream certificate verifier: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match depth {
            Some(depth) => Arc::new(DepthLimited {
                inner: webpki,
                depth: *depth,
            }),
            None => webpki,
        };
        rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    } else {
        rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification::new()))
            .with_no_client_auth()
    };
    // HTTP/1.1 only: the upstream pool speaks HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// webpki's verification plus Kong's `tls_verify_depth` (nginx's
/// `proxy_ssl_verify_depth`): the upstream's own certificate is depth 0 and each
/// certificate above it, up to the trusted CA, one more. webpki does not say which path it
/// built, so the certificates the upstream sent above its own are counted, plus the anchor.
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<WebPkiServerVerifier>,
    depth: u8,
}

impl ServerCertVerifier for DepthLimited {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if intermediates.len() + 1 > usize::from(self.depth) {
            return Err(rustls::Error::General(format!(
                "certificate chain too long: {} certificates above the upstream's own, tls_verify_depth is {}",
                intermediates.len() + 1,
                self.depth
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Kong's default for upstream TLS (`tls_verify` unset): encrypt, do not verify.
#[derive(Debug)]
struct NoVerification {
    schemes: Vec<rustls::SignatureScheme>,
}

impl NoVerification {
    fn new() -> Self {
        Self {
            schemes: rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.clone()
    }
}

/// The transport under a [`TimeoutStream`].
#[derive(Debug)]
enum Transport {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl tower_service::Service<Uri> for TimeoutConnector {
    type Response = TimeoutStream;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<TimeoutStream, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let connecting = self.inner.call(uri);
        let write_timeout = self.write_timeout;
        let tls = self.tls.clone();
        Box::pin(async move {
            let stream = connecting.await.map_err(Box::new)?;
            let transport = if https {
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| Box::new(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                let tcp = stream.into_inner();
                let tls_stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|source| UpstreamTlsError { host, source })?;
                Transport::Tls(Box::new(TokioIo::new(tls_stream)))
            } else {
                Transport::Plain(stream)
            };
            Ok(TimeoutStream {
                inner: transport,
                write_timeout,
                write_deadline: None,
            })
        })
    }
}

/// A TCP stream whose writes fail with `TimedOut` after `write_timeout` without progress.
#[derive(Debug)]
pub struct TimeoutStream {
    inner: Transport,
    write_timeout: Duration,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl TimeoutStream {
    /// Polls `op`; while it is pending, the write deadline runs; progress clears it.
    fn poll_bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut (dyn Write + Unpin)>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let io: &mut (dyn Write + Unpin) = match &mut self.inner {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.as_mut(),
        };
        match op(Pin::new(io), cx) {
            Poll::Ready(result) => {
                self.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let deadline = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.write_deadline = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("write to upstream made no progress for {timeout:?} (write_timeout)"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl Read for TimeoutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for TimeoutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_bounded(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_bounded(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for TimeoutStream {
    fn connected(&self) -> Connected {
        match &self.inner {
            Transport::Plain(s) => s.connected(),
            Transport::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}
