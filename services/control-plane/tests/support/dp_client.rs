//! A raw data-plane client for cluster tests: real TCP, TLS 1.3 with a client certificate
//! (tokio-rustls), a real WebSocket (tokio-tungstenite), and the protocol crate's messages.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleetgate_protocol::{CpMessage, DpMessage, EnrolAnswer, EnrolRequest, OutletQuery};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

/// A client certificate and its key, PEM.
#[derive(Clone)]
pub struct DpCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl DpCert {
    /// A fresh self-signed certificate (to be pinned through the REST API).
    pub fn generate() -> Self {
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["dp.test".to_string()]).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fleetgate-test-dp");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key).expect("self-sign");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// How a dial failed.
#[derive(Debug)]
pub enum DialError {
    /// The upgrade was answered with an HTTP error.
    Http { status: u16, body: String },
    /// TLS or the connection failed.
    Transport(String),
}

/// What the control plane sent.
#[derive(Debug)]
pub enum Incoming {
    Message(CpMessage),
    Closed(Option<CloseFrame>),
}

pub struct DpConn {
    pub node_id: Uuid,
    ws: WebSocketStream<TlsStream<TcpStream>>,
}

pub fn query(node_id: Uuid, version: &str) -> String {
    OutletQuery {
        node_id,
        node_hostname: format!("dp-{}", &node_id.simple().to_string()[..8]),
        node_version: version.to_string(),
    }
    .to_query_string()
}

fn client_config(ca_pem: &str, cert: Option<&DpCert>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("parse CA")).expect("trust CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots);
    match cert {
        None => builder.with_no_client_auth(),
        Some(cert) => {
            let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("parse certificate");
            let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("parse key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
    }
}

/// Dials `/v1/outlet?{query}` with the server name `localhost`.
pub async fn dial_raw(
    addr: SocketAddr,
    ca_pem: &str,
    cert: Option<&DpCert>,
    query: &str,
) -> Result<WebSocketStream<TlsStream<TcpStream>>, DialError> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem, cert)));
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| DialError::Transport(e.to_string()))?;
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("server name"), tcp)
        .await
        .map_err(|e| DialError::Transport(e.to_string()))?;
    let url = format!("wss://localhost/v1/outlet?{query}");
    match tokio_tungstenite::client_async(url.as_str(), tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(DialError::Http {
            status: response.status().as_u16(),
            body: response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => Err(DialError::Transport(e.to_string())),
    }
}

/// A node key and a CSR for it, as a node builds them before enrolling.
pub struct NodeKey {
    pub key_pem: String,
    pub csr_pem: String,
}

impl NodeKey {
    pub fn generate() -> Self {
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let csr = rcgen::CertificateParams::new(vec!["asks-for-this.example".to_string()])
            .expect("params")
            .serialize_request(&key)
            .expect("build a CSR");
        Self {
            key_pem: key.serialize_pem(),
            csr_pem: csr.pem().expect("CSR PEM"),
        }
    }

    /// The key with the certificate enrolment gave for it.
    pub fn with_cert(&self, cert_pem: &str) -> DpCert {
        DpCert {
            cert_pem: cert_pem.to_string(),
            key_pem: self.key_pem.clone(),
        }
    }
}

/// Enrols over `/v1/enrol` without a client certificate: sends one `enrol` message and
/// returns the control plane's answer, or `Err` with why there was none.
pub async fn enrol(
    addr: SocketAddr,
    ca_pem: &str,
    join_token: &str,
    csr_pem: &str,
) -> Result<EnrolAnswer, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem, None)));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("server name"), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/v1/enrol", tls)
        .await
        .map_err(|e| e.to_string())?;
    let request = EnrolRequest::Enrol {
        join_token: join_token.to_string(),
        csr: csr_pem.to_string(),
        node_hostname: "enrol-test".to_string(),
    };
    ws.send(Message::text(request.to_text()))
        .await
        .map_err(|e| e.to_string())?;
    let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "no answer within 10 s".to_string())?;
    match next {
        Some(Ok(Message::Text(text))) => EnrolAnswer::from_text(&text),
        other => Err(format!("expected an enrol answer, got {other:?}")),
    }
}

impl DpConn {
    /// Dials as `node_id` at `version`.
    pub async fn dial(
        addr: SocketAddr,
        ca_pem: &str,
        cert: &DpCert,
        node_id: Uuid,
        version: &str,
    ) -> Result<Self, DialError> {
        let ws = dial_raw(addr, ca_pem, Some(cert), &query(node_id, version)).await?;
        Ok(Self { node_id, ws })
    }

