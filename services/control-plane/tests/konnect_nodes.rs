//! Contract test: dp-client-certificates and data-plane nodes answer in the shapes of
//! Konnect's control-planes-config v2 reference ("DP Certificates", "DP Nodes"): `{item}` for
//! one resource, `{items, page: {total, next}}` for lists, integer Unix-second timestamps,
//! `page[size]`/`page[after]` and nothing else as list parameters. The request bodies are
//! Konnect's examples written out by hand. SQLite, or PostgreSQL with
//! FLEETGATE_TEST_DATABASE_URL.

#[path = "support/dp_client.rs"]
mod dp_client;
mod support;

use std::time::Duration;

use dp_client::{DpCert, DpConn};
use fleetgate_control_plane::store::Role;
use serde_json::{json, Value};
use support::{eventually, TestApp};
use uuid::Uuid;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const WAIT: Duration = Duration::from_secs(10);

/// Konnect's `DataPlaneClientCertificate` and Fleetgate's additions, with their JSON types.
fn assert_certificate_shape(item: &Value) {
    assert!(
        Uuid::parse_str(item["id"].as_str().expect("id")).is_ok(),
        "{item}"
    );
    assert!(item["cert"]
        .as_str()
        .expect("cert")
        .contains("BEGIN CERTIFICATE"));
    assert!(
        item["created_at"].is_i64(),
        "created_at is Unix seconds: {item}"
    );
    assert!(
        item["updated_at"].is_i64(),
        "updated_at is Unix seconds: {item}"
    );
    assert!(item["fingerprint_sha256"].is_string(), "{item}");
    assert!(item["subject"].is_string(), "{item}");
    assert!(item["not_after"].is_i64(), "{item}");
}

/// Konnect's node record (list-nodes / get-node) and Fleetgate's additions.
fn assert_node_shape(node: &Value) {
    for field in ["id", "version", "hostname", "type", "config_hash"] {
        assert!(node[field].is_string(), "{field} is a string: {node}");
    }
    for field in ["last_ping", "created_at", "updated_at"] {
        assert!(node[field].is_i64(), "{field} is Unix seconds: {node}");
    }
    assert_eq!(node["type"], "kong-proxy");
    let state = node["compatibility_status"]["state"]
        .as_str()
        .expect("compatibility_status.state");
    assert!(state.starts_with("COMPATIBILITY_STATE_"), "{state}");
    assert!(node["compatibility_status"]["issues"].is_array(), "{node}");
    assert!(node["sync_status"].is_string(), "{node}");
    assert!(node["errors"].is_array(), "{node}");
    assert!(node["connected"].is_boolean(), "{node}");
    assert!(node["cert_expiry"].is_i64(), "{node}");
}

#[tokio::test]
async fn dp_client_certificates_answer_in_konnect_shapes() {
    let app = TestApp::start().await;
    let token = app.token("acme", Role::Admin).await;
    let (cp, _) = app.control_plane(&token, "contract").await;
    let path = format!("/v2/control-planes/{cp}/dp-client-certificates");

    // Konnect's example: `{"cert": "<PEM>"}`; 201 `{item}`.
    let first = DpCert::generate();
    let created = app
        .post(&path, &token, json!({ "cert": first.cert_pem }))
        .await
        .expect(201);
    let item = &created.body["item"];
    assert_certificate_shape(item);
    assert!(item.get("title").is_none(), "no title given: {item}");
    assert_eq!(item["updated_at"], item["created_at"]);
    let first_id = created.item_id();

    // With Konnect's optional title.
    let second = DpCert::generate();
    let titled = app
        .post(
            &path,
            &token,
            json!({ "cert": second.cert_pem, "title": "edge nodes" }),
        )
        .await
        .expect(201);
    assert_eq!(titled.body["item"]["title"], "edge nodes");
    let bad_title = app
        .post(
            &path,
            &token,
            json!({ "cert": DpCert::generate().cert_pem, "title": " " }),
        )
        .await
        .expect(400);
    assert_eq!(bad_title.invalid_fields(), vec!["title"]);

    // get: `{item}`.
    let shown = app
        .get(&format!("{path}/{first_id}"), &token)
        .await
        .expect(200);
    assert_certificate_shape(&shown.body["item"]);
    assert_eq!(shown.body["item"]["id"], first_id.as_str());

    // list: `{items, page: {total, next}}`, paged with page[size]/page[after].
    let page = app
        .get(&format!("{path}?page[size]=1"), &token)
        .await
        .expect(200);
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(1));
    assert_certificate_shape(&page.body["items"][0]);
    assert_eq!(page.body["page"]["total"], 2);
    let next = page.body["page"]["next"].as_str().expect("page.next");
    let last = app
        .get(&format!("{path}?page[size]=1&page[after]={next}"), &token)
        .await
        .expect(200);
    assert_eq!(last.body["items"].as_array().map(Vec::len), Some(1));
    assert_ne!(last.body["items"][0]["id"], page.body["items"][0]["id"]);
    assert_eq!(last.body["page"]["total"], 2);
    assert_eq!(last.body["page"]["next"], Value::Null);

    // A query parameter the list does not know is a 400 naming it.
    let unknown = app.get(&format!("{path}?size=1"), &token).await.expect(400);
    assert_eq!(unknown.invalid_fields(), vec!["size"]);
    assert_eq!(unknown.body["invalid_parameters"][0]["source"], "query");

    // Missing cert: 400 naming it.
    let missing = app.post(&path, &token, json!({})).await.expect(400);
    assert_eq!(missing.invalid_fields(), vec!["cert"]);

    // generate keeps its extra key beside the item.
    let generated = app
        .call(
            reqwest::Method::POST,
            &format!("{path}/generate"),
            Some(&token),
            None,
        )
        .await
        .expect(201);
    assert_certificate_shape(&generated.body["item"]);
    assert!(generated.body["key"]
        .as_str()
        .expect("key")
        .contains("PRIVATE KEY"));

    app.delete(&format!("{path}/{first_id}"), &token)
        .await
        .expect(204);
    app.stop().await;
}

