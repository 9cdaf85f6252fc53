//! The cluster listener end to end: a raw data-plane client over real TLS 1.3 and WebSocket
//! against an in-process control plane (SQLite, or PostgreSQL with FLEETGATE_TEST_DATABASE_URL).

#[path = "support/dp_client.rs"]
mod dp_client;
mod support;

use std::time::{Duration, Instant};

use dp_client::{dial_raw, query, DialError, DpCert, DpConn};
use fleetgate_control_plane::cluster::listener::ClusterSettings;
use fleetgate_control_plane::store::Role;
use fleetgate_protocol::{CpMessage, DpMessage};
use serde_json::{json, Value};
use support::{eventually, TestApp};
use uuid::Uuid;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const WAIT: Duration = Duration::from_secs(10);

struct Fixture {
    app: TestApp,
    token: String,
    cp: String,
    entities: String,
    cert: DpCert,
    cert_id: String,
}

impl Fixture {
    async fn new() -> Self {
        Self::with(TestApp::start().await).await
    }

    async fn with(app: TestApp) -> Self {
        let token = app.token("acme", Role::Admin).await;
        let (cp, entities) = app.control_plane(&token, "cluster").await;
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
        Self {
            app,
            token,
            cp,
            entities,
            cert,
            cert_id,
        }
    }

    async fn dial(&self, node_id: Uuid, version: &str) -> DpConn {
        DpConn::dial(
            self.app.cluster_addr,
            &self.app.cluster_ca_pem,
            &self.cert,
            node_id,
            version,
        )
        .await
        .expect("dial the cluster listener")
    }

    async fn expected_hash(&self) -> String {
        self.app.expected_hash(&self.cp, &self.token).await
    }

    async fn add_service(&self, name: &str) {
        self.app
            .post(
                &format!("{}/services", self.entities),
                &self.token,
                json!({ "name": name, "url": "http://127.0.0.1:9/" }),
            )
            .await
            .expect(201);
    }

    async fn node(&self, node_id: Uuid) -> Value {
        self.app
            .get(
                &format!("/v2/control-planes/{}/nodes/{node_id}", self.cp),
                &self.token,
            )
            .await
            .expect(200)
            .body["item"]
            .clone()
    }

    /// Polls the node until `check` holds.
    async fn node_where(&self, node_id: Uuid, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(WAIT, what, || async {
            let reply = self
                .app
                .get(
                    &format!("/v2/control-planes/{}/nodes/{node_id}", self.cp),
                    &self.token,
                )
                .await;
            let node = &reply.body["item"];
            (reply.status == 200 && check(node)).then(|| node.clone())
        })
        .await
    }
}

#[tokio::test]
async fn hello_gets_license_then_latest_config_and_applied_shows_in_sync() {
    let f = Fixture::new().await;
    f.add_service("orders").await;
    let expected = f.expected_hash().await;
    let node_id = Uuid::new_v4();
    let mut dp = f.dial(node_id, VERSION).await;
    dp.hello(VERSION, "").await;

    let CpMessage::License { signed_blob } = dp.recv().await else {
        panic!("expected the license first");
    };
    let claims = fleetgate_protocol::verify_license(&signed_blob).expect("a valid license");
    assert!(claims.expires_at > claims.issued_at);

    let (version, hash, config) = dp.expect_reconfigure().await;
    assert_eq!(hash, expected);
    assert!(version >= 1);
    assert_eq!(config["services"][0]["name"], "orders");

    let node = f.node(node_id).await;
    assert_eq!(node["connected"], true);
    assert_eq!(node["sync_status"], "out_of_sync");
    assert_eq!(node["version"], VERSION);
    assert_eq!(node["type"], "kong-proxy");
    assert_eq!(
        node["compatibility_status"]["state"],
        "COMPATIBILITY_STATE_UNKNOWN"
    );
    assert!(node["cert_expiry"].as_i64().unwrap_or(0) > 0);

    dp.send(&DpMessage::Applied {
        config_hash: hash.clone(),
    })
    .await;
    let node = f
        .node_where(node_id, "node in sync", |n| n["sync_status"] == "in_sync")
        .await;
    assert_eq!(node["config_hash"], expected);
    assert!(node["last_ping"].as_i64().unwrap_or(0) > 0);
    assert_eq!(
        node["compatibility_status"]["state"],
        "COMPATIBILITY_STATE_FULLY_COMPATIBLE"
    );
    assert_eq!(node["data_plane_cert_id"], f.cert_id.as_str());

    let list = f
        .app
        .get(&format!("/v2/control-planes/{}/nodes", f.cp), &f.token)
        .await
        .expect(200);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["page"]["total"], 1);

    // A connected node cannot be deleted; a disconnected one can.
    let path = format!("/v2/control-planes/{}/nodes/{node_id}", f.cp);
    f.app.delete(&path, &f.token).await.expect(409);
    dp.close().await;
    f.node_where(node_id, "node disconnected", |n| n["connected"] == false)
        .await;
    f.app.delete(&path, &f.token).await.expect(204);
    f.app.get(&path, &f.token).await.expect(404);
    f.app.stop().await;
}

