//! Harness for data-plane tests: a real upstream and a real `DataPlane` on 127.0.0.1:0.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetgate_dataplane::{DataPlane, Settings};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

/// An upstream answering with a JSON echo of what it received. Paths:
/// `/delay/{ms}` sleeps first; `/status/{code}` answers that status; anything else 200.
pub async fn echo_upstream() -> SocketAddr {
    echo_upstream_named("upstream").await
}

/// Like [`echo_upstream`], with a name echoed back (to tell targets apart).
pub async fn echo_upstream_named(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let query = req.uri().query().map(str::to_string);
                    let method = req.method().to_string();
                    let headers: serde_json::Map<String, serde_json::Value> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                        .collect();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let mut status = 200;
                    if let Some(ms) = path.strip_prefix("/delay/") {
                        let ms: u64 = ms.parse().unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    if let Some(code) = path.strip_prefix("/status/") {
                        status = code.parse().unwrap_or(200);
                    }
                    let echo = json!({
                        "upstream": name,
                        "method": method,
                        "path": path,
                        "query": query,
                        "headers": headers,
                        "body_len": body.len(),
                    });
                    let mut response = Response::new(Full::new(Bytes::from(echo.to_string())));
                    *response.status_mut() =
                        hyper::StatusCode::from_u16(status).unwrap_or_default();
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A WebSocket server echoing every message.
pub async fn websocket_echo_upstream() -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ws");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A port nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// A data plane running `yaml`.
pub struct Dp {
    pub dp: DataPlane,
    pub dir: tempfile::TempDir,
    pub base: String,
}

impl Dp {
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(yaml, &[]).await
    }

    pub async fn start_with(yaml: &str, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, Some(yaml), extra).await
    }

    /// Starts with `dir` as the prefix (so a test can put a cache or license there first);
    /// `yaml`, when given, becomes `declarative_config`.
    pub async fn start_in(
        dir: tempfile::TempDir,
        yaml: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut toml = format!(
            "prefix = {:?}\nproxy_listen = \"127.0.0.1:0\"\nstatus_listen = \"127.0.0.1:0\"\n",
            dir.path().display().to_string(),
        );
        if let Some(yaml) = yaml {
            let file = dir.path().join("kong.yml");
            std::fs::write(&file, yaml).expect("write config");
            toml.push_str(&format!(
                "declarative_config = {:?}\n",
                file.display().to_string()
            ));
        }
        for (k, v) in extra {
            toml.push_str(&format!("{k} = {v:?}\n"));
        }
        let settings = Settings::from_sources(Some(("dp.toml", &toml)), &[]).expect("settings");
        let dp = DataPlane::start(settings).await.expect("start data plane");
        let base = format!("http://{}", dp.proxy_addr);
        Self { dp, dir, base }
    }

    /// Rewrites the declarative file and reloads it.
    pub fn rewrite(&self, yaml: &str) -> Result<(), fleetgate_dataplane::ApplyError> {
        std::fs::write(self.dir.path().join("kong.yml"), yaml).expect("write config");
        self.dp.reload()
    }

    pub fn status_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.dp.status_addr)
    }
}

/// Polls until `check` gives `Some`, at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// An upstream that sends response headers and a little of a promised body, then stalls.
pub async fn stalling_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    addr
}

/// An upstream that accepts connections and never reads from them.
pub async fn deaf_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An HTTPS upstream (certificate for example.com) answering `{"tls": true, "path": …}`.
pub async fn https_upstream() -> SocketAddr {
    let cert =
        include_str!("../../../../services/control-plane/tests/fixtures/example.com.cert.pem");
    let key = include_str!("../../../../services/control-plane/tests/fixtures/example.com.key.pem");
    https_upstream_with(cert, key).await
}

/// A test PKI: a CA, and a certificate it signed for `127.0.0.1` and `localhost`.
pub struct TestPki {
    /// The CA certificate (PEM).
    pub ca: String,
    /// The upstream's certificate (PEM).
    pub cert: String,
    /// The upstream's key (PEM).
    pub key: String,
}

impl TestPki {
    /// A fresh CA and upstream certificate.
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("ca key");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("cert");
        Self {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// An HTTPS upstream serving `cert` (a PEM chain) with `key`, answering
/// `{"tls": true, "path": …}`.
pub async fn https_upstream_with(cert: &str, key: &str) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config =
        rustls::ServerConfig::builder_with_provider(fleetgate_dataplane::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let body = json!({"tls": true, "path": req.uri().path()}).to_string();
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub mod cluster;
