//! Contract: `/v2/control-planes` speaks Konnect's control planes API. Request bodies are
//! Konnect's published examples (`CreateControlPlaneRequest`, `UpdateControlPlaneRequest`);
//! the checks are the reference's status codes, wrappers, field names and types, its list
//! filters, and Fleetgate's choice of cluster types (hybrid only, the rest refused by name).

mod support;

use fleetgate_control_plane::store::Role;
use serde_json::{json, Value};
use support::{Reply, TestApp};

/// Konnect's `CreateControlPlaneRequest` example, field for field.
fn konnect_create_example() -> Value {
    json!({
        "name": "Test Control Plane",
        "description": "A test control plane for exploration.",
        "cluster_type": "CLUSTER_TYPE_CONTROL_PLANE",
        "auth_type": "pinned_client_certs",
        "cloud_gateway": false,
        "proxy_urls": [{"host": "example.com", "port": 443, "protocol": "https"}],
        "labels": {"env": "test"}
    })
}

fn is_rfc3339(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

/// Konnect's `ControlPlane` schema: every required field, with its type.
#[track_caller]
fn assert_control_plane_shape(cp: &Value) {
    assert!(
        cp["id"]
            .as_str()
            .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
        "{cp}"
    );
    assert!(cp["name"].is_string(), "{cp}");
    assert!(cp["description"].is_string(), "{cp}");
    assert!(cp["labels"].is_object(), "{cp}");
    assert!(is_rfc3339(&cp["created_at"]), "created_at: {cp}");
    assert!(is_rfc3339(&cp["updated_at"]), "updated_at: {cp}");
    let config = &cp["config"];
    for url in ["control_plane_endpoint", "telemetry_endpoint"] {
        assert!(
            config[url]
                .as_str()
                .is_some_and(|s| s.starts_with("https://")),
            "{url}: {cp}"
        );
    }
    assert!(config["cluster_type"].is_string(), "{cp}");
    assert!(
        matches!(
            config["auth_type"].as_str(),
            Some("pinned_client_certs" | "pki_client_certs")
        ),
        "{cp}"
    );
    assert!(config["cloud_gateway"].is_boolean(), "{cp}");
    for url in config["proxy_urls"].as_array().expect("proxy_urls array") {
        assert!(url["host"].is_string(), "{cp}");
        assert!(url["port"].is_u64(), "{cp}");
        assert!(url["protocol"].is_string(), "{cp}");
    }
    // Fleetgate's extras a Konnect client ignores.
    assert!(config["config_version"].is_i64(), "{cp}");
    assert!(config["cluster_ca_cert"].is_string(), "{cp}");
    assert!(config["cluster_server_name"].is_string(), "{cp}");
}

/// Konnect's problem shape with `invalid_parameters`, naming `field`.
#[track_caller]
fn assert_names(reply: &Reply, field: &str) -> Value {
    assert_eq!(reply.body["status"], 400, "{}", reply.text);
    assert_eq!(reply.body["title"], "Bad Request");
    assert!(reply.body["detail"].is_string());
    assert!(reply.body["instance"].is_string());
    let params = reply.body["invalid_parameters"]
        .as_array()
        .expect("invalid_parameters");
    params
        .iter()
        .find(|p| p["field"] == field)
        .unwrap_or_else(|| panic!("{field} not named in {}", reply.text))
        .clone()
}

async fn names_in(app: &TestApp, t: &str, query: &str) -> Vec<String> {
    let page = app
        .get(&format!("/v2/control-planes?{query}"), t)
        .await
        .expect(200);
    page.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|cp| cp["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn konnects_create_get_update_delete_round_trip() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    app.store.clock().pin(1_700_000_000);
    let created = app
        .post("/v2/control-planes", &t, konnect_create_example())
        .await
        .expect(201);
    assert_control_plane_shape(&created.body);
    assert_eq!(created.body["name"], "Test Control Plane");
    assert_eq!(
        created.body["description"],
        "A test control plane for exploration."
    );
    assert_eq!(created.body["labels"], json!({"env": "test"}));
    assert_eq!(created.body["created_at"], "2023-11-14T22:13:20Z");
    let config = &created.body["config"];
    assert_eq!(config["cluster_type"], "CLUSTER_TYPE_CONTROL_PLANE");
    assert_eq!(config["auth_type"], "pinned_client_certs");
    assert_eq!(config["cloud_gateway"], false);
    assert_eq!(
        config["proxy_urls"],
        json!([{"host": "example.com", "port": 443, "protocol": "https"}])
    );
    let id = created.id();
    let path = format!("/v2/control-planes/{id}");
    let shown = app.get(&path, &t).await.expect(200);
    assert_eq!(shown.body, created.body);

    // Konnect's UpdateControlPlaneRequest example.
    app.store.clock().pin(1_700_000_060);
    let updated = app
        .patch(
            &path,
            &t,
            json!({
                "name": "Test Control Plane",
                "description": "A test control plane for exploration.",
                "auth_type": "pki_client_certs",
                "proxy_urls": [{"host": "proxy.example.com", "port": 8443, "protocol": "https"}],
                "labels": {"env": "prod"}
            }),
        )
        .await
        .expect(200);
    assert_control_plane_shape(&updated.body);
    assert_eq!(updated.body["config"]["auth_type"], "pki_client_certs");
    assert_eq!(
        updated.body["config"]["proxy_urls"][0]["host"],
        "proxy.example.com"
    );
    assert_eq!(updated.body["labels"], json!({"env": "prod"}));
    assert_eq!(updated.body["created_at"], created.body["created_at"]);
    assert_eq!(updated.body["updated_at"], "2023-11-14T22:14:20Z");
    // Absent fields keep their values; the cluster type never changes.
    let partial = app
        .patch(&path, &t, json!({"description": "only this"}))
        .await
        .expect(200);
    assert_eq!(partial.body["description"], "only this");
    assert_eq!(partial.body["config"]["auth_type"], "pki_client_certs");
    assert_eq!(partial.body["labels"], json!({"env": "prod"}));
    let refused = app
        .patch(&path, &t, json!({"cluster_type": "CLUSTER_TYPE_HYBRID"}))
        .await
        .expect(400);
    assert_names(&refused, "cluster_type");
    let refused = app
        .patch(&path, &t, json!({"cloud_gateway": true}))
        .await
        .expect(400);
    assert_names(&refused, "cloud_gateway");

    app.delete(&path, &t).await.expect(204);
    let gone = app.get(&path, &t).await.expect(404);
    assert_eq!(gone.body["status"], 404);
    assert!(gone.body["instance"].is_string() && gone.body["detail"].is_string());
    app.delete(&path, &t).await.expect(404);
    app.stop().await;
}

#[tokio::test]
async fn defaults_follow_konnect_and_hybrid_is_accepted() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let minimal = app
        .post("/v2/control-planes", &t, json!({"name": "minimal"}))
        .await
        .expect(201);
    assert_control_plane_shape(&minimal.body);
    assert_eq!(minimal.body["description"], "");
    assert_eq!(minimal.body["labels"], json!({}));
    let config = &minimal.body["config"];
    assert_eq!(config["cluster_type"], "CLUSTER_TYPE_CONTROL_PLANE");
    assert_eq!(config["auth_type"], "pinned_client_certs");
    assert_eq!(config["cloud_gateway"], false);
    assert_eq!(config["proxy_urls"], json!([]));

    // Konnect's older name for a hybrid control plane is stored and shown as sent.
    let hybrid = app
        .post(
            "/v2/control-planes",
            &t,
            json!({"name": "hybrid", "cluster_type": "CLUSTER_TYPE_HYBRID", "cloud_gateway": true}),
        )
        .await
        .expect(201);
    assert_eq!(hybrid.body["config"]["cluster_type"], "CLUSTER_TYPE_HYBRID");
    assert_eq!(hybrid.body["config"]["cloud_gateway"], true);
    let shown = app
        .get(&format!("/v2/control-planes/{}", hybrid.id()), &t)
        .await
        .expect(200);
    assert_eq!(shown.body["config"]["cluster_type"], "CLUSTER_TYPE_HYBRID");

    // A taken name is Konnect's 409.
    let taken = app
        .post("/v2/control-planes", &t, json!({"name": "hybrid"}))
        .await
        .expect(409);
    assert_eq!(taken.body["status"], 409);
    app.stop().await;
}

#[tokio::test]
async fn cluster_types_fleetgate_cannot_run_are_refused_by_name() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    for cluster_type in [
        "CLUSTER_TYPE_K8S_INGRESS_CONTROLLER",
        "CLUSTER_TYPE_CONTROL_PLANE_GROUP",
        "CLUSTER_TYPE_SERVERLESS",
        "CLUSTER_TYPE_NONSENSE",
    ] {
        let mut body = konnect_create_example();
        body["cluster_type"] = json!(cluster_type);
        let reply = app.post("/v2/control-planes", &t, body).await.expect(400);
        let problem = assert_names(&reply, "cluster_type");
        let reason = problem["reason"].as_str().expect("reason");
        assert!(
            reason.contains("CLUSTER_TYPE_CONTROL_PLANE")
                && reason.contains("CLUSTER_TYPE_HYBRID")
                && reason.contains(cluster_type),
            "{reason}"
        );
        assert_eq!(problem["rule"], "enum");
        assert_eq!(problem["source"], "body");
    }
    // Nothing was written.
    let list = app.get("/v2/control-planes", &t).await.expect(200);
    assert_eq!(list.body["meta"]["page"]["total"], 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_answer_400_naming_the_field() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"description": "no name"}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "a", "auth_type": "shared"}), "auth_type"),
        (
            json!({"name": "a", "cloud_gateway": "yes"}),
            "cloud_gateway",
        ),
        (json!({"name": "a", "colour": "red"}), "body"),
        (
            json!({"name": "a", "proxy_urls": [{"host": "", "port": 443, "protocol": "https"}]}),
            "proxy_urls[0].host",
        ),
        (
            json!({"name": "a", "proxy_urls": [{"host": "h", "port": 0, "protocol": "https"}]}),
            "proxy_urls[0].port",
        ),
        (
            json!({"name": "a", "proxy_urls": [
                {"host": "h", "port": 80, "protocol": "http"},
                {"host": "h", "port": 65536, "protocol": "https"}
            ]}),
            "proxy_urls[1].port",
        ),
        (
            json!({"name": "a", "proxy_urls": [{"host": "h", "port": 443, "protocol": "ftp"}]}),
            "proxy_urls[0].protocol",
        ),
        (
            json!({"name": "a", "proxy_urls": [{"host": "h", "port": 443}]}),
            "proxy_urls[0]",
        ),
        (
            json!({"name": "a", "labels": {"kong-owned": "x"}}),
            "labels.kong-owned",
        ),
        (
            json!({"name": "a", "labels": {"env": "-bad"}}),
            "labels.env",
        ),
        (json!({"name": "a", "labels": {"env": ""}}), "labels.env"),
    ];
    for (body, field) in cases {
        let reply = app.post("/v2/control-planes", &t, body.clone()).await;
        assert_eq!(reply.status.as_u16(), 400, "{body}: {}", reply.text);
        if field == "body" {
            assert!(reply.text.contains("colour"), "{}", reply.text);
            continue;
        }
        let fields = reply.invalid_fields();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{body}: expected {field} in {fields:?}"
        );
    }
    let missing = app
        .post("/v2/control-planes", &t, json!({}))
        .await
        .expect(400);
    assert_eq!(assert_names(&missing, "name")["rule"], "required");
    // PATCH validates the same way.
    let cp = app
        .post("/v2/control-planes", &t, json!({"name": "ok"}))
        .await
        .expect(201)
        .id();
    let reply = app
        .patch(
            &format!("/v2/control-planes/{cp}"),
            &t,
            json!({"proxy_urls": [{"host": "h", "port": 99999, "protocol": "https"}]}),
        )
        .await
        .expect(400);
    assert_names(&reply, "proxy_urls[0].port");
    let list = app.get("/v2/control-planes", &t).await.expect(200);
    assert_eq!(list.body["meta"]["page"]["total"], 1);
    assert_eq!(list.body["data"][0]["config"]["proxy_urls"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn lists_page_filter_and_sort_as_konnect_does() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    let other = app.token("other-org", Role::Admin).await;
    app.post("/v2/control-planes", &other, json!({"name": "prod-east"}))
        .await
        .expect(201);
    // Distinct creation seconds, so the creation order is the sort order.
    let planes = [
        (
            "prod-east",
            json!({"cluster_type": "CLUSTER_TYPE_CONTROL_PLANE", "cloud_gateway": true,
                   "labels": {"env": "prod", "team": "edge"}}),
        ),
        (
            "prod-west",
            json!({"cluster_type": "CLUSTER_TYPE_HYBRID", "labels": {"env": "prod"}}),
        ),
        (
            "Staging",
            json!({"labels": {"env": "staging", "team": "edge"}}),
        ),
        ("sandbox", json!({})),
    ];
    let mut ids = Vec::new();
    for (i, (name, extra)) in planes.iter().enumerate() {
        app.store.clock().pin(1_700_000_000 + i as i64);
        let mut body = extra.clone();
        body["name"] = json!(name);
        ids.push(
            app.post("/v2/control-planes", &t, body)
                .await
                .expect(201)
                .id(),
        );
    }
    app.store.clock().release();

    let page = app
        .get("/v2/control-planes?page[size]=3&page[number]=2", &t)
        .await
        .expect(200);
    assert_eq!(
        page.body["meta"],
        json!({"page": {"number": 2, "size": 3, "total": 4}})
    );
    assert_eq!(page.body["data"].as_array().expect("data").len(), 1);
    assert_control_plane_shape(&page.body["data"][0]);
    assert_eq!(page.body["data"][0]["name"], "sandbox");
    assert_eq!(
        page.body.as_object().expect("object").len(),
        2,
        "data and meta only"
    );

    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "sort=created_at".into(),
            vec!["prod-east", "prod-west", "Staging", "sandbox"],
        ),
        (
            "sort=-created_at".into(),
            vec!["sandbox", "Staging", "prod-west", "prod-east"],
        ),
        (
            "sort=created_at%20desc".into(),
            vec!["sandbox", "Staging", "prod-west", "prod-east"],
        ),
        ("filter[name][eq]=prod-east".into(), vec!["prod-east"]),
        ("filter[name]=sandbox".into(), vec!["sandbox"]),
        (
            "filter[name][neq]=prod-east".into(),
            vec!["prod-west", "Staging", "sandbox"],
        ),
        (
            "filter[name][contains]=PROD".into(),
            vec!["prod-east", "prod-west"],
        ),
        ("filter[name][contains]=stag".into(), vec!["Staging"]),
        // LIKE wildcards in the value are plain characters.
        ("filter[name][contains]=%25".into(), vec![]),
        ("filter[name][contains]=_".into(), vec![]),
        (format!("filter[id][eq]={}", ids[1]), vec!["prod-west"]),
        (
            format!("filter[id][oeq]={},{}", ids[3], ids[0]),
            vec!["prod-east", "sandbox"],
        ),
        (
            "filter[cluster_type][eq]=CLUSTER_TYPE_HYBRID".into(),
            vec!["prod-west"],
        ),
        (
            "filter[cluster_type][neq]=CLUSTER_TYPE_HYBRID".into(),
            vec!["prod-east", "Staging", "sandbox"],
        ),
        (
            "filter[cluster_type][oeq]=CLUSTER_TYPE_HYBRID,CLUSTER_TYPE_SERVERLESS".into(),
            vec!["prod-west"],
        ),
        // One of nothing, and id filters that share no id, match nothing (no 500).
        ("filter[cluster_type][oeq]=".into(), vec![]),
        (
            format!("filter[id][eq]={}&filter[id][oeq]={}", ids[0], ids[1]),
            vec![],
        ),
        ("filter[cloud_gateway]=true".into(), vec!["prod-east"]),
        (
            "filter[cloud_gateway]=false".into(),
            vec!["prod-west", "Staging", "sandbox"],
        ),
        ("labels=env:prod".into(), vec!["prod-east", "prod-west"]),
        ("labels=team".into(), vec!["prod-east", "Staging"]),
        ("labels=env:prod,team".into(), vec!["prod-east"]),
        ("labels=env:staging,team:edge".into(), vec!["Staging"]),
        ("labels=missing".into(), vec![]),
        (
            "filter[name][contains]=prod&sort=-created_at".into(),
            vec!["prod-west", "prod-east"],
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(names_in(&app, &t, &query).await, expected, "{query}");
    }
    // The total counts the filtered list, not the organisation's.
    let filtered = app
        .get(
            "/v2/control-planes?filter[name][contains]=prod&page[size]=1",
            &t,
        )
        .await
        .expect(200);
    assert_eq!(filtered.body["meta"]["page"]["total"], 2);
    assert_eq!(filtered.body["data"].as_array().expect("data").len(), 1);

    // Label filters follow label changes.
    app.patch(
        &format!("/v2/control-planes/{}", ids[3]),
        &t,
        json!({"labels": {"env": "prod"}}),
    )
    .await
    .expect(200);
    assert_eq!(
        names_in(&app, &t, "labels=env:prod").await,
        ["prod-east", "prod-west", "sandbox"]
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_list_parameters_and_bad_filter_values_answer_400_naming_them() {
    let app = TestApp::start().await;
    let t = app.token("org", Role::Admin).await;
    for (query, named) in [
        ("size=2", "size"),
        ("page[after]=x", "page[after]"),
        ("filter[name][gt]=a", "filter[name][gt]"),
        ("filter[id][contains]=a", "filter[id][contains]"),
        ("filter[colour][eq]=red", "filter[colour][eq]"),
        ("filter[id][eq]=not-a-uuid", "filter[id][eq]"),
        ("filter[id][oeq]=", "filter[id][oeq]"),
        ("filter[cloud_gateway]=yes", "filter[cloud_gateway]"),
        ("sort=name", "sort"),
        ("labels=,", "labels"),
        ("page[size]=0", "page[size]"),
        ("page[number]=0", "page[number]"),
    ] {
        let reply = app
            .get(&format!("/v2/control-planes?{query}"), &t)
            .await
            .expect(400);
        let problem = assert_names(&reply, named);
        assert_eq!(problem["source"], "query", "{query}");
    }
    let operator = app
        .get("/v2/control-planes?filter[name][gt]=a", &t)
        .await
        .expect(400);
    let reason = operator.body["invalid_parameters"][0]["reason"]
        .as_str()
        .expect("reason");
    assert!(reason.contains("eq, neq, contains"), "{reason}");
    app.stop().await;
}
