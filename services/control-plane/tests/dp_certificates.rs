//! dp-client-certificates (register, list, delete, generate) and `identify`, which decides from
//! a client certificate which control plane a data-plane node belongs to.

mod support;

use fleetgate_control_plane::cluster::identity::{identify, IdentifyError};
use fleetgate_control_plane::store::{now_unix, Role};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::TestApp;

const DAY: i64 = 86_400;

fn params(cn: &str, from: i64, to: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = time::OffsetDateTime::from_unix_timestamp(from).expect("time");
    p.not_after = time::OffsetDateTime::from_unix_timestamp(to).expect("time");
    p
}

/// A self-signed leaf valid in [from, to]: (PEM, DER).
fn leaf(cn: &str, from: i64, to: i64) -> (String, Vec<u8>) {
    let key = KeyPair::generate().expect("key");
    let cert = params(cn, from, to).self_signed(&key).expect("sign");
    (cert.pem(), cert.der().to_vec())
}

fn current_leaf(cn: &str) -> (String, Vec<u8>) {
    let now = now_unix();
    leaf(cn, now - DAY, now + 30 * DAY)
}

/// A CA the user owns (pki mode): its PEM and an issuer to sign leaves with.
fn user_ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let now = now_unix();
    let key = KeyPair::generate().expect("key");
    let mut p = params(cn, now - DAY, now + 365 * DAY);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key).expect("sign ca");
    (cert.pem(), Issuer::new(p, key))
}

