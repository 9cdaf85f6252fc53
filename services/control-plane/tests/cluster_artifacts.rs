//! `GET /v1/artifacts/fleetgate-dp` on the cluster listener: the node binary a cloud gateway
//! on a stock image downloads, and the user-data script's download-and-check part run for real
//! (bash, curl, sha256sum) against it, in a temp dir with the systemd steps switched off.

mod support;

use std::path::Path;
use std::sync::Arc;

use fleetgate_control_plane::cluster::artifacts::{DpArtifact, DP_ARTIFACT_PATH};
use fleetgate_control_plane::cluster::listener::ClusterSettings;
use fleetgate_provisioner::bootstrap::render_user_data;
use fleetgate_provisioner::types::{DpDownload, NodeBootstrap};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::TestApp;

/// Some bytes standing in for the binary (the listener serves whatever file it is given).
fn fake_binary() -> Vec<u8> {
    (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn app_serving(path: &Path) -> TestApp {
    TestApp::start_with_cluster(ClusterSettings {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        dp_artifact: Some(path.to_path_buf()),
        ..ClusterSettings::default()
    })
    .await
}

/// A raw HTTP/1.1 response: status, lower-case headers, body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// One request over TLS (the cluster CA trusted, server name `localhost`, no client
/// certificate, as a booting node), read to the end (the listener closes after it).
async fn request(app: &TestApp, method: &str, path: &str) -> Answer {
    let raw = exchange(app, method, path).await;
    parse_answer(&raw)
}

/// The raw bytes the listener answers one request with (nothing when it just closes).
async fn exchange(app: &TestApp, method: &str, path: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(app.cluster_ca_pem.as_bytes()) {
        roots.add(ca.expect("parse CA")).expect("trust CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(app.cluster_addr).await.expect("dial");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl\r\n\r\n");
    tls.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    // A close_notify-less end is fine: the whole answer was read.
    let _ = tls.read_to_end(&mut raw).await;
    raw
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

#[tokio::test]
async fn the_node_binary_is_served_with_its_sha256_to_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = dir.path().join("fleetgate-dp");
    let bytes = fake_binary();
    std::fs::write(&binary, &bytes).expect("write the binary");
    let app = app_serving(&binary).await;

    let got = request(&app, "GET", DP_ARTIFACT_PATH).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        got.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(
        got.header("x-checksum-sha256"),
        Some(sha256_hex(&bytes).as_str())
    );
    assert_eq!(sha256_hex(&got.body), sha256_hex(&bytes));

    // The digest the cloud driver puts in user data (the same type, over the same file) is the
    // digest of the served bytes.
    let digest = DpArtifact::new(Some(binary.clone()))
        .digest()
        .await
        .expect("digest");
    assert_eq!(digest.sha256, sha256_hex(&got.body));
    assert_eq!(digest.len, bytes.len() as u64);

    let head = request(&app, "HEAD", DP_ARTIFACT_PATH).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // A new version of the file is hashed again.
    let newer: Vec<u8> = bytes.iter().rev().copied().collect();
    std::fs::write(&binary, &newer).expect("replace the binary");
    let got = request(&app, "GET", DP_ARTIFACT_PATH).await;
    assert_eq!(
        got.header("x-checksum-sha256"),
        Some(sha256_hex(&newer).as_str())
    );
    assert_eq!(got.body, newer);
}

#[tokio::test]
async fn artifact_requests_are_refused_with_a_problem_naming_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-fleetgate-dp");
    let app = app_serving(&missing).await;

    let absent = request(&app, "GET", DP_ARTIFACT_PATH).await;
    assert_eq!(absent.status, 404);
    assert_eq!(
        absent.header("content-type"),
        Some("application/problem+json")
    );
    let detail = absent.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains("fleetgate-dp is not available from this control plane")
            && detail.contains(&missing.display().to_string())
            && detail.contains("--dp-artifact"),
        "{detail}"
    );

    let other = request(&app, "GET", "/v1/artifacts/kong").await;
    assert_eq!(other.status, 404);
    assert!(other.json()["detail"]
        .as_str()
        .is_some_and(|d| d.contains(DP_ARTIFACT_PATH)));

    let post = request(&app, "POST", DP_ARTIFACT_PATH).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(post.json()["status"], 405);

    // Paths outside /v1/artifacts/ still go to the WebSocket endpoints (not an upgrade: 400
    // from the handshake, or the listener's own 404 for an unknown path), never to a file.
    // The WebSocket side may also close a non-upgrade request without an answer.
    let elsewhere = exchange(&app, "GET", "/v1/nothing-here").await;
    assert!(
        !elsewhere.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&elsewhere)
    );
}

