//! `core-entities/ca-certificates` through the API (Kong's `ca_certificates`), services that
//! trust them, and key-auth `ttl` shown back with its expiry. Request bodies are Konnect's
//! published examples (CA-Certificate: `cert`, `cert_digest`, `id`, `tags`), with a
//! generated certificate in place of the example PEM.

mod support;

use fleetgate_control_plane::store::Role;
use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};
use support::TestApp;

/// A self-signed certificate (a CA or not) valid until `not_after_year`, and its DER.
fn cert_pem(ca: bool, not_after_year: i32) -> (String, Vec<u8>) {
    let mut params = CertificateParams::new(vec!["ca.example.com".to_string()]).expect("params");
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(not_after_year, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("sign");
    (cert.pem(), cert.der().to_vec())
}

#[tokio::test]
async fn ca_certificates_follow_konnect_shapes() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (cp, base) = app.control_plane(&t, "cp").await;
    let (pem, der) = cert_pem(true, 2099);
    let before = app.expected_hash(&cp, &t).await;
    // Konnect's example body: the digest a client sends is recomputed, as Kong does.
    let created = app
        .post(
            &format!("{base}/ca-certificates"),
            &t,
            json!({
                "cert": pem,
                "cert_digest": "f1b8d4d3b8b2c1c8e8d1e7a3a9c9c1f2b7f0f1a0b9e8d7c6b5a4f3e2d1c0b9a8",
                "id": "7fca84d6-7d37-4a74-a7b0-93e576089a41",
                "tags": ["user-level", "low-priority"],
            }),
        )
        .await
        .expect(201);
    let b = &created.body;
    assert_eq!(b["id"], "7fca84d6-7d37-4a74-a7b0-93e576089a41");
    assert_eq!(b["cert"], pem);
    assert_eq!(b["cert_digest"], hex::encode(Sha256::digest(&der)));
    assert_eq!(b["tags"], json!(["user-level", "low-priority"]));
    assert!(b["created_at"].is_i64());
    assert!(b["updated_at"].is_i64());
    let mut keys: Vec<&str> = b
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cert",
            "cert_digest",
            "created_at",
            "id",
            "tags",
            "updated_at"
        ]
    );
    assert_ne!(app.expected_hash(&cp, &t).await, before);

    let id = created.id();
    let shown = app
        .get(&format!("{base}/ca-certificates/{id}"), &t)
        .await
        .expect(200);
    assert_eq!(shown.body["cert_digest"], b["cert_digest"]);
    let listed = app
        .get(&format!("{base}/ca-certificates"), &t)
        .await
        .expect(200);
    assert_eq!(listed.body["data"][0]["id"], id.as_str());

    // The same CA twice: Kong's cert_digest is unique.
    let again = app
        .post(
            &format!("{base}/ca-certificates"),
            &t,
            json!({ "cert": pem }),
        )
        .await
        .expect(409);
    assert!(again.text.contains("cert_digest"), "{}", again.text);

    // PATCH keeps the digest computed; PUT by id upserts.
    let patched = app
        .patch(
            &format!("{base}/ca-certificates/{id}"),
            &t,
            json!({"tags": ["rotated"]}),
        )
        .await
        .expect(200);
    assert_eq!(patched.body["cert_digest"], b["cert_digest"]);
    let (other, _) = cert_pem(true, 2098);
    app.put(
        &format!("{base}/ca-certificates/0b2a4a0c-6d0c-4d63-8a41-2a8f9e1c7d35"),
        &t,
        json!({ "cert": other }),
    )
    .await
    .expect(200);
    app.stop().await;
}

