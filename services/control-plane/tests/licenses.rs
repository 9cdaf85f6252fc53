//! Licenses: every organisation has one (a default is issued on first use), signed with the
//! control plane's key from its data dir; only operators change it.

mod support;

use base64::Engine as _;
use fleetgate_control_plane::store::{now_unix, Role};
use fleetgate_protocol::license::{verify_license, verify_license_with_key, LicenseSigner};
use serde_json::json;
use support::TestApp;

const DAY: i64 = 86_400;

/// The public key of the signing key the server generated into its data dir.
fn public_key(app: &TestApp) -> String {
    let text = std::fs::read_to_string(app.data_dir().join("license-signing.key"))
        .expect("read the signing key");
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64")
        .try_into()
        .expect("32 bytes");
    LicenseSigner::from_seed(&seed).public_key_b64()
}

async fn org_id(app: &TestApp, name: &str) -> String {
    app.store
        .organization_by_name(name)
        .await
        .expect("look up org")
        .expect("org exists")
        .id
        .to_string()
}

#[tokio::test]
async fn default_license_is_issued_once_and_verifies_with_the_data_dir_key() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let viewer = app.token("org-a", Role::Viewer).await;
    let org = org_id(&app, "org-a").await;
    let path = format!("/v2/organizations/{org}/license");

    let first = app.get(&path, &admin).await.expect(200);
    let body = &first.body;
    assert_eq!(body["organization_id"], org.as_str());
    let issued = body["issued_at"].as_i64().expect("issued_at");
    let expires = body["expires_at"].as_i64().expect("expires_at");
    assert!((now_unix() - issued).abs() < 60);
    assert_eq!(expires - issued, 365 * DAY);

    let blob = body["signed_blob"].as_str().expect("blob");
    let claims = verify_license_with_key(blob, &public_key(&app)).expect("verifies");
    assert_eq!(
        claims.license_id.to_string(),
        body["license_id"].as_str().expect("id")
    );
    assert_eq!(claims.organization_id.to_string(), org);
    assert_eq!((claims.issued_at, claims.expires_at), (issued, expires));

    // Stable: the same license again, for viewers too.
    let again = app.get(&path, &viewer).await.expect(200);
    assert_eq!(again.body, first.body);
    app.stop().await;
}

#[tokio::test]
async fn only_operators_replace_a_license_and_the_new_one_is_signed() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let viewer = app.token("org-a", Role::Viewer).await;
    let operator = app.token("fleetgate-ops", Role::Operator).await;
    let org = org_id(&app, "org-a").await;
    let path = format!("/v2/organizations/{org}/license");
    let before = app.get(&path, &admin).await.expect(200);
    let expires_at = now_unix() + 30 * DAY;

    let refused = app
        .put(&path, &admin, json!({"expires_at": expires_at}))
        .await
        .expect(403);
    assert!(refused.text.contains("operator"), "{}", refused.text);
    app.put(&path, &viewer, json!({"expires_at": expires_at}))
        .await
        .expect(403);

    let put = app
        .put(&path, &operator, json!({"expires_at": expires_at}))
        .await
        .expect(200);
    assert_eq!(put.body["expires_at"], expires_at);
    assert_eq!(put.body["organization_id"], org.as_str());
    assert_ne!(put.body["license_id"], before.body["license_id"]);
    let claims = verify_license_with_key(
        put.body["signed_blob"].as_str().expect("blob"),
        &public_key(&app),
    )
    .expect("verifies");
    assert_eq!(claims.expires_at, expires_at);

    // The organisation now reads the new license.
    let after = app.get(&path, &admin).await.expect(200);
    assert_eq!(after.body, put.body);

    // A past expiry is accepted: it revokes.
    let revoked = app
        .put(&path, &operator, json!({"expires_at": 1}))
        .await
        .expect(200);
    let claims = verify_license(revoked.body["signed_blob"].as_str().expect("blob")).expect("ok");
    assert!(claims.is_expired(now_unix()));

    // Bad bodies name the field.
    for body in [
        json!({"expires_at": "soon"}),
        json!({}),
        json!({"expires_at": -5}),
    ] {
        let reply = app.put(&path, &operator, body).await.expect(400);
        assert_eq!(reply.invalid_fields(), vec!["expires_at"], "{}", reply.text);
    }
    app.stop().await;
}

#[tokio::test]
async fn licenses_are_isolated_between_organizations() {
    let app = TestApp::start().await;
    let admin_a = app.token("org-a", Role::Admin).await;
    let admin_b = app.token("org-b", Role::Admin).await;
    let operator = app.token("fleetgate-ops", Role::Operator).await;
    let org_a = org_id(&app, "org-a").await;
    let path = format!("/v2/organizations/{org_a}/license");

    app.get(&path, &admin_b).await.expect(404);
    app.put(&path, &admin_b, json!({"expires_at": now_unix()}))
        .await
        .expect(403);
    let a = app.get(&path, &admin_a).await.expect(200);
    let seen_by_operator = app.get(&path, &operator).await.expect(200);
    assert_eq!(a.body, seen_by_operator.body);

    let unknown = "/v2/organizations/8b0e8a6e-2f5c-4c1e-9d5e-0a7f3c2b1d4e/license";
    app.get(unknown, &operator).await.expect(404);
    app.put(unknown, &operator, json!({"expires_at": now_unix()}))
        .await
        .expect(404);
    app.get("/v2/organizations/not-a-uuid/license", &operator)
        .await
        .expect(404);
    app.stop().await;
}
