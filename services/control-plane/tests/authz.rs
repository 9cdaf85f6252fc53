//! Authorisation matrix: an organisation's tokens never read or change another's resources,
//! viewers cannot write, and requests without a valid token are refused.

mod support;

use fleetgate_control_plane::store::Role;
use reqwest::Method;
use serde_json::{json, Value};
use support::TestApp;

const CERT: &str = include_str!("fixtures/example.com.cert.pem");
const KEY: &str = include_str!("fixtures/example.com.key.pem");

/// One resource of every type in org A; returns (item path, list path, PATCH body — null
/// where the resource has no PATCH).
async fn resources_of_every_type(app: &TestApp, token: &str) -> Vec<(String, String, Value)> {
    let (cp, base) = app.control_plane(token, "a-cp").await;
    let svc = app
        .post(
            &format!("{base}/services"),
            token,
            json!({"name": "svc", "url": "http://127.0.0.1:9000"}),
        )
        .await
        .expect(201)
        .id();
    let route = app
        .post(
            &format!("{base}/routes"),
            token,
            json!({"name": "r", "paths": ["/r"], "service": {"id": svc}}),
        )
        .await
        .expect(201)
        .id();
    let consumer = app
        .post(
            &format!("{base}/consumers"),
            token,
            json!({"username": "alice"}),
        )
        .await
        .expect(201)
        .id();
    let cred = app
        .post(
            &format!("{base}/consumers/{consumer}/key-auth"),
            token,
            json!({"key": "alice-secret-key"}),
        )
        .await
        .expect(201)
        .id();
    let plugin = app
        .post(
            &format!("{base}/plugins"),
            token,
            json!({"name": "rate-limiting", "config": {"minute": 10}}),
        )
        .await
        .expect(201)
        .id();
    let upstream = app
        .post(
            &format!("{base}/upstreams"),
            token,
            json!({"name": "up.internal"}),
        )
        .await
        .expect(201)
        .id();
    let target = app
        .post(
            &format!("{base}/targets"),
            token,
            json!({"target": "127.0.0.1:9001", "upstream": {"id": upstream}}),
        )
        .await
        .expect(201)
        .id();
    let cert = app
        .post(
            &format!("{base}/certificates"),
            token,
            json!({"cert": CERT, "key": KEY}),
        )
        .await
        .expect(201)
        .id();
    let sni = app
        .post(
            &format!("{base}/snis"),
            token,
            json!({"name": "example.com", "certificate": {"id": cert}}),
        )
        .await
        .expect(201)
        .id();
    let cloud = cloud_gateway_resources(app, token, &cp).await;
    let tokens = app.get("/v2/tokens", token).await.expect(200);
    let token_id = tokens.body["data"][0]["id"]
        .as_str()
        .expect("token id")
        .to_string();
    vec![
        (
            format!("/v2/control-planes/{cp}"),
            "/v2/control-planes".into(),
            json!({"description": "x"}),
        ),
        (
            format!("{base}/services/{svc}"),
            format!("{base}/services"),
            json!({"retries": 1}),
        ),
        (
            format!("{base}/routes/{route}"),
            format!("{base}/routes"),
            json!({"strip_path": false}),
        ),
        (
            format!("{base}/consumers/{consumer}"),
            format!("{base}/consumers"),
            json!({"custom_id": "x"}),
        ),
        (
            format!("{base}/consumers/{consumer}/key-auth/{cred}"),
            format!("{base}/consumers/{consumer}/key-auth"),
            json!({"key": "other-key-1234"}),
        ),
        (
            format!("{base}/plugins/{plugin}"),
            format!("{base}/plugins"),
            json!({"enabled": false}),
        ),
        (
            format!("{base}/upstreams/{upstream}"),
            format!("{base}/upstreams"),
            json!({"slots": 100}),
        ),
        (
            format!("{base}/targets/{target}"),
            format!("{base}/targets"),
            json!({"weight": 5}),
        ),
        (
            format!("{base}/certificates/{cert}"),
            format!("{base}/certificates"),
            json!({"tags": ["x"]}),
        ),
        (
            format!("{base}/snis/{sni}"),
            format!("{base}/snis"),
            json!({"tags": ["x"]}),
        ),
        (
            format!("/v2/tokens/{token_id}"),
            "/v2/tokens".into(),
            Value::Null,
        ),
    ]
    .into_iter()
    .chain(cloud)
    .collect()
}