/// The boot script's download, check and install, run for real: bash, curl with the cluster
/// CA pinned and the server name checked, sha256sum. `FLEETGATE_BOOT_ROOT` keeps every file in
/// a temp dir and `FLEETGATE_BOOT_NO_SYSTEMD` skips systemctl.
#[tokio::test]
async fn the_user_data_script_downloads_checks_and_installs_the_served_binary() {
    if which("curl").is_none() || which("sha256sum").is_none() {
        eprintln!("skipped: curl or sha256sum is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let binary = dir.path().join("fleetgate-dp");
    let bytes = fake_binary();
    std::fs::write(&binary, &bytes).expect("write the binary");
    let app = app_serving(&binary).await;
    let bootstrap = |sha256: String| NodeBootstrap {
        cluster_endpoint: app.cluster_addr.to_string(),
        cluster_server_name: "localhost".into(),
        cluster_ca_cert_pem: app.cluster_ca_pem.clone(),
        dp_download: Some(DpDownload {
            path: DP_ARTIFACT_PATH.into(),
            sha256,
        }),
    };
    let run = |script: String, root: std::path::PathBuf| async move {
        std::fs::create_dir_all(&root).expect("root");
        let file = root.with_extension("sh");
        std::fs::write(&file, script).expect("write the script");
        tokio::process::Command::new("bash")
            .arg(&file)
            .env("FLEETGATE_BOOT_ROOT", &root)
            .env("FLEETGATE_BOOT_NO_SYSTEMD", "1")
            .output()
            .await
            .expect("run bash")
    };

    let script = render_user_data(
        &bootstrap(sha256_hex(&bytes)),
        "fgjt_test",
        "/usr/local/bin/fleetgate-dp",
    )
    .expect("render");
    let root = dir.path().join("good");
    let out = run(script, root.clone()).await;
    assert!(
        out.status.success(),
        "the script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = root.join("usr/local/bin/fleetgate-dp");
    assert_eq!(std::fs::read(&installed).expect("installed"), bytes);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&installed)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    let settings = std::fs::read_to_string(root.join("etc/fleetgate/dp.toml")).expect("dp.toml");
    assert!(settings.contains("cluster_join_token = \"fgjt_test\""));
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/fleetgate-dp.service"))
        .expect("unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/fleetgate-dp --conf /etc/fleetgate/dp.toml"));

    // Bytes that do not match the SHA-256 in the user data are not installed.
    let wrong = sha256_hex(b"something else");
    let script = render_user_data(
        &bootstrap(wrong),
        "fgjt_test",
        "/usr/local/bin/fleetgate-dp",
    )
    .expect("render");
    let root = dir.path().join("bad");
    let out = run(script, root.clone()).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not have SHA-256"), "{stderr}");
    assert!(!root.join("usr/local/bin/fleetgate-dp").exists());
    let leftovers: Vec<_> = std::fs::read_dir(root.join("usr/local/bin"))
        .expect("bin dir")
        .collect();
    assert!(
        leftovers.is_empty(),
        "the download was removed: {leftovers:?}"
    );
    assert!(!root
        .join("etc/systemd/system/fleetgate-dp.service")
        .exists());
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}
