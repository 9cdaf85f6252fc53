//! Upstream connections: plain TCP or TLS (service `protocol: https`), with Kong's
//! `write_timeout` — the longest a single write to the upstream may wait. hyper's connector
//! has a connect timeout only, so the stream is wrapped to time out writes that make no
//! progress.
//!
//! Upstream TLS follows Kong: certificates are verified only when the service sets
//! `tls_verify: true` (against the Mozilla roots); Kong's default, unset, does not verify,
//! because internal upstreams commonly use private or self-signed certificates.

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
use rustls::pki_types::ServerName;
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

impl TimeoutConnector {
    /// A connector with the given connect and write limits; `verify_tls` checks upstream
    /// certificates against the Mozilla roots.
    pub fn new(connect_timeout: Duration, write_timeout: Duration, verify_tls: bool) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_connect_timeout(Some(connect_timeout));
        inner.set_nodelay(true);
        // https URIs are accepted; this connector adds the TLS layer itself.
        inner.enforce_http(false);
        Self {
            inner,
            write_timeout,
            tls: TlsConnector::from(upstream_tls_config(verify_tls)),
        }
    }
}

fn upstream_tls_config(verify: bool) -> Arc<rustls::ClientConfig> {
    let mut config = if verify {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        rustls::ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
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
    Arc::new(config)
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

impl rustls::client::danger::ServerCertVerifier for NoVerification {
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
                let name = ServerName::try_from(host)
                    .map_err(|e| Box::new(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                let tcp = stream.into_inner();
                let tls_stream = tls.connect(name, tcp).await.map_err(Box::new)?;
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