#[tokio::test]
async fn nodes_answer_in_konnect_shapes() {
    let app = TestApp::start().await;
    let token = app.token("acme", Role::Admin).await;
    let (cp, _) = app.control_plane(&token, "contract").await;
    let nodes = format!("/v2/control-planes/{cp}/nodes");

    // Empty: still the wrapper, with a zero total and no next page.
    let empty = app.get(&nodes, &token).await.expect(200);
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(empty.body["page"]["total"], 0);
    assert_eq!(empty.body["page"]["next"], Value::Null);

    let cert = DpCert::generate();
    let cert_id = app
        .post(
            &format!("/v2/control-planes/{cp}/dp-client-certificates"),
            &token,
            json!({ "cert": cert.cert_pem }),
        )
        .await
        .expect(201)
        .item_id();
    let mut connections = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = Uuid::new_v4();
        let mut dp = DpConn::dial(app.cluster_addr, &app.cluster_ca_pem, &cert, id, VERSION)
            .await
            .expect("dial the cluster listener");
        dp.hello(VERSION, "").await;
        connections.push(dp);
        ids.push(id);
    }

    // Two pages of two and one, in id order, each with the whole total.
    let first = eventually(WAIT, "three nodes listed", || async {
        let reply = app.get(&format!("{nodes}?page[size]=2"), &token).await;
        (reply.status == 200 && reply.body["page"]["total"] == 3).then_some(reply)
    })
    .await;
    let items = first.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    items.iter().for_each(assert_node_shape);
    assert_eq!(items[0]["data_plane_cert_id"], cert_id.as_str());
    let next = first.body["page"]["next"].as_str().expect("page.next");
    let second = app
        .get(&format!("{nodes}?page[size]=2&page[after]={next}"), &token)
        .await
        .expect(200);
    assert_eq!(second.body["items"].as_array().map(Vec::len), Some(1));
    // The two pages hold the three nodes, each once.
    let mut listed: Vec<String> = items
        .iter()
        .chain(second.body["items"].as_array().expect("items"))
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(second.body["page"]["total"], 3);
    assert_eq!(second.body["page"]["next"], Value::Null);

    // get: `{item}`.
    let one = app
        .get(&format!("{nodes}/{}", ids[1]), &token)
        .await
        .expect(200);
    assert_node_shape(&one.body["item"]);
    assert_eq!(one.body["item"]["id"], ids[1].to_string());

    // Unknown parameters and bad cursors are 400s naming the parameter.
    for (query, field) in [
        ("size=2", "size"),
        ("filter[hostname][eq]=x", "filter[hostname][eq]"),
        ("page[after]=%25%25", "page[after]"),
        ("page[size]=0", "page[size]"),
    ] {
        let reply = app
            .get(&format!("{nodes}?{query}"), &token)
            .await
            .expect(400);
        assert_eq!(reply.invalid_fields(), vec![field], "{query}");
    }

    for dp in connections {
        dp.close().await;
    }
    app.stop().await;
}