#[tokio::test]
async fn config_writes_are_pushed_at_once_and_held_hashes_are_not_resent() {
    let f = Fixture::new().await;
    let node_id = Uuid::new_v4();
    let mut dp = f.dial(node_id, VERSION).await;
    dp.hello(VERSION, "").await;
    let (first_version, first_hash, _) = dp.expect_reconfigure().await;
    dp.send(&DpMessage::Applied {
        config_hash: first_hash.clone(),
    })
    .await;

    f.add_service("billing").await;
    let started = Instant::now();
    let (version, hash, config) = dp.expect_reconfigure().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "pushed without batching delay"
    );
    assert!(version > first_version);
    assert_eq!(hash, f.expected_hash().await);
    assert_eq!(config["services"][0]["name"], "billing");
    dp.close().await;

    // A node that already runs the latest hash gets no reconfigure.
    let mut again = f.dial(node_id, VERSION).await;
    again.hello(VERSION, &hash).await;
    again.expect_no_reconfigure(&hash).await;
    f.app.stop().await;
}

#[tokio::test]
async fn a_rejected_config_is_recorded_and_not_resent_until_the_config_changes() {
    let f = Fixture::new().await;
    f.add_service("a").await;
    let node_id = Uuid::new_v4();
    let mut dp = f.dial(node_id, VERSION).await;
    dp.hello(VERSION, "").await;
    let (_, hash, _) = dp.expect_reconfigure().await;
    dp.send(&DpMessage::Rejected {
        config_hash: hash.clone(),
        errors: vec!["routes[0]: regex does not compile".into()],
    })
    .await;
    let node = f
        .node_where(node_id, "rejection recorded", |n| {
            n["sync_status"] == "rejected"
        })
        .await;
    assert_eq!(node["errors"], json!(["routes[0]: regex does not compile"]));
    assert_eq!(node["rejected_config_hash"], hash);
    assert_eq!(
        node["compatibility_status"]["state"],
        "COMPATIBILITY_STATE_INCOMPATIBLE"
    );
    assert_eq!(
        node["compatibility_status"]["issues"][0]["code"],
        "config_rejected"
    );
    dp.close().await;

    // Reconnecting with the old config: the rejected hash is not sent again.
    let mut dp = f.dial(node_id, VERSION).await;
    dp.hello(VERSION, "").await;
    dp.expect_no_reconfigure("").await;

    // The next change is sent.
    f.add_service("b").await;
    let (_, next, _) = dp.expect_reconfigure().await;
    assert_ne!(next, hash);
    assert_eq!(next, f.expected_hash().await);
    f.app.stop().await;
}

#[tokio::test]
async fn version_skew_is_refused_with_a_reason_and_shown_in_nodes() {
    let f = Fixture::new().await;
    let cp = fleetgate_protocol::Version::parse(VERSION).expect("crate version");
    let newer = format!("{}.{}.0", cp.major, cp.minor + 1);
    let other_major = format!("{}.0.0", cp.major + 1);
    for version in [&newer, &other_major] {
        let node_id = Uuid::new_v4();
        let mut dp = f.dial(node_id, version).await;
        dp.hello(version, "").await;
        let CpMessage::Refused { reason } = dp.recv().await else {
            panic!("expected refused for {version}");
        };
        assert!(reason.contains(version.as_str()), "{reason}");
        dp.expect_closed(WAIT).await;
        let node = f.node(node_id).await;
        assert_eq!(node["sync_status"], "incompatible");
        assert_eq!(node["sync_reason"], reason);
        assert_eq!(
            node["compatibility_status"]["issues"][0]["description"],
            reason
        );
        assert_eq!(node["connected"], false);
    }

    // An older minor of the same major is served (with the fields it does not know removed).
    if cp.minor > 0 {
        let older = format!("{}.{}.0", cp.major, cp.minor - 1);
        let node_id = Uuid::new_v4();
        let mut dp = f.dial(node_id, &older).await;
        dp.hello(&older, "").await;
        dp.expect_reconfigure().await;
        assert_eq!(f.node(node_id).await["sync_status"], "out_of_sync");
    }
    f.app.stop().await;
}

