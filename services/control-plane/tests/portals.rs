//! Dev portals through the API: CRUD, validation naming the field, unique names per
//! organisation, organisation isolation and read-only viewers.

mod support;

use fleetgate_control_plane::store::Role;
use serde_json::json;
use support::TestApp;

#[tokio::test]
async fn portals_are_created_listed_changed_and_deleted() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let created = app
        .post("/v2/portals", &t, json!({"name": " developers "}))
        .await
        .expect(201);
    assert_eq!(created.body["name"], "developers");
    assert_eq!(created.body["description"], "");
    assert_eq!(created.body["published"], false);
    assert!(created.body["created_at"].as_i64().is_some());
    let id = created.id();
    let shown = app.get(&format!("/v2/portals/{id}"), &t).await.expect(200);
    assert_eq!(shown.body, created.body);

    let patched = app
        .patch(
            &format!("/v2/portals/{id}"),
            &t,
            json!({"description": "public APIs", "published": true}),
        )
        .await
        .expect(200);
    assert_eq!(patched.body["published"], true);
    assert_eq!(patched.body["description"], "public APIs");
    assert_eq!(patched.body["name"], "developers");
    // Publishing an already published portal is a no-op, not an error.
    app.patch(&format!("/v2/portals/{id}"), &t, json!({"published": true}))
        .await
        .expect(200);

    for name in ["b", "c", "d"] {
        app.post(
            "/v2/portals",
            &t,
            json!({"name": name, "description": "x", "published": true}),
        )
        .await
        .expect(201);
    }
    // Numbered pages of two walk through all four, each once, with the total.
    let mut seen = Vec::new();
    for number in 1..=3 {
        let page = app
            .get(
                &format!("/v2/portals?page[size]=2&page[number]={number}"),
                &t,
            )
            .await
            .expect(200);
        assert_eq!(page.body["meta"]["page"]["size"], 2);
        assert_eq!(page.body["meta"]["page"]["number"], number);
        assert_eq!(page.body["meta"]["page"]["total"], 4);
        let data = page.body["data"].as_array().expect("data");
        assert_eq!(data.len(), if number < 3 { 2 } else { 0 });
        for item in data {
            seen.push(item["name"].as_str().expect("name").to_string());
        }
    }
    // Creation order within one second falls back to id order: compare as sets.
    seen.sort();
    assert_eq!(seen, ["b", "c", "d", "developers"]);
    // A parameter the list does not know is named, not ignored.
    let bad = app.get("/v2/portals?size=2", &t).await.expect(400);
    assert_eq!(bad.body["invalid_parameters"][0]["field"], "size");
    assert_eq!(bad.body["invalid_parameters"][0]["source"], "query");

    app.delete(&format!("/v2/portals/{id}"), &t)
        .await
        .expect(204);
    app.get(&format!("/v2/portals/{id}"), &t).await.expect(404);
    app.delete(&format!("/v2/portals/{id}"), &t)
        .await
        .expect(404);
    // The name is free again.
    app.post("/v2/portals", &t, json!({"name": "developers"}))
        .await
        .expect(201);
}

#[tokio::test]
async fn invalid_portals_are_refused_naming_the_field() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let cases = [
        (json!({}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (
            json!({"name": "p", "description": "d".repeat(251)}),
            "description",
        ),
        (json!({"name": "p", "published": "yes"}), "published"),
        (json!({"name": 7}), "name"),
        (json!({"name": "p", "colour": "red"}), "colour"),
    ];
    for (body, field) in cases {
        let reply = app.post("/v2/portals", &t, body.clone()).await.expect(400);
        assert_eq!(
            reply.invalid_fields(),
            vec![field],
            "{body} should name {field}: {}",
            reply.text
        );
    }
    let id = app
        .post("/v2/portals", &t, json!({"name": "p"}))
        .await
        .expect(201)
        .id();
    let reply = app
        .patch(&format!("/v2/portals/{id}"), &t, json!({"name": ""}))
        .await
        .expect(400);
    assert_eq!(reply.invalid_fields(), vec!["name"]);
    let reply = app
        .patch(&format!("/v2/portals/{id}"), &t, json!({"published": 1}))
        .await
        .expect(400);
    assert_eq!(reply.invalid_fields(), vec!["published"]);
    app.get("/v2/portals/not-a-uuid", &t).await.expect(404);
}

#[tokio::test]
async fn names_are_unique_per_organization() {
    let app = TestApp::start().await;
    let a = app.token("org-a", Role::Admin).await;
    let b = app.token("org-b", Role::Admin).await;
    app.post("/v2/portals", &a, json!({"name": "docs"}))
        .await
        .expect(201);
    let conflict = app
        .post("/v2/portals", &a, json!({"name": "docs"}))
        .await
        .expect(409);
    assert_eq!(conflict.invalid_fields(), vec!["name"]);
    assert!(conflict.body["detail"]
        .as_str()
        .expect("detail")
        .contains("docs"));
    // Another organisation may use the same name.
    app.post("/v2/portals", &b, json!({"name": "docs"}))
        .await
        .expect(201);
    // Renaming onto a taken name conflicts too.
    let other = app
        .post("/v2/portals", &a, json!({"name": "other"}))
        .await
        .expect(201)
        .id();
    let conflict = app
        .patch(&format!("/v2/portals/{other}"), &a, json!({"name": "docs"}))
        .await
        .expect(409);
    assert_eq!(conflict.invalid_fields(), vec!["name"]);
}

#[tokio::test]
async fn organizations_see_only_their_portals_and_viewers_only_read() {
    let app = TestApp::start().await;
    let a = app.token("org-a", Role::Admin).await;
    let b = app.token("org-b", Role::Admin).await;
    let viewer = app.token("org-a", Role::Viewer).await;
    let id = app
        .post(
            "/v2/portals",
            &a,
            json!({"name": "docs", "published": true}),
        )
        .await
        .expect(201)
        .id();
    let path = format!("/v2/portals/{id}");
    app.get(&path, &b).await.expect(404);
    app.patch(&path, &b, json!({"published": false}))
        .await
        .expect(404);
    app.delete(&path, &b).await.expect(404);
    let listed = app.get("/v2/portals", &b).await.expect(200);
    assert_eq!(listed.body["data"], json!([]));

    app.get(&path, &viewer).await.expect(200);
    app.get("/v2/portals", &viewer).await.expect(200);
    app.post("/v2/portals", &viewer, json!({"name": "v"}))
        .await
        .expect(403);
    app.patch(&path, &viewer, json!({"published": false}))
        .await
        .expect(403);
    app.delete(&path, &viewer).await.expect(403);
    // Still there and still published.
    let shown = app.get(&path, &a).await.expect(200);
    assert_eq!(shown.body["published"], true);

    let anonymous = app
        .call(reqwest::Method::GET, "/v2/portals", None, None)
        .await
        .expect(401);
    assert!(anonymous.body["detail"].is_string());
}
