//! Core entities through the API: Kong's field names and defaults, validation naming the
//! field, referential integrity, uniqueness, pagination, and config versions/hashes.

mod support;

use fleetgate_control_plane::store::Role;
use reqwest::Method;
use serde_json::json;
use support::TestApp;

#[tokio::test]
async fn services_follow_kong_defaults_and_url_shorthand() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, base) = app.control_plane(&t, "cp").await;
    let svc = app
        .post(
            &format!("{base}/services"),
            &t,
            json!({"name": "orders", "url": "https://orders.internal/v1"}),
        )
        .await
        .expect(201);
    assert_eq!(svc.body["protocol"], "https");
    assert_eq!(svc.body["host"], "orders.internal");
    assert_eq!(svc.body["port"], 443);
    assert_eq!(svc.body["path"], "/v1");
    assert_eq!(svc.body["retries"], 5);
    assert_eq!(svc.body["connect_timeout"], 60000);
    assert_eq!(svc.body["enabled"], true);
    assert!(svc.body["created_at"].as_i64().is_some());
    // By name, as in Kong.
    let by_name = app
        .get(&format!("{base}/services/orders"), &t)
        .await
        .expect(200);
    assert_eq!(by_name.id(), svc.id());
    // PATCH merges; PUT by name upserts.
    let patched = app
        .patch(
            &format!("{base}/services/orders"),
            &t,
            json!({"retries": 2}),
        )
        .await
        .expect(200);
    assert_eq!(patched.body["retries"], 2);
    assert_eq!(patched.body["host"], "orders.internal");
    // Kong's PUT answers 200 whether it created or replaced.
    app.put(
        &format!("{base}/services/billing"),
        &t,
        json!({"url": "http://billing:8080"}),
    )
    .await
    .expect(200);
    let replaced = app
        .put(
            &format!("{base}/services/billing"),
            &t,
            json!({"url": "http://billing:9090"}),
        )
        .await
        .expect(200);
    assert_eq!(replaced.body["port"], 9090);
    assert_eq!(replaced.body["name"], "billing");
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field_and_never_500() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, base) = app.control_plane(&t, "cp").await;
    let svc = format!("{base}/services");
    let cases = [
        (json!({"host": "x", "port": 70000}), "port"),
        (json!({"host": "x", "retries": 40000}), "retries"),
        (
            json!({"host": "x", "connect_timeout": 0}),
            "connect_timeout",
        ),
        (json!({"host": "x", "protocol": "ftp"}), "protocol"),
        (json!({"host": "x", "colour": "blue"}), "colour"),
        (json!({"host": 12}), "host"),
        (json!({"url": "http://a", "host": "b"}), "url"),
    ];
    for (body, field) in cases {
        let reply = app.post(&svc, &t, body.clone()).await.expect(400);
        let fields = reply.invalid_fields();
        assert!(
            fields.iter().any(|f| f.contains(field)),
            "{body} -> {fields:?} does not name {field}"
        );
    }
    // Unparseable JSON, wrong media type, not an object.
    let broken = app
        .raw(Method::POST, &svc, &t, "application/json", "{\"host\": ")
        .await
        .expect(400);
    assert!(broken.body["detail"]
        .as_str()
        .unwrap_or("")
        .contains("not valid JSON"));
    app.raw(Method::POST, &svc, &t, "text/plain", "host=x")
        .await
        .expect(415);
    app.post(&svc, &t, json!(["host"])).await.expect(400);
    // Route without matchers; bad regex; rate-limiting config field.
    let r = app
        .post(&format!("{base}/routes"), &t, json!({"name": "r"}))
        .await
        .expect(400);
    assert!(!r.invalid_fields().is_empty());
    let r = app
        .post(
            &format!("{base}/routes"),
            &t,
            json!({"paths": ["~/(unclosed"]}),
        )
        .await
        .expect(400);
    assert!(r.invalid_fields().iter().any(|f| f.starts_with("paths")));
    let p = app
        .post(
            &format!("{base}/plugins"),
            &t,
            json!({"name": "rate-limiting", "config": {"minute": "lots"}}),
        )
        .await
        .expect(400);
    assert!(
        p.invalid_fields().iter().any(|f| f == "config.minute"),
        "{:?}",
        p.invalid_fields()
    );
    let p = app
        .post(
            &format!("{base}/plugins"),
            &t,
            json!({"name": "no-such-plugin"}),
        )
        .await
        .expect(400);
    assert_eq!(p.invalid_fields(), vec!["name".to_string()]);
    // Pagination parameters (Kong's `size` and `offset`); Konnect's other paging is unknown
    // here and named, never ignored.
    for (query, field) in [
        ("size=0", "size"),
        ("size=1001", "size"),
        ("offset=***", "offset"),
        ("page[size]=2", "page[size]"),
        ("tags=a,b/c", "tags"),
    ] {
        let reply = app.get(&format!("{svc}?{query}"), &t).await.expect(400);
        assert_eq!(reply.invalid_fields(), vec![field.to_string()], "{query}");
    }
    // Unknown paths and methods are problems too.
    app.get("/v2/nothing-here", &t).await.expect(404);
    app.call(Method::DELETE, "/v2/control-planes", Some(&t), None)
        .await
        .expect(405);
    // Nothing was written by any of the failures.
    let list = app.get(&svc, &t).await.expect(200);
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(0));
    app.stop().await;
}