    pub async fn send(&mut self, message: &DpMessage) {
        let text = fleetgate_protocol::encode_text(message).expect("encode");
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends a message as a binary frame (gzip of the JSON), as nodes send telemetry.
    pub async fn send_binary(&mut self, message: &DpMessage) {
        let bytes = fleetgate_protocol::encode_binary(message).expect("encode");
        self.ws.send(Message::binary(bytes)).await.expect("send");
    }

    /// Sends a telemetry batch (binary frame) from this node.
    pub async fn telemetry(
        &mut self,
        seq: u64,
        records: Vec<fleetgate_protocol::RequestRecord>,
        dropped: u64,
    ) {
        let message = DpMessage::Telemetry {
            node_id: self.node_id,
            seq,
            records,
            dropped,
        };
        self.send_binary(&message).await;
    }

    /// Reads until `ack {seq}`, collecting the `error` messages seen on the way; panics on
    /// an ack of another seq or after 10 s.
    pub async fn expect_ack(&mut self, seq: u64) -> Vec<String> {
        let mut errors = Vec::new();
        loop {
            match self.recv().await {
                CpMessage::Ack { seq: acked } if acked == seq => return errors,
                CpMessage::Ack { seq: other } => panic!("expected ack {seq}, got ack {other}"),
                CpMessage::Error { message } => errors.push(message),
                _ => continue,
            }
        }
    }

    pub async fn hello(&mut self, version: &str, config_hash: &str) {
        let message = DpMessage::Hello {
            node_id: self.node_id,
            hostname: format!("dp-{}", &self.node_id.simple().to_string()[..8]),
            version: version.to_string(),
            config_hash: config_hash.to_string(),
            plugins: Vec::new(),
            labels: Default::default(),
        };
        self.send(&message).await;
    }

    pub async fn ping(&mut self, config_hash: &str) {
        self.send(&DpMessage::Ping {
            config_hash: config_hash.to_string(),
            telemetry_buffer_fill: None,
        })
        .await;
    }

    /// The next message or close, or `None` after `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next {
                None => return Some(Incoming::Closed(None)),
                Some(Err(_)) => return Some(Incoming::Closed(None)),
                Some(Ok(Message::Text(text))) => {
                    return Some(Incoming::Message(
                        fleetgate_protocol::decode_text(&text).expect("decode text frame"),
                    ))
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Some(Incoming::Message(
                        fleetgate_protocol::decode_binary(&bytes).expect("decode binary frame"),
                    ))
                }
                Some(Ok(Message::Close(frame))) => return Some(Incoming::Closed(frame)),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message; panics on close or after 10 s.
    pub async fn recv(&mut self) -> CpMessage {
        match self.recv_within(Duration::from_secs(10)).await {
            Some(Incoming::Message(m)) => m,
            other => panic!("node {}: expected a message, got {other:?}", self.node_id),
        }
    }

    /// Reads until a `reconfigure` arrives; returns (version, hash).
    pub async fn expect_reconfigure(&mut self) -> (i64, String, serde_json::Value) {
        loop {
            match self.recv().await {
                CpMessage::Reconfigure {
                    version,
                    config_hash,
                    config,
                    ..
                } => return (version, config_hash, config),
                CpMessage::License { .. } | CpMessage::Pong { .. } => continue,
                other => panic!("expected reconfigure, got {other:?}"),
            }
        }
    }

    /// Pings and asserts the pong comes before any `reconfigure`: the control plane answers
    /// in order, so nothing pushed is pending.
    pub async fn expect_no_reconfigure(&mut self, held_hash: &str) {
        self.ping(held_hash).await;
        loop {
            match self.recv().await {
                CpMessage::Pong { cp_time_ms } => {
                    assert!(cp_time_ms > 0, "pong carries the CP time");
                    return;
                }
                CpMessage::License { .. } => continue,
                other => panic!("expected no push before the pong, got {other:?}"),
            }
        }
    }

    /// Waits until the control plane closes the connection; panics after `timeout`.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await {
                Some(Incoming::Closed(frame)) => return frame,
                Some(Incoming::Message(_)) => continue,
                None => panic!("node {}: not closed within {timeout:?}", self.node_id),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