/// A provider account, a network, a transit gateway and a configuration of `cp`.
async fn cloud_gateway_resources(
    app: &TestApp,
    token: &str,
    cp: &str,
) -> Vec<(String, String, Value)> {
    let accounts = "/v2/cloud-gateways/provider-accounts";
    let networks = "/v2/cloud-gateways/networks";
    let configurations = "/v2/cloud-gateways/configurations";
    // AWS accounts are registered by an operator of the organisation.
    let org = app
        .get("/v2/organizations/me", token)
        .await
        .expect(200)
        .body["name"]
        .as_str()
        .expect("organisation name")
        .to_string();
    let operator = app.token(&org, Role::Operator).await;
    let account = app
        .post(
            accounts,
            &operator,
            json!({"provider": "aws", "provider_account_id": "111122223333"}),
        )
        .await
        .expect(201)
        .id();
    let network = app
        .post(
            networks,
            token,
            json!({"name": "edge", "region": "us-east-1", "availability_zones": ["us-east-1a"],
                   "cidr_block": "10.0.0.0/16", "cloud_gateway_provider_account_id": account}),
        )
        .await
        .expect(201)
        .id();
    let tgws = format!("{networks}/{network}/transit-gateways");
    let tgw = app
        .post(
            &tgws,
            token,
            json!({"name": "corp", "cidr_blocks": ["192.168.0.0/20"],
                   "transit_gateway_attachment_config": {
                       "kind": "aws-transit-gateway-attachment",
                       "transit_gateway_id": "tgw-1",
                       "ram_share_arn": "arn:aws:ram:us-east-1:111122223333:resource-share/x"}}),
        )
        .await
        .expect(201)
        .id();
    let configuration = app
        .put(
            configurations,
            token,
            json!({"control_plane_id": cp, "control_plane_geo": "us", "dataplane_groups": [{
                "provider": "aws", "region": "us-east-1", "cloud_gateway_network_id": network,
                "autoscale": {"kind": "static", "instance_type": "small",
                              "requested_instances": 1}}]}),
        )
        .await
        .expect(200)
        .id();
    vec![
        (
            format!("{accounts}/{account}"),
            accounts.into(),
            Value::Null,
        ),
        (
            format!("{networks}/{network}"),
            networks.into(),
            json!({"name": "renamed"}),
        ),
        (
            format!("{tgws}/{tgw}"),
            tgws,
            json!({"cidr_blocks": ["192.168.16.0/20"]}),
        ),
        (
            format!("{configurations}/{configuration}"),
            configurations.into(),
            Value::Null,
        ),
    ]
}

#[tokio::test]
async fn other_organizations_resources_are_invisible_and_untouchable() {
    let app = TestApp::start().await;
    let a = app.token("org-a", Role::Admin).await;
    let b = app.token("org-b", Role::Admin).await;
    let resources = resources_of_every_type(&app, &a).await;
    let cp_path = resources[0].0.clone();
    for (item, list, body) in &resources {
        // Org A sees its own resource.
        app.get(item, &a).await.expect(200);
        // Org B gets 404 on every verb, and never sees it in a list.
        app.get(item, &b).await.expect(404);
        if !body.is_null() {
            app.patch(item, &b, body.clone()).await.expect(404);
        }
        app.delete(item, &b).await.expect(404);
        let listed = app.get(list, &b).await;
        if listed.status == 200 {
            let ids: Vec<&str> = listed.body["data"]
                .as_array()
                .expect("data")
                .iter()
                .filter_map(|v| v["id"].as_str())
                .collect();
            assert!(
                !ids.iter().any(|id| item.ends_with(id)),
                "{list} shows org A's resource to org B"
            );
        } else {
            listed.expect(404);
        }
        // And it is still there for A.
        app.get(item, &a).await.expect(200);
    }
    // PUT into another org's control plane cannot create anything either.
    let base = format!("{cp_path}/core-entities");
    app.put(
        &format!("{base}/services/sneaky"),
        &b,
        json!({"url": "http://x"}),
    )
    .await
    .expect(404);
    app.post(&format!("{base}/services"), &b, json!({"url": "http://x"}))
        .await
        .expect(404);
    // Join tokens cannot be minted for another organisation's control plane.
    app.call(
        Method::POST,
        &format!("{cp_path}/dp-join-tokens"),
        Some(&b),
        None,
    )
    .await
    .expect(404);
    for path in [
        format!("{cp_path}/expected-config-hash"),
        format!("{cp_path}/declarative-config"),
        format!("{base}/schemas/plugins/key-auth"),
    ] {
        app.get(&path, &a).await.expect(200);
        app.get(&path, &b).await.expect(404);
    }
    app.raw(
        Method::PUT,
        &format!("{cp_path}/declarative-config"),
        &b,
        "application/yaml",
        "_format_version: \"3.0\"\n",
    )
    .await
    .expect(404);
    // A's config is untouched by all of B's attempts.
    let services = app.get(&format!("{base}/services"), &a).await.expect(200);
    assert_eq!(services.body["data"].as_array().map(Vec::len), Some(1));
    app.stop().await;
}