#[tokio::test]
async fn referential_integrity_and_uniqueness_follow_kong() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, base) = app.control_plane(&t, "cp").await;
    let (_, other_base) = app.control_plane(&t, "cp2").await;
    let svc = app
        .post(
            &format!("{base}/services"),
            &t,
            json!({"name": "orders", "host": "orders"}),
        )
        .await
        .expect(201)
        .id();
    // Duplicate name -> 409 naming the field; the same name in another control plane is fine.
    let dup = app
        .post(
            &format!("{base}/services"),
            &t,
            json!({"name": "orders", "host": "x"}),
        )
        .await
        .expect(409);
    assert_eq!(dup.invalid_fields(), vec!["name".to_string()]);
    app.post(
        &format!("{other_base}/services"),
        &t,
        json!({"name": "orders", "host": "x"}),
    )
    .await
    .expect(201);
    // A route must point at a service of the same control plane.
    let missing = app
        .post(
            &format!("{other_base}/routes"),
            &t,
            json!({"paths": ["/"], "service": {"id": svc}}),
        )
        .await
        .expect(400);
    assert_eq!(missing.invalid_fields(), vec!["service.id".to_string()]);
    let r1 = app
        .post(
            &format!("{base}/routes"),
            &t,
            json!({"name": "checkout", "paths": ["/checkout"], "service": {"id": svc}}),
        )
        .await
        .expect(201)
        .id();
    app.post(
        &format!("{base}/routes"),
        &t,
        json!({"name": "cart", "paths": ["/cart"], "service": {"id": svc}}),
    )
    .await
    .expect(201);
    // Deleting the referenced service is refused, naming the routes.
    let refused = app
        .delete(&format!("{base}/services/{svc}"), &t)
        .await
        .expect(409);
    let detail = refused.body["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("checkout") && detail.contains("cart"),
        "{detail}"
    );
    // A service-scoped plugin goes with its service (cascade), routes must go first.
    app.post(
        &format!("{base}/plugins"),
        &t,
        json!({"name": "cors", "service": {"id": svc}}),
    )
    .await
    .expect(201);
    app.delete(&format!("{base}/routes/{r1}"), &t)
        .await
        .expect(204);
    app.delete(&format!("{base}/routes/cart"), &t)
        .await
        .expect(204);
    app.delete(&format!("{base}/services/orders"), &t)
        .await
        .expect(204);
    let plugins = app.get(&format!("{base}/plugins"), &t).await.expect(200);
    assert_eq!(plugins.body["data"].as_array().map(Vec::len), Some(0));
    // Deleting a consumer deletes its credentials.
    let c = app
        .post(
            &format!("{base}/consumers"),
            &t,
            json!({"username": "alice"}),
        )
        .await
        .expect(201)
        .id();
    let cred = app
        .post(&format!("{base}/consumers/{c}/key-auth"), &t, json!({}))
        .await
        .expect(201);
    assert_eq!(
        cred.body["key"].as_str().map(str::len),
        Some(32),
        "a key is generated"
    );
    app.post(
        &format!("{base}/consumers/alice/key-auth"),
        &t,
        json!({"key": cred.body["key"]}),
    )
    .await
    .expect(409);
    app.delete(&format!("{base}/consumers/alice"), &t)
        .await
        .expect(204);
    app.get(&format!("{base}/consumers/{c}/key-auth/{}", cred.id()), &t)
        .await
        .expect(404);
    app.stop().await;
}

