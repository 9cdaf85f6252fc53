//! The cluster link's mutual TLS: every way a data plane can present the wrong identity, or
//! meet the wrong control plane, is refused with a logged reason.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use std::time::Duration;

use fleetgate_e2e::{
    eventually, ControlPlaneProcess, DataPlaneOptions, DataPlaneProcess, DpCredentials,
};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

fn fast() -> Vec<(String, String)> {
    vec![
        ("cluster_ping_interval".into(), "1s".into()),
        ("cluster_reconnect_delay".into(), "200ms..400ms".into()),
    ]
}

async fn dp_with(
    cp: &ControlPlaneProcess,
    creds: DpCredentials,
    server_name: &str,
) -> DataPlaneProcess {
    DataPlaneProcess::start(DataPlaneOptions {
        control_plane: Some(cp.cluster_endpoint()),
        credentials: Some(creds),
        server_name: Some(server_name.into()),
        extra: fast(),
        ..Default::default()
    })
    .await
}

/// A CA and a leaf signed by it; `expired` puts the leaf's validity in the past.
fn ca_and_leaf(expired: bool) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "e2e test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).expect("leaf params");
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "e2e dp");
    if expired {
        leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign the leaf");
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["dp.example".to_string()]).expect("params");
    (
        params.self_signed(&key).expect("self-sign").pem(),
        key.serialize_pem(),
    )
}

/// Waits until a line of the CP log contains `needle` (any case), proving the refusal was
/// logged; on timeout the log is shown.
async fn cp_logged(cp: &ControlPlaneProcess, what: &str, needle: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    let needle = needle.to_lowercase();
    while std::time::Instant::now() < deadline {
        if cp.log().lines().any(|l| l.to_lowercase().contains(&needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "timed out waiting for {what}; control plane log:\n{}",
        cp.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wrong_identity_is_refused_with_a_logged_reason() {
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let a = cp.create_control_plane("a", "pki_client_certs").await;
    let b = cp.create_control_plane("b", "pinned_client_certs").await;
    let good = cp.dp_credentials(&a).await;
    let b_creds = cp.dp_credentials(&b).await;

    // 1. No client certificate at all: the handshake succeeds (a node enrolling with a join
    // token has none yet), and the outlet upgrade is refused with a 401 naming why.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(good.ca.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("trust the CA");
    }
    // An explicit provider: the workspace build enables two (ring, and aws-lc-rs for AWS).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(cp.cluster)
        .await
        .expect("dial the cluster listener");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake without a client certificate");
    let request = format!(
        "GET /v1/outlet?node_id={}&node_hostname=x&node_version={} HTTP/1.1\r\nhost: localhost\r\n\
         connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        uuid::Uuid::new_v4(),
        env!("CARGO_PKG_VERSION")
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(request.as_bytes())
        .await
        .expect("send the upgrade request");
    let mut answer = Vec::new();
    // The control plane answers the refusal and closes; read it all (bounded by the timeout).
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("no client certificate"), "{answer}");
    cp_logged(
        &cp,
        "the CP to log the missing certificate",
        "no client certificate was presented",
    )
    .await;

    // 2. A self-signed certificate nobody registered.
    let (cert, key) = self_signed();
    let unknown = dp_with(
        &cp,
        DpCredentials {
            cert,
            key,
            ..good.clone()
        },
        "localhost",
    )
    .await;
    cp_logged(
        &cp,
        "the CP to log the unknown certificate",
        "is not registered with any control plane",
    )
    .await;

    // 3. B's certificate presented to A's cluster name.
    let a_name = format!("{a}.cluster.fleetgate.internal");
    let wrong_cp = dp_with(&cp, b_creds.clone(), &a_name).await;
    cp_logged(
        &cp,
        "the CP to log the control-plane mismatch",
        "does not belong to control plane",
    )
    .await;

    // 4. An expired certificate signed by a CA registered on A.
    let (ca, leaf, leaf_key) = ca_and_leaf(true);
    cp.ok(
        Method::POST,
        &format!("/v2/control-planes/{a}/dp-client-certificates"),
        Some(json!({ "cert": ca })),
    )
    .await;
    let expired = dp_with(
        &cp,
        DpCredentials {
            cert: leaf,
            key: leaf_key,
            ..good.clone()
        },
        "localhost",
    )
    .await;
    cp_logged(&cp, "the CP to log the expired certificate", "expired").await;

    // 5. The control plane's certificate from another CA than the one the DP trusts.
    let (other_ca, _, _) = ca_and_leaf(false);
    let wrong_server = dp_with(
        &cp,
        DpCredentials {
            ca: other_ca,
            ..good.clone()
        },
        "localhost",
    )
    .await;

    // None of them ever connected, and no node of theirs appears.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (what, dp) in [
        ("unknown cert", &unknown),
        ("another control plane's cert", &wrong_cp),
        ("expired cert", &expired),
        ("wrong server CA", &wrong_server),
    ] {
        let status = dp.status().await;
        assert_eq!(status["connected"], false, "{what}: {status}");
        assert_eq!(status["config_source"], "empty", "{what}: {status}");
    }
    assert!(
        cp.nodes(&a).await.is_empty(),
        "a refused DP became a node of A"
    );
    assert!(
        wrong_server.log().to_lowercase().contains("certificate"),
        "the DP logs why: {}",
        wrong_server.log()
    );

    // 6. A good DP connects; deleting its certificate closes the session within a second and
    // it is refused from then on.
    let dp = dp_with(&cp, good.clone(), &a_name).await;
    eventually(WAIT, "the good DP to connect", || async {
        (dp.status().await["connected"] == true).then_some(())
    })
    .await;
    let (code, body) = cp
        .call(
            Method::DELETE,
            &format!(
                "/v2/control-planes/{a}/dp-client-certificates/{}",
                good.cert_id
            ),
            None,
        )
        .await;
    assert_eq!(code, 204, "{body}");
    let deleted_at = std::time::Instant::now();
    // This DP's own record: earlier steps may have left other node rows, and the list is in
    // id order, so the first one need not be this DP's.
    let node_id = dp.status().await["node_id"].clone();
    eventually(
        Duration::from_secs(5),
        "the CP to close the session",
        || async {
            cp.nodes(&a)
                .await
                .iter()
                .find(|n| n["id"] == node_id)
                .filter(|n| n["connected"] == false)
                .map(|_| ())
        },
    )
    .await;
    assert!(
        deleted_at.elapsed() < Duration::from_millis(1500),
        "the session outlived its certificate by {:?}",
        deleted_at.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dp.status().await["connected"], false);
}
