//! Join tokens and `/v1/enrol`: a node redeems a single-use, short-lived token for a
//! certificate of its own key over the real cluster listener (TLS 1.3, WebSocket), and that
//! certificate opens a `/v1/outlet` session. Runs on SQLite, or PostgreSQL with
//! FLEETGATE_TEST_DATABASE_URL.

#[path = "support/dp_client.rs"]
mod dp_client;
mod support;

use std::time::Duration;

use dp_client::{enrol, DpConn, NodeKey};
use fleetgate_control_plane::cluster::identity::identify;
use fleetgate_control_plane::store::{now_unix, NewJoinToken, Role};
use fleetgate_protocol::{CpMessage, EnrolAnswer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use support::TestApp;
use uuid::Uuid;

const VERSION: &str = env!("CARGO_PKG_VERSION");

async fn control_plane(app: &TestApp, token: &str, name: &str, auth_type: &str) -> String {
    app.post(
        "/v2/control-planes",
        token,
        json!({"name": name, "auth_type": auth_type}),
    )
    .await
    .expect(201)
    .id()
}

async fn join_token(app: &TestApp, admin: &str, cp: &str) -> String {
    let created = app
        .post(
            &format!("/v2/control-planes/{cp}/dp-join-tokens"),
            admin,
            json!({"ttl_seconds": 600}),
        )
        .await
        .expect(201);
    created.body["token"]
        .as_str()
        .expect("token text")
        .to_string()
}

async fn enrol_with(app: &TestApp, token: &str, key: &NodeKey) -> EnrolAnswer {
    enrol(app.cluster_addr, &app.cluster_ca_pem, token, &key.csr_pem)
        .await
        .expect("an enrol answer")
}

#[track_caller]
fn enrolled_cert(answer: EnrolAnswer) -> String {
    match answer {
        EnrolAnswer::Enrolled { cert } => cert,
        EnrolAnswer::EnrolRefused { reason } => panic!("enrolment refused: {reason}"),
    }
}

#[track_caller]
fn refusal(answer: EnrolAnswer) -> String {
    match answer {
        EnrolAnswer::EnrolRefused { reason } => reason,
        EnrolAnswer::Enrolled { .. } => panic!("expected a refusal, got a certificate"),
    }
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("certificate PEM")
        .to_vec()
}

/// Dials `/v1/outlet` with the enrolled certificate and says hello; the license arriving
/// proves the session was opened for the node.
async fn session_works(app: &TestApp, key: &NodeKey, cert_pem: &str) -> DpConn {
    let mut dp = DpConn::dial(
        app.cluster_addr,
        &app.cluster_ca_pem,
        &key.with_cert(cert_pem),
        Uuid::new_v4(),
        VERSION,
    )
    .await
    .expect("dial /v1/outlet with the enrolled certificate");
    dp.hello(VERSION, "").await;
    assert!(
        matches!(dp.recv().await, CpMessage::License { .. }),
        "a session starts with the license"
    );
    dp
}

#[tokio::test]
async fn pinned_enrolment_registers_the_certificate_and_the_token_is_single_use() {
    let app = TestApp::start().await;
    let admin = app.token("acme", Role::Admin).await;
    let cp = control_plane(&app, &admin, "pinned", "pinned_client_certs").await;
    let token = join_token(&app, &admin, &cp).await;
    assert!(token.starts_with("fgjt_"), "{token}");
    assert_eq!(token.len(), "fgjt_".len() + 43);

    let key = NodeKey::generate();
    let cert = enrolled_cert(enrol_with(&app, &token, &key).await);
    let info = fleetgate_control_plane::cluster::identity::CertificateInfo::from_pem(&cert)
        .expect("a certificate");
    // The control plane decides the subject, whatever the CSR asked for.
    assert!(info.subject.contains("CN=fleetgate-dp"), "{}", info.subject);
    assert!(!cert.contains("PRIVATE KEY"));

    let identity = identify(&app.store, &der_of(&cert), None, now_unix())
        .await
        .expect("identify accepts the enrolled certificate");
    assert_eq!(identity.control_plane_id.to_string(), cp);

    // It is listed like any pinned certificate, and deleting it ends the node's session.
    let listed = app
        .get(
            &format!("/v2/control-planes/{cp}/dp-client-certificates"),
            &admin,
        )
        .await
        .expect(200);
    let registered = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|c| c["fingerprint_sha256"] == info.fingerprint_sha256.as_str())
        .expect("the enrolled certificate is registered")
        .clone();
    let mut dp = session_works(&app, &key, &cert).await;

    // The same token again, even with a fresh key: refused, nothing more registered.
    let again = refusal(enrol_with(&app, &token, &NodeKey::generate()).await);
    assert_eq!(again, "join token already used");
    let listed = app
        .get(
            &format!("/v2/control-planes/{cp}/dp-client-certificates"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));

    app.delete(
        &format!(
            "/v2/control-planes/{cp}/dp-client-certificates/{}",
            registered["id"].as_str().expect("id")
        ),
        &admin,
    )
    .await
    .expect(204);
    dp.expect_closed(Duration::from_secs(5)).await;
    app.stop().await;
}