#[tokio::test]
async fn unidentified_clients_and_bad_queries_are_refused() {
    let f = Fixture::new().await;
    let addr = f.app.cluster_addr;
    let ca = &f.app.cluster_ca_pem;
    let good_query = query(Uuid::new_v4(), VERSION);

    // A certificate nobody registered: 401 naming why.
    let stranger = DpCert::generate();
    match dial_raw(addr, ca, Some(&stranger), &good_query).await {
        Err(DialError::Http { status, body }) => {
            assert_eq!(status, 401, "{body}");
            assert!(body.contains("detail"), "{body}");
        }
        other => panic!("expected 401, got {:?}", other.map(|_| "a session")),
    }

    // No certificate at all: the handshake succeeds (enrolment needs none) and the outlet
    // upgrade is refused with a 401 naming why.
    match dial_raw(addr, ca, None, &good_query).await {
        Err(DialError::Http { status, body }) => {
            assert_eq!(status, 401, "{body}");
            assert!(body.contains("no client certificate"), "{body}");
        }
        other => panic!("expected 401, got {:?}", other.map(|_| "a session")),
    }

    // A missing parameter is named.
    let missing = format!("node_hostname=x&node_version={VERSION}");
    match dial_raw(addr, ca, Some(&f.cert), &missing).await {
        Err(DialError::Http { status, body }) => {
            assert_eq!(status, 400);
            assert!(body.contains("node_id"), "{body}");
        }
        other => panic!("expected 400, got {:?}", other.map(|_| "a session")),
    }
    f.app.stop().await;
}

#[tokio::test]
async fn deleting_the_certificate_or_the_control_plane_closes_sessions_within_a_second() {
    let f = Fixture::new().await;
    let mut dp = f.dial(Uuid::new_v4(), VERSION).await;
    dp.hello(VERSION, "").await;
    dp.expect_reconfigure().await;
    let started = Instant::now();
    f.app
        .delete(
            &format!(
                "/v2/control-planes/{}/dp-client-certificates/{}",
                f.cp, f.cert_id
            ),
            &f.token,
        )
        .await
        .expect(204);
    dp.expect_closed(Duration::from_secs(1)).await;
    assert!(started.elapsed() <= Duration::from_secs(1));
    // And it cannot come back.
    match dial_raw(
        f.app.cluster_addr,
        &f.app.cluster_ca_pem,
        Some(&f.cert),
        &query(Uuid::new_v4(), VERSION),
    )
    .await
    {
        Err(DialError::Http { status, .. }) => assert_eq!(status, 401),
        other => panic!("expected 401, got {:?}", other.map(|_| "a session")),
    }

    let g = Fixture::with(TestApp::start().await).await;
    let mut dp = g.dial(Uuid::new_v4(), VERSION).await;
    dp.hello(VERSION, "").await;
    dp.expect_reconfigure().await;
    g.app
        .delete(&format!("/v2/control-planes/{}", g.cp), &g.token)
        .await
        .expect(204);
    dp.expect_closed(Duration::from_secs(1)).await;
    f.app.stop().await;
    g.app.stop().await;
}