#[tokio::test]
async fn bad_ca_certificates_are_400_naming_cert() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, base) = app.control_plane(&t, "cp").await;
    let path = format!("{base}/ca-certificates");
    let (leaf, _) = cert_pem(false, 2099);
    let (expired, _) = cert_pem(true, 2021);
    let (a, _) = cert_pem(true, 2099);
    let (b, _) = cert_pem(true, 2099);
    let cases = [
        (json!({ "cert": "not a certificate" }), "cert", "PEM"),
        (
            json!({ "cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }),
            "cert",
            "invalid certificate",
        ),
        (json!({ "cert": leaf }), "cert", "basic constraint"),
        (json!({ "cert": expired }), "cert", "certificate expired"),
        (
            json!({ "cert": format!("{a}{b}") }),
            "cert",
            "only one certificate",
        ),
        (json!({}), "cert", "required"),
        (json!({ "cert": a, "key": "x" }), "key", "unknown field"),
    ];
    for (body, field, reason) in cases {
        let reply = app.post(&path, &t, body).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field.to_string()],
            "{}",
            reply.text
        );
        assert!(reply.text.contains(reason), "{reason}: {}", reply.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn services_trust_ca_certificates_which_cannot_be_deleted_while_used() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, base) = app.control_plane(&t, "cp").await;
    let (pem, _) = cert_pem(true, 2099);
    let ca = app
        .post(
            &format!("{base}/ca-certificates"),
            &t,
            json!({ "cert": pem }),
        )
        .await
        .expect(201)
        .id();

    // A dangling id is refused, naming the list element.
    let missing = "3c1ad0a8-5c4f-4f0b-9a8a-0c9b3c6a2e10";
    let reply = app
        .post(
            &format!("{base}/services"),
            &t,
            json!({"name": "api", "url": "https://api.internal", "ca_certificates": [missing]}),
        )
        .await
        .expect(400);
    assert!(reply.text.contains("ca_certificates[0]"), "{}", reply.text);
    assert!(reply.text.contains(missing), "{}", reply.text);
    // Only TLS services verify an upstream certificate.
    app.post(
        &format!("{base}/services"),
        &t,
        json!({"name": "plain", "url": "http://api.internal", "ca_certificates": [ca]}),
    )
    .await
    .expect(400);

    let svc = app
        .post(
            &format!("{base}/services"),
            &t,
            json!({
                "name": "api",
                "url": "https://api.internal",
                "tls_verify": true,
                "tls_verify_depth": 2,
                "ca_certificates": [ca],
            }),
        )
        .await
        .expect(201);
    assert_eq!(svc.body["ca_certificates"], json!([ca]));
    assert_eq!(svc.body["tls_verify"], true);
    assert_eq!(svc.body["tls_verify_depth"], 2);

    // Kong refuses to delete a CA certificate a service still references.
    let refused = app
        .delete(&format!("{base}/ca-certificates/{ca}"), &t)
        .await
        .expect(409);
    assert!(refused.text.contains("service 'api'"), "{}", refused.text);
    app.patch(
        &format!("{base}/services/api"),
        &t,
        json!({"ca_certificates": []}),
    )
    .await
    .expect(200);
    app.delete(&format!("{base}/ca-certificates/{ca}"), &t)
        .await
        .expect(204);
    app.get(&format!("{base}/ca-certificates/{ca}"), &t)
        .await
        .expect(404);
    app.stop().await;
}

#[tokio::test]
async fn key_auth_ttl_is_shown_back_with_its_expiry() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, base) = app.control_plane(&t, "cp").await;
    app.post(
        &format!("{base}/consumers"),
        &t,
        json!({"username": "alice"}),
    )
    .await
    .expect(201);
    let cred = app
        .post(
            &format!("{base}/consumers/alice/key-auth"),
            &t,
            // A client-chosen expiry is ignored: it is derived from ttl.
            json!({"key": "alice-key", "ttl": 3600, "expires_at": 1}),
        )
        .await
        .expect(201);
    let created_at = cred.body["created_at"].as_i64().expect("created_at");
    assert_eq!(cred.body["ttl"], 3600);
    assert_eq!(cred.body["expires_at"], created_at + 3600);
    let shown = app
        .get(
            &format!("{base}/consumers/alice/key-auth/{}", cred.id()),
            &t,
        )
        .await
        .expect(200);
    assert_eq!(shown.body["expires_at"], created_at + 3600);
    // Changing the ttl moves the expiry, still counted from creation.
    let patched = app
        .patch(
            &format!("{base}/consumers/alice/key-auth/{}", cred.id()),
            &t,
            json!({"ttl": 60}),
        )
        .await
        .expect(200);
    assert_eq!(patched.body["expires_at"], created_at + 60);
    let forever = app
        .patch(
            &format!("{base}/consumers/alice/key-auth/{}", cred.id()),
            &t,
            json!({"ttl": null}),
        )
        .await
        .expect(200);
    assert!(forever.body.get("expires_at").is_none_or(|v| v.is_null()));
    app.post(
        &format!("{base}/consumers/alice/key-auth"),
        &t,
        json!({"ttl": 0}),
    )
    .await
    .expect(400);
    app.stop().await;
}