#[tokio::test]
async fn viewers_read_but_cannot_write() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let viewer = app.token("org-a", Role::Viewer).await;
    let resources = resources_of_every_type(&app, &admin).await;
    for (item, list, body) in &resources {
        app.get(item, &viewer).await.expect(200);
        app.get(list, &viewer).await.expect(200);
        if !body.is_null() {
            app.patch(item, &viewer, body.clone()).await.expect(403);
        }
        app.delete(item, &viewer).await.expect(403);
        // Cloud-gateway configurations are written with PUT on the collection.
        let write = if list.ends_with("/configurations") {
            Method::PUT
        } else {
            Method::POST
        };
        app.call(write, list, Some(&viewer), Some(json!({"name": "new"})))
            .await
            .expect(403);
    }
    let cp = &resources[0].0;
    app.raw(
        Method::PUT,
        &format!("{cp}/declarative-config"),
        &viewer,
        "application/yaml",
        "_format_version: \"3.0\"\n",
    )
    .await
    .expect(403);
    app.post("/v2/tokens", &viewer, json!({"name": "t", "role": "admin"}))
        .await
        .expect(403);
    app.post(&format!("{cp}/dp-join-tokens"), &viewer, json!({}))
        .await
        .expect(403);
    app.stop().await;
}

#[tokio::test]
async fn missing_or_invalid_tokens_get_401() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let (cp, base) = app.control_plane(&admin, "cp").await;
    for path in [
        "/v2/organizations/me".to_string(),
        "/v2/control-planes".to_string(),
        format!("/v2/control-planes/{cp}"),
        format!("{base}/services"),
        "/v2/tokens".to_string(),
    ] {
        let none = app.call(Method::GET, &path, None, None).await.expect(401);
        // Core-entity paths answer Kong's `{message, status}`, the others a problem.
        let why = if path.contains("/core-entities/") {
            &none.body["message"]
        } else {
            &none.body["detail"]
        };
        assert!(
            why.as_str().unwrap_or("").contains("Authorization"),
            "{path}"
        );
        app.call(Method::GET, &path, Some("fgt_not-a-real-token"), None)
            .await
            .expect(401);
        app.call(Method::GET, &path, Some(&format!("{admin}x")), None)
            .await
            .expect(401);
    }
    // A revoked token stops working at once.
    let created = app
        .post(
            "/v2/tokens",
            &admin,
            json!({"name": "temp", "role": "viewer"}),
        )
        .await
        .expect(201);
    let secret = created.body["token"].as_str().expect("secret").to_string();
    app.get("/v2/organizations/me", &secret).await.expect(200);
    app.delete(&format!("/v2/tokens/{}", created.id()), &admin)
        .await
        .expect(204);
    app.get("/v2/organizations/me", &secret).await.expect(401);
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_shown_once() {
    let app = TestApp::start().await;
    let admin = app.token("org-a", Role::Admin).await;
    let created = app
        .post(
            "/v2/tokens",
            &admin,
            json!({"name": "ci", "role": "viewer"}),
        )
        .await
        .expect(201);
    let secret = created.body["token"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("fgt_"));
    let shown = app
        .get(&format!("/v2/tokens/{}", created.id()), &admin)
        .await
        .expect(200);
    assert!(
        !shown.text.contains(&secret),
        "a token's secret is shown after creation"
    );
    // The database holds the SHA-256 of the secret, and nothing that contains the secret.
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.database_url)
        .await
        .expect("connect");
    let rows = sqlx::query("SELECT id, name, token_hash, display_prefix FROM api_tokens")
        .fetch_all(&pool)
        .await
        .expect("read tokens");
    assert!(rows.len() >= 2);
    let random_part = &secret["fgt_".len()..];
    let mut found = false;
    for row in rows {
        let columns: Vec<String> = (0..4).map(|i| row.get::<String, _>(i)).collect();
        assert!(
            columns.iter().all(|c| !c.contains(random_part)),
            "a token secret is stored in clear: {columns:?}"
        );
        found |= columns[2] == fleetgate_control_plane::auth::hash_token(&secret);
    }
    assert!(found, "the token's hash is not stored");
    pool.close().await;
    // Only operators mint operator tokens.
    app.post(
        "/v2/tokens",
        &admin,
        json!({"name": "op", "role": "operator"}),
    )
    .await
    .expect(403);
    app.stop().await;
}