#[tokio::test]
async fn fifty_sessions_receive_the_same_version() {
    let f = Fixture::new().await;
    let mut nodes = Vec::new();
    for _ in 0..50 {
        let mut dp = f.dial(Uuid::new_v4(), VERSION).await;
        dp.hello(VERSION, "").await;
        let (_, hash, _) = dp.expect_reconfigure().await;
        dp.send(&DpMessage::Applied { config_hash: hash }).await;
        nodes.push(dp);
    }
    f.add_service("fanout").await;
    let expected = f.expected_hash().await;
    let received = futures_util::future::join_all(nodes.iter_mut().map(|dp| async move {
        let (version, hash, _) = dp.expect_reconfigure().await;
        (version, hash)
    }))
    .await;
    let first = received[0].clone();
    assert_eq!(first.1, expected);
    assert!(received.iter().all(|r| *r == first), "{received:?}");

    // The list pages through all of them.
    let mut seen = 0;
    let mut path = format!("/v2/control-planes/{}/nodes?page[size]=20", f.cp);
    loop {
        let page = f.app.get(&path, &f.token).await.expect(200);
        seen += page.body["items"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(page.body["page"]["total"], 50);
        match page.body["page"]["next"].as_str() {
            Some(cursor) => {
                path = format!(
                    "/v2/control-planes/{}/nodes?page[size]=20&page[after]={cursor}",
                    f.cp
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, 50);
    f.app.stop().await;
}

#[tokio::test]
async fn a_silent_session_is_dropped_after_one_and_a_half_intervals() {
    let interval = Duration::from_millis(400);
    let app = TestApp::start_with_cluster(ClusterSettings {
        listen: "127.0.0.1:0".parse().expect("address"),
        ping_interval: interval,
        ..ClusterSettings::default()
    })
    .await;
    let f = Fixture::with(app).await;
    let node_id = Uuid::new_v4();
    let mut dp = f.dial(node_id, VERSION).await;
    dp.hello(VERSION, "").await;
    let (_, hash, _) = dp.expect_reconfigure().await;

    // Pinging keeps it alive past 1.5 intervals...
    let alive_until = Instant::now() + interval * 3;
    while Instant::now() < alive_until {
        dp.ping(&hash).await;
        tokio::time::sleep(interval / 2).await;
    }
    // ...silence ends it.
    let silent_since = Instant::now();
    dp.expect_closed(interval * 5).await;
    assert!(silent_since.elapsed() >= interval / 2, "dropped too early");
    f.node_where(node_id, "node disconnected", |n| n["connected"] == false)
        .await;
    f.app.stop().await;
}

#[tokio::test]
async fn a_new_license_is_pushed_to_connected_sessions() {
    let f = Fixture::new().await;
    let mut dp = f.dial(Uuid::new_v4(), VERSION).await;
    dp.hello(VERSION, "").await;
    let CpMessage::License { signed_blob } = dp.recv().await else {
        panic!("expected the license first");
    };
    let first = fleetgate_protocol::verify_license(&signed_blob).expect("valid license");
    dp.expect_reconfigure().await;

    let operator = f.app.token("acme", Role::Operator).await;
    let org = first.organization_id;
    let expires_at = first.expires_at + 86_400;
    f.app
        .put(
            &format!("/v2/organizations/{org}/license"),
            &operator,
            json!({ "expires_at": expires_at }),
        )
        .await
        .expect(200);
    let pushed = loop {
        match dp.recv().await {
            CpMessage::License { signed_blob } => break signed_blob,
            CpMessage::Pong { .. } => continue,
            other => panic!("expected the new license, got {other:?}"),
        }
    };
    let claims = fleetgate_protocol::verify_license(&pushed).expect("valid license");
    assert_eq!(claims.expires_at, expires_at);
    assert_ne!(claims.license_id, first.license_id);
    f.app.stop().await;
}

#[tokio::test]
async fn a_restart_marks_nodes_disconnected_and_old_nodes_are_purged() {
    let f = Fixture::new().await;
    let node_id = Uuid::new_v4();
    let mut dp = f.dial(node_id, VERSION).await;
    dp.hello(VERSION, "").await;
    dp.expect_reconfigure().await;
    f.node_where(node_id, "node connected", |n| n["connected"] == true)
        .await;

    // A second control plane starting on the same database (as after a crash) cannot know
    // of any session, so the node shows disconnected until it pings again.
    let second = fleetgate_control_plane::server::start(
        f.app.store.clone(),
        "127.0.0.1:0".parse().expect("address"),
        fleetgate_control_plane::ApiSettings::default(),
    )
    .await
    .expect("start a second control plane");
    assert_eq!(f.node(node_id).await["connected"], false);
    dp.ping("").await;
    f.node_where(node_id, "node connected again", |n| n["connected"] == true)
        .await;
    second
        .shutdown()
        .await
        .expect("stop the second control plane");

    // Connected nodes are never purged; disconnected ones unseen for long are.
    let future = fleetgate_control_plane::store::now_unix() + 60;
    assert_eq!(
        f.app
            .store
            .purge_nodes_unseen_since(future)
            .await
            .expect("purge"),
        0
    );
    dp.close().await;
    f.node_where(node_id, "node disconnected", |n| n["connected"] == false)
        .await;
    assert_eq!(
        f.app
            .store
            .purge_nodes_unseen_since(future)
            .await
            .expect("purge"),
        1
    );
    f.app
        .get(
            &format!("/v2/control-planes/{}/nodes/{node_id}", f.cp),
            &f.token,
        )
        .await
        .expect(404);
    f.app.stop().await;
}

#[tokio::test]
async fn a_reconnecting_node_replaces_its_older_session_and_stays_connected() {
    let f = Fixture::new().await;
    let node_id = Uuid::new_v4();
    let mut old = f.dial(node_id, VERSION).await;
    old.hello(VERSION, "").await;
    let (_, hash, _) = old.expect_reconfigure().await;

    let mut new = f.dial(node_id, VERSION).await;
    new.hello(VERSION, &hash).await;
    old.expect_closed(WAIT).await;
    new.expect_no_reconfigure(&hash).await;
    let node = f.node(node_id).await;
    assert_eq!(node["connected"], true);
    assert_eq!(node["sync_status"], "in_sync");
    f.app.stop().await;
}
