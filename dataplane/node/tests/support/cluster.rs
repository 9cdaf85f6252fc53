//! A minimal in-test control plane for the cluster client: TLS 1.3 with client-certificate
//! auth (certificates made with rcgen), the WebSocket upgrade on `/v1/outlet`, and per-session
//! channels the test drives. It answers `ping` with `pong` unless told to stay silent, and
//! acks every binary `telemetry` batch unless `withhold_acks` is set; the decompressed JSON
//! of every telemetry frame is kept in `telemetry_json` for privacy checks.
#![allow(dead_code)]
// tungstenite fixes the handshake callback's error type (an HTTP response).
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetgate_protocol::{
    decode_binary_message, decode_text, encode_binary, encode_text, CpMessage, DpMessage,
};
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all PEM.
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl Pki {
    pub fn generate() -> Self {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test cluster CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>| {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(names)
                .expect("params")
                .signed_by(&key, &issuer)
                .expect("sign");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
        let (client_cert, client_key) = leaf(vec!["data-plane".into()]);
        Self {
            ca: ca.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }

    /// Writes the client material as `cluster.crt`, `cluster.key`, `ca.crt` into `dir`.
    pub fn write_client_files(&self, dir: &Path) -> [(String, String); 3] {
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write pem");
            path.display().to_string()
        };
        [
            (
                "cluster_cert".into(),
                write("cluster.crt", &self.client_cert),
            ),
            (
                "cluster_cert_key".into(),
                write("cluster.key", &self.client_key),
            ),
            ("cluster_ca_cert".into(), write("ca.crt", &self.ca)),
        ]
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            roots.add(ca.expect("ca")).expect("add ca");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .expect("verifier");
        let chain = CertificateDer::pem_slice_iter(self.server_cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).expect("key");
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .expect("tls13")
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .expect("server config"),
        )
    }
}

/// One accepted DP session.
pub struct CpSession {
    /// The upgrade request's path and query.
    pub uri: String,
    /// When the upgrade completed.
    pub accepted_at: Instant,
    to_dp: mpsc::UnboundedSender<Message>,
    from_dp: mpsc::UnboundedReceiver<DpMessage>,
    silent: Arc<AtomicBool>,
}

impl CpSession {
    pub fn send(&self, msg: &CpMessage) {
        let frame = if msg.prefers_binary() {
            Message::binary(encode_binary(msg).expect("encode"))
        } else {
            Message::text(encode_text(msg).expect("encode"))
        };
        self.to_dp.send(frame).expect("session open");
    }

    /// Stops answering pings (and sends nothing else unless told to).
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// The next message that `keep` accepts (others are skipped), within `timeout`.
    pub async fn expect<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut keep: impl FnMut(DpMessage) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.from_dp.recv()).await {
                Ok(Some(msg)) => {
                    if let Some(v) = keep(msg) {
                        return v;
                    }
                }
                Ok(None) => panic!("session closed while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Waits until the DP closes the session; returns when that happened.
    pub async fn closed(&mut self, timeout: Duration) -> Instant {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.from_dp.recv()).await {
                Ok(Some(_)) => {}
                Ok(None) => return Instant::now(),
                Err(_) => panic!("the session was not closed within {timeout:?}"),
            }
        }
    }
}

/// The test control plane.
pub struct TestCp {
    pub addr: std::net::SocketAddr,
    sessions: mpsc::UnboundedReceiver<CpSession>,
    /// When set, upgrades are refused with this status and body.
    pub refuse_upgrade: Arc<Mutex<Option<(u16, String)>>>,
    /// When set, telemetry batches are not acked.
    pub withhold_acks: Arc<AtomicBool>,
    /// The JSON of every telemetry frame received, all sessions: the logical `telemetry`
    /// message of a compact frame (what nodes send), or the JSON inside a gzip frame.
    pub telemetry_json: Arc<Mutex<Vec<String>>>,
}

