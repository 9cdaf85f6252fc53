//! HTTPS on `proxy_listen_tls`: the certificate is chosen by SNI from the config.

mod support;

use serde_json::Value;
use support::{echo_upstream, Dp};

const CERT_A: &str =
    include_str!("../../../services/control-plane/tests/fixtures/example.com.cert.pem");
const KEY_A: &str =
    include_str!("../../../services/control-plane/tests/fixtures/example.com.key.pem");
const CERT_B: &str =
    include_str!("../../../services/control-plane/tests/fixtures/api.example.com.cert.pem");
const KEY_B: &str =
    include_str!("../../../services/control-plane/tests/fixtures/api.example.com.key.pem");

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("      {l}\n")).collect()
}

#[tokio::test]
async fn two_snis_get_their_own_certificates() {
    let up = echo_upstream().await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://{up}\n    routes: [{{name: a, paths: [/]}}]\ncertificates:\n  - cert: |\n{}    key: |\n{}    snis: [{{name: example.com}}]\n  - cert: |\n{}    key: |\n{}    snis: [{{name: api.example.com}}]\n",
        indent(CERT_A),
        indent(KEY_A),
        indent(CERT_B),
        indent(KEY_B)
    );
    let dp = Dp::start_with(&yaml, &[("proxy_listen_tls", "127.0.0.1:0")]).await;
    let tls_addr = dp.dp.proxy_tls_addr.expect("tls listener");
    for (host, cert) in [("example.com", CERT_A), ("api.example.com", CERT_B)] {
        // Trusting only this host's certificate proves the proxy presented exactly it.
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).expect("pem"))
            .resolve(host, tls_addr)
            .build()
            .expect("client");
        let resp = client
            .get(format!("https://{host}:{}/hello", tls_addr.port()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("https to {host}: {e:?}"));
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    }
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn https_upstreams_are_spoken_to_over_tls_and_verified_only_when_asked() {
    let up = support::https_upstream().await;
    let dp = Dp::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: default\n    url: https://127.0.0.1:{port}\n    routes: [{{name: a, paths: [/plain]}}]\n  - name: strict\n    url: https://127.0.0.1:{port}\n    tls_verify: true\n    retries: 0\n    routes: [{{name: b, paths: [/strict]}}]\n",
        port = up.port()
    ))
    .await;
    // Kong's default (tls_verify unset): encrypted, not verified.
    let resp = reqwest::get(format!("{}/plain/x", dp.base))
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["tls"], true);
    assert_eq!(body["path"], "/x");
    // tls_verify: a self-signed certificate is refused.
    let resp = reqwest::get(format!("{}/strict/x", dp.base))
        .await
        .expect("send");
    assert_eq!(resp.status(), 502);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_key_that_does_not_belong_to_its_certificate_is_refused_and_the_old_config_stays() {
    let up = echo_upstream().await;
    let good = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://{up}\n    routes: [{{name: a, paths: [/]}}]\n"
    );
    let dp = Dp::start(&good).await;
    let before = dp.dp.gateway.current().hash.clone();
    let mismatched = format!(
        "{good}certificates:\n  - cert: |\n{}    key: |\n{}    snis: [{{name: example.com}}]\n",
        indent(CERT_A),
        indent(KEY_B)
    );
    let err = dp
        .rewrite(&mismatched)
        .expect_err("a mismatched key pair must be refused");
    assert!(
        err.to_string()
            .contains("the private key does not match the certificate"),
        "{err}"
    );
    assert_eq!(dp.dp.gateway.current().hash, before);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn https_clients_get_http_1_1_from_the_fast_path_and_http_2_when_they_offer_it() {
    let up = echo_upstream().await;
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://{up}\n    routes: [{{name: a, paths: [/]}}]\ncertificates:\n  - cert: |\n{}    key: |\n{}    snis: [{{name: example.com}}]\n",
        indent(CERT_A),
        indent(KEY_A),
    );
    let dp = Dp::start_with(&yaml, &[("proxy_listen_tls", "127.0.0.1:0")]).await;
    let tls_addr = dp.dp.proxy_tls_addr.expect("tls listener");
    let builder = || {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(CERT_A.as_bytes()).expect("pem"))
            .resolve("example.com", tls_addr)
    };
    let http1 = builder().http1_only().build().expect("client");
    let http2 = builder().build().expect("client");
    for (client, version) in [
        (http1, reqwest::Version::HTTP_11),
        (http2, reqwest::Version::HTTP_2),
    ] {
        // Several requests on one connection: keep-alive over TLS on either path.
        for i in 0..3 {
            let resp = client
                .get(format!("https://example.com:{}/n/{i}?q=1", tls_addr.port()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{version:?} request {i}: {e:?}"));
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), version);
            assert_eq!(resp.headers()["via"], "1.1 fleetgate");
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["path"], format!("/n/{i}"));
            assert_eq!(body["query"], "q=1");
            assert_eq!(body["headers"]["x-forwarded-proto"], "https");
            assert_eq!(body["headers"]["host"], up.to_string());
        }
    }
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn upstream_certificates_are_verified_against_the_services_ca_certificates() {
    let pki = support::TestPki::generate();
    let other = support::TestPki::generate();
    let up = support::https_upstream_with(&pki.cert, &pki.key).await;
    let right = "0f6a1c3e-1b7a-4f43-9a55-3c1f1c1a0b01";
    let wrong = "0f6a1c3e-1b7a-4f43-9a55-3c1f1c1a0b02";
    let service = |name: &str, verify: bool, ca: &str, extra: &str| {
        format!(
            "  - name: {name}\n    url: https://127.0.0.1:{port}\n    tls_verify: {verify}\n    ca_certificates: [{ca}]\n    retries: 0\n{extra}    routes: [{{name: {name}, paths: [/{name}]}}]\n",
            port = up.port()
        )
    };
    let yaml = format!(
        "_format_version: \"3.0\"\nca_certificates:\n  - id: {right}\n    cert: |\n{}  - id: {wrong}\n    cert: |\n{}services:\n{}{}{}{}",
        indent(&pki.ca),
        indent(&other.ca),
        service("right", true, right, ""),
        service("wrong", true, wrong, ""),
        service("off", false, wrong, ""),
        service("shallow", true, right, "    tls_verify_depth: 0\n"),
    );
    let dp = Dp::start(&yaml).await;
    let status = |path: &'static str| {
        let url = format!("{}{path}", dp.base);
        async move { reqwest::get(url).await.expect("send").status().as_u16() }
    };
    // Signed by the CA the service trusts, for the name it dials: verified.
    assert_eq!(status("/right/x").await, 200);
    // Another CA: Kong's 502.
    assert_eq!(status("/wrong/x").await, 502);
    // tls_verify false: encrypted, not verified, whatever the CA list says.
    assert_eq!(status("/off/x").await, 200);
    // The trusted CA stands one level above the certificate: depth 0 is too shallow.
    assert_eq!(status("/shallow/x").await, 502);
    dp.dp.shutdown().await;
}
