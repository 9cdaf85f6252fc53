//! Kong declarative config through the API: import a real `kong.yml`, export, re-import to
//! the same hash; bad input is refused naming line or field, and nothing is half-written.

mod support;

use fleetgate_control_plane::store::Role;
use reqwest::Method;
use serde_json::json;
use support::TestApp;

const KONG_YML: &str = include_str!("fixtures/kong.yml");

fn count(reply: &support::Reply) -> usize {
    reply.body["data"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn kong_yml_imports_exports_and_reimports_to_the_same_hash() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (cp, base) = app.control_plane(&t, "cp").await;
    let path = format!("/v2/control-planes/{cp}/declarative-config");
    let imported = app
        .raw(Method::PUT, &path, &t, "application/yaml", KONG_YML)
        .await
        .expect(200);
    let hash = imported.body["config_hash"]
        .as_str()
        .expect("hash")
        .to_string();
    assert_eq!(app.expected_hash(&cp, &t).await, hash);
    assert_eq!(imported.body["entities"]["services"], 2);
    assert_eq!(imported.body["entities"]["routes"], 3);
    assert_eq!(imported.body["entities"]["keyauth_credentials"], 2);
    assert_eq!(imported.body["entities"]["plugins"], 5);
    assert_eq!(imported.body["entities"]["targets"], 2);
    // The entities are visible through the core-entities API with Kong's fields.
    assert_eq!(
        count(&app.get(&format!("{base}/services"), &t).await.expect(200)),
        2
    );
    let route = app
        .get(&format!("{base}/routes/orders-api"), &t)
        .await
        .expect(200);
    assert_eq!(route.body["methods"], json!(["GET", "POST"]));
    let orders = app
        .get(&format!("{base}/services/orders"), &t)
        .await
        .expect(200);
    assert_eq!(route.body["service"]["id"], orders.body["id"]);
    assert_eq!(orders.body["port"], 8080);
    // Export (YAML) and re-import into another control plane: same hash.
    let exported = app.get(&path, &t).await.expect(200);
    assert!(exported.content_type.contains("yaml"));
    assert!(exported.text.contains("_format_version"));
    let (cp2, _) = app.control_plane(&t, "cp2").await;
    let again = app
        .raw(
            Method::PUT,
            &format!("/v2/control-planes/{cp2}/declarative-config"),
            &t,
            "application/yaml",
            exported.text.clone(),
        )
        .await
        .expect(200);
    assert_eq!(again.body["config_hash"], hash.as_str());
    // JSON export re-imports the same way.
    let json_export = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&t)
        .header("accept", "application/json")
        .send()
        .await
        .expect("export json")
        .text()
        .await
        .expect("body");
    let again = app
        .raw(Method::PUT, &path, &t, "application/json", json_export)
        .await
        .expect(200);
    assert_eq!(again.body["config_hash"], hash.as_str());
    // Importing the same file twice is idempotent (deterministic ids).
    let twice = app
        .raw(Method::PUT, &path, &t, "application/yaml", KONG_YML)
        .await
        .expect(200);
    assert_eq!(twice.body["config_hash"], hash.as_str());
    app.stop().await;
}

#[tokio::test]
async fn invalid_declarative_config_names_line_or_field_and_writes_nothing() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (cp, base) = app.control_plane(&t, "cp").await;
    let path = format!("/v2/control-planes/{cp}/declarative-config");
    app.raw(Method::PUT, &path, &t, "application/yaml", KONG_YML)
        .await
        .expect(200);
    let before = app.expected_hash(&cp, &t).await;
    // Broken YAML: the line is named.
    let syntax = app
        .raw(
            Method::PUT,
            &path,
            &t,
            "application/yaml",
            "_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n",
        )
        .await
        .expect(400);
    assert!(syntax.text.contains("line"), "{}", syntax.text);
    // An unknown field deep inside: the path is named.
    let bad_field = KONG_YML.replace("strip_path: true", "strip_pathz: true");
    let invalid = app
        .raw(Method::PUT, &path, &t, "application/yaml", bad_field)
        .await
        .expect(400);
    assert!(
        invalid
            .invalid_fields()
            .iter()
            .any(|f| f.contains("strip_pathz")),
        "{:?}",
        invalid.invalid_fields()
    );
    // A dangling reference in an otherwise valid file.
    let dangling =
        "_format_version: \"3.0\"\nroutes:\n  - name: r\n    paths: [/]\n    service: nowhere\n";
    app.raw(Method::PUT, &path, &t, "application/yaml", dangling)
        .await
        .expect(400);
    // Missing format version.
    app.raw(Method::PUT, &path, &t, "application/yaml", "services: []\n")
        .await
        .expect(400);
    // The config is exactly what it was.
    assert_eq!(app.expected_hash(&cp, &t).await, before);
    assert_eq!(
        count(&app.get(&format!("{base}/services"), &t).await.expect(200)),
        2
    );
    // An empty config clears everything, atomically.
    app.raw(
        Method::PUT,
        &path,
        &t,
        "application/yaml",
        "_format_version: \"3.0\"\n",
    )
    .await
    .expect(200);
    assert_eq!(
        app.expected_hash(&cp, &t).await,
        fleetgate_config::EMPTY_CONFIG_HASH
    );
    app.stop().await;
}