/// A binary frame's message and its JSON: compact telemetry frames are decoded by the
/// protocol crate (strictly: a malformed frame fails the test), anything else is gzip of JSON.
fn decode_binary_frame(bytes: &[u8]) -> (DpMessage, String) {
    if fleetgate_protocol::is_telemetry_frame(bytes) {
        let message = fleetgate_protocol::decode_telemetry(bytes)
            .expect("compact telemetry frame decodes")
            .to_message();
        let json = serde_json::to_string(&message).expect("telemetry as JSON");
        return (message, json);
    }
    use std::io::Read;
    let mut json = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut json)
        .expect("gzip of UTF-8 JSON");
    let message = decode_binary_message(bytes).expect("DP binary message decodes");
    (message, json)
}

impl TestCp {
    pub async fn start(pki: &Pki) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
        let (tx, sessions) = mpsc::unbounded_channel();
        let refuse_upgrade: Arc<Mutex<Option<(u16, String)>>> = Arc::default();
        let refuse = refuse_upgrade.clone();
        let withhold_acks = Arc::new(AtomicBool::new(false));
        let telemetry_json: Arc<Mutex<Vec<String>>> = Arc::default();
        let (withhold, raw) = (withhold_acks.clone(), telemetry_json.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, tx, refuse) = (acceptor.clone(), tx.clone(), refuse.clone());
                let (withhold, raw) = (withhold.clone(), raw.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let refusal = refuse.lock().expect("lock").clone();
                    let mut uri = String::new();
                    let callback = |req: &Request, resp: Response| {
                        uri = req.uri().to_string();
                        match refusal {
                            Some((status, body)) => {
                                let mut err = ErrorResponse::new(Some(body));
                                *err.status_mut() =
                                    http::StatusCode::from_u16(status).expect("status");
                                Err(err)
                            }
                            None => Ok(resp),
                        }
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tls, callback).await else {
                        return;
                    };
                    let (to_dp, mut outbox) = mpsc::unbounded_channel::<Message>();
                    let (inbox, from_dp) = mpsc::unbounded_channel();
                    let silent = Arc::new(AtomicBool::new(false));
                    let session = CpSession {
                        uri,
                        accepted_at: Instant::now(),
                        to_dp,
                        from_dp,
                        silent: silent.clone(),
                    };
                    if tx.send(session).is_err() {
                        return;
                    }
                    let mut ws = ws;
                    loop {
                        tokio::select! {
                            out = outbox.recv() => match out {
                                Some(frame) => if ws.send(frame).await.is_err() { break },
                                // The test dropped the session: hang up.
                                None => { let _ = ws.close(None).await; break }
                            },
                            frame = ws.next() => match frame {
                                Some(Ok(Message::Text(text))) => {
                                    let msg: DpMessage = decode_text(text.as_str()).expect("DP message decodes");
                                    if matches!(msg, DpMessage::Ping { .. }) && !silent.load(Ordering::SeqCst) {
                                        let pong = encode_text(&CpMessage::Pong { cp_time_ms: 1 }).expect("pong");
                                        if ws.send(Message::text(pong)).await.is_err() { break }
                                    }
                                    if inbox.send(msg).is_err() { break }
                                }
                                Some(Ok(Message::Binary(bytes))) => {
                                    let (msg, json) = decode_binary_frame(&bytes);
                                    raw.lock().expect("lock").push(json);
                                    if let DpMessage::Telemetry { seq, .. } = &msg {
                                        if !withhold.load(Ordering::SeqCst) {
                                            let ack = encode_text(&CpMessage::Ack { seq: *seq }).expect("ack");
                                            if ws.send(Message::text(ack)).await.is_err() { break }
                                        }
                                    }
                                    if inbox.send(msg).is_err() { break }
                                }
                                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                                Some(Ok(_)) => {}
                            },
                        }
                    }
                });
            }
        });
        Self {
            addr,
            sessions,
            refuse_upgrade,
            withhold_acks,
            telemetry_json,
        }
    }

    pub async fn next_session(&mut self, timeout: Duration) -> CpSession {
        tokio::time::timeout(timeout, self.sessions.recv())
            .await
            .expect("a DP session within the timeout")
            .expect("listener alive")
    }
}