#[tokio::test]
async fn pki_enrolment_is_signed_by_the_control_plane_ca() {
    let app = TestApp::start().await;
    let admin = app.token("acme", Role::Admin).await;
    let cp = control_plane(&app, &admin, "pki", "pki_client_certs").await;
    let key = NodeKey::generate();
    let cert = enrolled_cert(enrol_with(&app, &join_token(&app, &admin, &cp).await, &key).await);
    let identity = identify(&app.store, &der_of(&cert), None, now_unix())
        .await
        .expect("identify accepts the enrolled certificate");
    assert_eq!(identity.control_plane_id.to_string(), cp);
    // The CA vouches for the node: only the CA is registered, as with `generate`.
    let listed = app
        .get(
            &format!("/v2/control-planes/{cp}/dp-client-certificates"),
            &admin,
        )
        .await
        .expect(200);
    let registered = listed.body["items"].as_array().expect("items");
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0]["id"], identity.certificate_id.to_string());
    let dp = session_works(&app, &key, &cert).await;
    dp.close().await;

    // `generate` keeps using the same CA.
    app.post(
        &format!("/v2/control-planes/{cp}/dp-client-certificates/generate"),
        &admin,
        json!({}),
    )
    .await
    .expect(201);
    let listed = app
        .get(
            &format!("/v2/control-planes/{cp}/dp-client-certificates"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

#[tokio::test]
async fn unknown_expired_and_malformed_are_refused_with_the_reason() {
    let app = TestApp::start().await;
    let admin = app.token("acme", Role::Admin).await;
    let cp = control_plane(&app, &admin, "cp", "pinned_client_certs").await;
    let key = NodeKey::generate();

    let unknown = refusal(enrol_with(&app, "fgjt_not-a-real-token", &key).await);
    assert_eq!(unknown, "unknown join token");

    // A malformed CSR is refused without spending the token.
    let token = join_token(&app, &admin, &cp).await;
    let malformed = refusal(
        enrol(app.cluster_addr, &app.cluster_ca_pem, &token, "not a CSR")
            .await
            .expect("an answer"),
    );
    assert!(malformed.starts_with("malformed CSR"), "{malformed}");
    enrolled_cert(enrol_with(&app, &token, &key).await);

    // Expiry follows the store's clock.
    let org = app
        .store
        .ensure_organization("acme")
        .await
        .expect("organisation");
    let cp_id: Uuid = cp.parse().expect("control plane id");
    let now = now_unix();
    app.store.clock().pin(now);
    let (record, short) = app
        .store
        .create_join_token(
            org.id,
            cp_id,
            NewJoinToken {
                ttl: Duration::from_secs(1),
                configuration_id: None,
                slot: Some(3),
            },
        )
        .await
        .expect("create a token");
    assert_eq!(record.expires_at, now + 1);
    assert_eq!(record.slot, Some(3));
    app.store.clock().pin(now + 1);
    let expired = refusal(enrol_with(&app, &short, &NodeKey::generate()).await);
    assert_eq!(expired, "join token expired");

    // A day later housekeeping removes it; it is then unknown.
    app.store.clock().pin(now + 2 * 86_400);
    assert!(
        app.store
            .delete_expired_join_tokens()
            .await
            .expect("delete")
            >= 1
    );
    let gone = refusal(enrol_with(&app, &short, &NodeKey::generate()).await);
    assert_eq!(gone, "unknown join token");
    app.store.clock().release();
    app.stop().await;
}

#[tokio::test]
async fn two_nodes_racing_with_one_token_get_one_certificate() {
    let app = TestApp::start().await;
    let admin = app.token("acme", Role::Admin).await;
    let cp = control_plane(&app, &admin, "cp", "pinned_client_certs").await;
    let token = join_token(&app, &admin, &cp).await;
    let (a, b) = (NodeKey::generate(), NodeKey::generate());
    let (first, second) = tokio::join!(enrol_with(&app, &token, &a), enrol_with(&app, &token, &b));
    let won = [&first, &second]
        .iter()
        .filter(|answer| matches!(answer, EnrolAnswer::Enrolled { .. }))
        .count();
    assert_eq!(won, 1, "{first:?} / {second:?}");
    let listed = app
        .get(
            &format!("/v2/control-planes/{cp}/dp-client-certificates"),
            &admin,
        )
        .await
        .expect(200);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_checks_ttl_role_and_organisation() {
    let app = TestApp::start().await;
    let admin = app.token("acme", Role::Admin).await;
    let viewer = app.token("acme", Role::Viewer).await;
    let other = app.token("other", Role::Admin).await;
    let cp = control_plane(&app, &admin, "cp", "pinned_client_certs").await;
    let path = format!("/v2/control-planes/{cp}/dp-join-tokens");

    // No body: the default lifetime.
    let created = app
        .call(reqwest::Method::POST, &path, Some(&admin), None)
        .await
        .expect(201);
    let expires_at = created.body["expires_at"].as_i64().expect("expires_at");
    assert!((expires_at - now_unix() - 900).abs() <= 5, "{expires_at}");
    assert!(created.body["id"].as_str().is_some());

    for bad in [json!({"ttl_seconds": 0}), json!({"ttl_seconds": 86_401})] {
        let reply = app.post(&path, &admin, bad).await.expect(400);
        assert_eq!(reply.invalid_fields(), vec!["ttl_seconds"]);
    }
    app.post(&path, &admin, json!({"ttl": 5})).await.expect(400);
    app.post(&path, &viewer, json!({})).await.expect(403);
    app.post(&path, &other, json!({})).await.expect(404);
    app.stop().await;
}