fn leaf_signed_by(issuer: &Issuer<'static, KeyPair>) -> Vec<u8> {
    let now = now_unix();
    let key = KeyPair::generate().expect("key");
    params("node", now - DAY, now + 30 * DAY)
        .signed_by(&key, issuer)
        .expect("sign leaf")
        .der()
        .to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

async fn pki_control_plane(app: &TestApp, token: &str, name: &str) -> String {
    app.post(
        "/v2/control-planes",
        token,
        json!({"name": name, "auth_type": "pki_client_certs"}),
    )
    .await
    .expect(201)
    .id()
}

fn certs_path(cp: &str) -> String {
    format!("/v2/control-planes/{cp}/dp-client-certificates")
}

#[tokio::test]
async fn register_list_show_delete() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let (cp, _) = app.control_plane(&admin, "cp").await;
    let path = certs_path(&cp);
    let (pem, der) = current_leaf("node-1");

    let created = app
        .post(&path, &admin, json!({"cert": pem}))
        .await
        .expect(201);
    let id = created.item_id();
    let item = &created.body["item"];
    assert_eq!(
        item["fingerprint_sha256"],
        hex::encode(Sha256::digest(&der))
    );
    assert_eq!(item["subject"], "CN=node-1");
    assert!(item["not_after"].as_i64().expect("not_after") > now_unix());
    assert!(item["created_at"].as_i64().is_some());
    assert_eq!(item["updated_at"], item["created_at"]);

    let shown = app.get(&format!("{path}/{id}"), &admin).await.expect(200);
    assert_eq!(
        der_of(shown.body["item"]["cert"].as_str().expect("cert")),
        der
    );
    let list = app.get(&path, &admin).await.expect(200);
    assert_eq!(list.body["items"].as_array().expect("items").len(), 1);
    assert_eq!(list.body["page"]["total"], 1);

    // The same certificate twice: 409 naming cert.
    let dup = app
        .post(&path, &admin, json!({"cert": pem}))
        .await
        .expect(409);
    assert_eq!(dup.invalid_fields(), vec!["cert"]);

    app.delete(&format!("{path}/{id}"), &admin)
        .await
        .expect(204);
    app.get(&format!("{path}/{id}"), &admin).await.expect(404);
    app.delete(&format!("{path}/{id}"), &admin)
        .await
        .expect(404);
    let list = app.get(&path, &admin).await.expect(200);
    assert_eq!(list.body["items"], json!([]));
    assert_eq!(list.body["page"]["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_certificates_are_400_naming_cert() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let (cp, _) = app.control_plane(&admin, "cp").await;
    let path = certs_path(&cp);
    let now = now_unix();
    let (expired, _) = leaf("old", now - 10 * DAY, now - DAY);
    let key_pem = KeyPair::generate().expect("key").serialize_pem();
    let (one, _) = current_leaf("a");
    let (two, _) = current_leaf("b");
    for (body, what) in [
        (json!({"cert": "not a certificate"}), "garbage"),
        (json!({"cert": ""}), "empty"),
        (json!({"cert": key_pem}), "a private key"),
        (
            json!({"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
            "PEM that is no certificate",
        ),
        (json!({"cert": expired}), "an expired certificate"),
        (json!({"cert": format!("{one}{two}")}), "two certificates"),
        (json!({"cert": 42}), "a number"),
    ] {
        let reply = app.post(&path, &admin, body).await;
        assert_eq!(reply.status.as_u16(), 400, "{what}: {}", reply.text);
        assert_eq!(
            reply.invalid_fields(),
            vec!["cert"],
            "{what}: {}",
            reply.text
        );
    }
    let expired_reply = app.post(&path, &admin, json!({"cert": expired})).await;
    assert!(
        expired_reply.text.contains("expired"),
        "{}",
        expired_reply.text
    );
    app.stop().await;
}

#[tokio::test]
async fn organizations_and_roles_are_isolated() {
    let app = TestApp::start().await;
    let admin_a = app.token("org-a", Role::Admin).await;
    let viewer_a = app.token("org-a", Role::Viewer).await;
    let admin_b = app.token("org-b", Role::Admin).await;
    let (cp, _) = app.control_plane(&admin_a, "cp").await;
    let path = certs_path(&cp);
    let (pem, _) = current_leaf("n");
    let id = app
        .post(&path, &admin_a, json!({"cert": pem}))
        .await
        .expect(201)
        .item_id();
    let item = format!("{path}/{id}");

    // Org B sees nothing of org A's control plane and cannot change it.
    app.get(&path, &admin_b).await.expect(404);
    app.get(&item, &admin_b).await.expect(404);
    app.delete(&item, &admin_b).await.expect(404);
    let (other, _) = current_leaf("m");
    app.post(&path, &admin_b, json!({"cert": other}))
        .await
        .expect(404);
    app.post(&format!("{path}/generate"), &admin_b, json!({}))
        .await
        .expect(404);

    // Viewers read, never write.
    app.get(&path, &viewer_a).await.expect(200);
    app.get(&item, &viewer_a).await.expect(200);
    app.delete(&item, &viewer_a).await.expect(403);
    app.post(&path, &viewer_a, json!({"cert": other}))
        .await
        .expect(403);
    app.call(
        reqwest::Method::POST,
        &format!("{path}/generate"),
        Some(&viewer_a),
        None,
    )
    .await
    .expect(403);
    app.get(&item, &admin_a).await.expect(200);
    app.stop().await;
}

/// Every row of every identity table, as text: proof of what is (not) stored.
async fn stored_identity_rows(app: &TestApp) -> String {
    use sqlx::{Connection, Row};
    let mut out = String::new();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url)
        .await
        .expect("connect");
    for (table, cols) in [
        (
            "dp_client_certificates",
            "id, cert, fingerprint_sha256, subject",
        ),
        ("control_plane_cas", "certificate_id, key_pem"),
    ] {
        for row in sqlx::query(&format!("SELECT {cols} FROM {table}"))
            .fetch_all(&mut conn)
            .await
            .expect("select")
        {
            for i in 0..row.len() {
                out.push_str(&row.try_get::<String, _>(i).expect("text column"));
                out.push('\n');
            }
        }
    }
    out
}

#[tokio::test]
async fn generate_pinned_returns_the_key_once_and_stores_only_the_certificate() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let (cp, _) = app.control_plane(&admin, "cp").await;
    let path = certs_path(&cp);

    let generated = app
        .call(
            reqwest::Method::POST,
            &format!("{path}/generate"),
            Some(&admin),
            None,
        )
        .await
        .expect(201);
    let item = &generated.body["item"];
    let key_pem = generated.body["key"].as_str().expect("key").to_string();
    assert!(key_pem.contains("PRIVATE KEY"));
    let cert_pem = item["cert"].as_str().expect("cert");
    let der = der_of(cert_pem);
    assert_eq!(
        item["fingerprint_sha256"],
        hex::encode(Sha256::digest(&der))
    );
    assert!(item["subject"]
        .as_str()
        .expect("subject")
        .contains("CN=fleetgate-dp"));
    let year = item["not_after"].as_i64().expect("not_after") - now_unix();
    assert!(
        (364 * DAY..=366 * DAY).contains(&year),
        "valid one year: {year}"
    );

    // The key belongs to the certificate.
    let key = KeyPair::from_pem(&key_pem).expect("parse key");
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parse cert");
    assert_eq!(
        parsed.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );

    // Registered (the certificate, never the key) and identifiable.
    let id = item["id"].as_str().expect("id");
    let shown = app.get(&format!("{path}/{id}"), &admin).await.expect(200);
    assert!(shown.body.get("key").is_none());
    assert!(!shown.text.contains("PRIVATE KEY"));
    let stored = stored_identity_rows(&app).await;
    assert!(stored.contains(item["fingerprint_sha256"].as_str().expect("fp")));
    assert!(
        !stored.contains("PRIVATE KEY"),
        "no key may be stored in pinned mode"
    );
    let identity = identify(&app.store, &der, None, now_unix())
        .await
        .expect("identify");
    assert_eq!(identity.control_plane_id.to_string(), cp);
    assert_eq!(identity.certificate_id.to_string(), id);

    // A second call makes a different certificate and key.
    let again = app
        .call(
            reqwest::Method::POST,
            &format!("{path}/generate"),
            Some(&admin),
            None,
        )
        .await
        .expect(201);
    assert_ne!(again.body["key"], generated.body["key"]);
    assert_ne!(again.body["item"]["id"], item["id"]);
    app.stop().await;
}

#[tokio::test]
async fn generate_pki_issues_leaves_from_one_ca_per_control_plane() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let cp = pki_control_plane(&app, &admin, "pki").await;
    let path = certs_path(&cp);
    let generate = || async {
        app.call(
            reqwest::Method::POST,
            &format!("{path}/generate"),
            Some(&admin),
            None,
        )
        .await
        .expect(201)
    };
    let first = generate().await;
    let second = generate().await;
    let ca_id = first.body["item"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        second.body["item"]["id"], first.body["item"]["id"],
        "one CA"
    );
    assert_ne!(second.body["item"]["cert"], first.body["item"]["cert"]);

    // The CA is the one registered certificate; the leaves are signed by it.
    let list = app.get(&path, &admin).await.expect(200);
    let data = list.body["items"].as_array().expect("items").clone();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], Value::String(ca_id.clone()));
    let ca_der = der_of(data[0]["cert"].as_str().expect("ca"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
    for reply in [&first, &second] {
        let leaf_der = der_of(reply.body["item"]["cert"].as_str().expect("leaf"));
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
        leaf.verify_signature(Some(ca.public_key()))
            .expect("leaf signed by the control plane CA");
        let identity = identify(&app.store, &leaf_der, None, now_unix())
            .await
            .expect("identify leaf");
        assert_eq!(identity.certificate_id.to_string(), ca_id);
        assert_eq!(identity.control_plane_id.to_string(), cp);
    }

    // Deleting the CA revokes its leaves; the next generate starts a new CA.
    app.delete(&format!("{path}/{ca_id}"), &admin)
        .await
        .expect(204);
    let leaf_der = der_of(first.body["item"]["cert"].as_str().expect("leaf"));
    let err = identify(&app.store, &leaf_der, None, now_unix())
        .await
        .expect_err("revoked");
    assert!(matches!(err, IdentifyError::Unknown { .. }), "{err}");
    let third = generate().await;
    assert_ne!(third.body["item"]["id"], Value::String(ca_id));
    app.stop().await;
}

#[tokio::test]
async fn identify_pinned_certificates() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let (cp1, _) = app.control_plane(&admin, "one").await;
    let (cp2, _) = app.control_plane(&admin, "two").await;
    let (pem, der) = current_leaf("node");
    let cert_id = app
        .post(&certs_path(&cp1), &admin, json!({"cert": pem}))
        .await
        .expect(201)
        .item_id();
    let org = app
        .store
        .organization_by_name("org-a")
        .await
        .expect("org")
        .expect("org");
    let now = now_unix();

    let identity = identify(&app.store, &der, None, now).await.expect("pinned");
    assert_eq!(identity.organization_id, org.id);
    assert_eq!(identity.control_plane_id.to_string(), cp1);
    assert_eq!(identity.certificate_id.to_string(), cert_id);
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parse");
    assert_eq!(
        identity.cert_expiry,
        parsed.validity().not_after.timestamp()
    );

    // Its own control plane's server name, or any other name: admitted.
    let sni1 = format!("{cp1}.cluster.fleetgate.internal");
    identify(&app.store, &der, Some(&sni1), now)
        .await
        .expect("own server name");
    identify(&app.store, &der, Some("localhost"), now)
        .await
        .expect("plain name");
    // Another control plane's server name: refused with 403.
    let sni2 = format!("{cp2}.cluster.fleetgate.internal");
    let err = identify(&app.store, &der, Some(&sni2), now)
        .await
        .expect_err("other cp");
    assert!(
        matches!(err, IdentifyError::ControlPlaneMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.http_status(), 403);
    assert!(err.to_string().contains(&cp2), "{err}");

    // Unknown, expired, not yet valid, malformed: 401 with the reason.
    let (_, stranger) = current_leaf("stranger");
    let err = identify(&app.store, &stranger, None, now)
        .await
        .expect_err("unknown");
    assert!(matches!(err, IdentifyError::Unknown { .. }), "{err}");
    assert_eq!(err.http_status(), 401);
    let (_, expired) = leaf("old", now - 10 * DAY, now - DAY);
    let err = identify(&app.store, &expired, None, now)
        .await
        .expect_err("expired");
    assert!(matches!(err, IdentifyError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired at"), "{err}");
    let later = identity.cert_expiry + 1;
    let err = identify(&app.store, &der, None, later)
        .await
        .expect_err("expired later");
    assert!(matches!(err, IdentifyError::Expired { .. }), "{err}");
    let (_, future) = leaf("future", now + DAY, now + 10 * DAY);
    let err = identify(&app.store, &future, None, now)
        .await
        .expect_err("not yet");
    assert!(matches!(err, IdentifyError::NotYetValid { .. }), "{err}");
    let err = identify(&app.store, b"junk", None, now)
        .await
        .expect_err("junk");
    assert!(matches!(err, IdentifyError::Malformed(_)), "{err}");

    // Registered with two control planes: the server name must choose.
    app.post(&certs_path(&cp2), &admin, json!({"cert": pem}))
        .await
        .expect(201);
    let err = identify(&app.store, &der, None, now)
        .await
        .expect_err("ambiguous");
    assert!(
        matches!(err, IdentifyError::Ambiguous { count: 2 }),
        "{err}"
    );
    let chosen = identify(&app.store, &der, Some(&sni2), now)
        .await
        .expect("chosen");
    assert_eq!(chosen.control_plane_id.to_string(), cp2);

    // Deleted: unknown again (for cp1).
    app.delete(&format!("{}/{cert_id}", certs_path(&cp1)), &admin)
        .await
        .expect(204);
    let err = identify(&app.store, &der, Some(&sni1), now)
        .await
        .expect_err("deleted");
    assert!(
        matches!(err, IdentifyError::ControlPlaneMismatch { .. }),
        "{err}"
    );
    app.stop().await;
}

#[tokio::test]
async fn identify_pki_certificates_by_signature() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let cp = pki_control_plane(&app, &admin, "pki").await;
    let (pinned_cp, _) = app.control_plane(&admin, "pinned").await;
    let (ca_pem, issuer) = user_ca("Example Nodes CA");
    let ca_id = app
        .post(&certs_path(&cp), &admin, json!({"cert": ca_pem}))
        .await
        .expect(201)
        .item_id();
    let now = now_unix();

    let node = leaf_signed_by(&issuer);
    let identity = identify(&app.store, &node, None, now)
        .await
        .expect("pki leaf");
    assert_eq!(identity.control_plane_id.to_string(), cp);
    assert_eq!(identity.certificate_id.to_string(), ca_id);
    let own = format!("{cp}.cluster.fleetgate.internal");
    identify(&app.store, &node, Some(&own), now)
        .await
        .expect("own name");
    let other = format!("{pinned_cp}.cluster.fleetgate.internal");
    let err = identify(&app.store, &node, Some(&other), now)
        .await
        .expect_err("other cp");
    assert_eq!(err.http_status(), 403, "{err}");

    // Same issuer name, different key: the signature decides, not the name.
    let (_, impostor) = user_ca("Example Nodes CA");
    let forged = leaf_signed_by(&impostor);
    let err = identify(&app.store, &forged, None, now)
        .await
        .expect_err("forged");
    assert!(matches!(err, IdentifyError::Unknown { .. }), "{err}");

    // The same CA pinned on a pinned control plane does not make its leaves pinned.
    app.post(&certs_path(&pinned_cp), &admin, json!({"cert": ca_pem}))
        .await
        .expect(201);
    let identity = identify(&app.store, &node, None, now)
        .await
        .expect("still pki only");
    assert_eq!(identity.control_plane_id.to_string(), cp);

    // Switching the control plane to pinned mode stops admitting leaves of its CA.
    app.patch(
        &format!("/v2/control-planes/{cp}"),
        &admin,
        json!({"auth_type": "pinned_client_certs"}),
    )
    .await
    .expect(200);
    let err = identify(&app.store, &node, None, now)
        .await
        .expect_err("not pki any more");
    assert!(matches!(err, IdentifyError::Unknown { .. }), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn control_planes_show_the_cluster_ca_and_their_server_name() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let (cp, _) = app.control_plane(&admin, "cp").await;
    let shown = app
        .get(&format!("/v2/control-planes/{cp}"), &admin)
        .await
        .expect(200);
    let config = &shown.body["config"];
    assert_eq!(
        config["cluster_server_name"],
        format!("{cp}.cluster.fleetgate.internal")
    );
    let ca = config["cluster_ca_cert"].as_str().expect("ca");
    assert_eq!(ca, app.cluster_ca_pem);
    assert_eq!(
        ca,
        std::fs::read_to_string(app.data_dir().join("cluster-ca.crt")).expect("ca file")
    );
    // Deleting the control plane deletes its certificates.
    let (pem, der) = current_leaf("n");
    app.post(&certs_path(&cp), &admin, json!({"cert": pem}))
        .await
        .expect(201);
    app.delete(&format!("/v2/control-planes/{cp}"), &admin)
        .await
        .expect(204);
    let err = identify(&app.store, &der, None, now_unix())
        .await
        .expect_err("gone");
    assert!(matches!(err, IdentifyError::Unknown { .. }), "{err}");
    app.stop().await;
}