#[tokio::test]
async fn pagination_is_stable_and_complete() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (_, base) = app.control_plane(&t, "cp").await;
    for i in 0..25 {
        app.post(
            &format!("{base}/consumers"),
            &t,
            json!({"username": format!("user-{i}")}),
        )
        .await
        .expect(201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        // `next` is Kong's: the path relative to the core-entities base.
        let path = match &cursor {
            Some(next) => format!("{base}{next}"),
            None => format!("{base}/consumers?size=10"),
        };
        let page = app.get(&path, &t).await.expect(200);
        pages += 1;
        for item in page.body["data"].as_array().expect("data") {
            seen.push(item["id"].as_str().expect("id").to_string());
        }
        match page.body["next"].as_str() {
            Some(next) => {
                assert!(page.body["offset"].is_string(), "offset with next");
                cursor = Some(next.to_string())
            }
            None => {
                assert!(
                    page.body.get("offset").is_none(),
                    "no offset on the last page"
                );
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "pages are in stable id order without repeats");
    app.stop().await;
}

#[tokio::test]
async fn every_write_bumps_the_version_and_the_hash_tracks_the_config() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let (cp, base) = app.control_plane(&t, "cp").await;
    let empty = app.expected_hash(&cp, &t).await;
    assert_eq!(empty, fleetgate_config::EMPTY_CONFIG_HASH);
    let version =
        |body: &serde_json::Value| body["config"]["config_version"].as_i64().expect("version");
    let v0 = version(
        &app.get(&format!("/v2/control-planes/{cp}"), &t)
            .await
            .expect(200)
            .body,
    );
    let svc = app
        .post(
            &format!("{base}/services"),
            &t,
            json!({"name": "s", "host": "h"}),
        )
        .await
        .expect(201)
        .id();
    let h1 = app.expected_hash(&cp, &t).await;
    assert_ne!(h1, empty);
    let v1 = version(
        &app.get(&format!("/v2/control-planes/{cp}"), &t)
            .await
            .expect(200)
            .body,
    );
    assert_eq!(v1, v0 + 1);
    app.patch(&format!("{base}/services/{svc}"), &t, json!({"port": 8080}))
        .await
        .expect(200);
    let h2 = app.expected_hash(&cp, &t).await;
    assert_ne!(h2, h1);
    // Patching back restores the earlier hash: the hash depends on content only.
    app.patch(&format!("{base}/services/{svc}"), &t, json!({"port": 80}))
        .await
        .expect(200);
    assert_eq!(app.expected_hash(&cp, &t).await, h1);
    app.delete(&format!("{base}/services/{svc}"), &t)
        .await
        .expect(204);
    assert_eq!(app.expected_hash(&cp, &t).await, empty);
    // A failed write changes nothing.
    app.post(
        &format!("{base}/services"),
        &t,
        json!({"host": "h", "port": -1}),
    )
    .await
    .expect(400);
    assert_eq!(app.expected_hash(&cp, &t).await, empty);
    app.stop().await;
}
