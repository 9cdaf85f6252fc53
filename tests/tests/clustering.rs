//! Hybrid mode end to end: the real `fleetgate serve` and `fleetgate-dp` processes over real
//! mutual TLS. Each test is one acceptance point of the clustering issue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_e2e::{
    eventually, ControlPlaneProcess, DataPlaneOptions, DataPlaneProcess, DpCredentials, Relay,
    Upstream,
};
use reqwest::Method;
use serde_json::{json, Value};

/// Settings that make heartbeats and reconnects fast enough for tests.
fn fast_cluster(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![
        ("cluster_ping_interval".to_string(), "1s".to_string()),
        (
            "cluster_reconnect_delay".to_string(),
            "200ms..500ms".to_string(),
        ),
    ];
    v.extend(
        extra
            .iter()
            .map(|(k, val)| (k.to_string(), val.to_string())),
    );
    v
}

async fn joined_dp(cp_endpoint: String, creds: &DpCredentials) -> DataPlaneProcess {
    DataPlaneProcess::start(DataPlaneOptions {
        control_plane: Some(cp_endpoint),
        credentials: Some(creds.clone()),
        server_name: Some("localhost".into()),
        extra: fast_cluster(&[]),
        ..Default::default()
    })
    .await
}

async fn node_of(cp: &ControlPlaneProcess, cp_id: &str) -> Option<Value> {
    cp.nodes(cp_id).await.into_iter().next()
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_created_through_the_api_is_proxied_and_the_node_is_in_sync() {
    let upstream = Upstream::start("one").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let dp = joined_dp(cp.cluster_endpoint(), &creds).await;

    cp.create_service_and_route(&cp_id, "one", upstream.addr, "/one")
        .await;
    let expected = cp.expected_hash(&cp_id).await;
    dp.wait_for_hash(&expected, WAIT).await;
    let (status, body) = dp.get("/one/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"upstream\":\"one\""), "{body}");

    let status = dp.status().await;
    assert_eq!(status["config_source"], "cp");
    assert_eq!(status["connected"], true);
    let node = eventually(WAIT, "the node to show in_sync", || async {
        node_of(&cp, &cp_id)
            .await
            .filter(|n| n["sync_status"] == "in_sync")
    })
    .await;
    assert_eq!(node["config_hash"], expected);
    assert_eq!(node["connected"], true);
    assert_eq!(node["id"], status["node_id"]);
    assert_eq!(node["hostname"], status["hostname"]);
    assert!(
        !node["hostname"].as_str().unwrap_or("").is_empty(),
        "{node}"
    );
    assert!(node["cert_expiry"].as_i64().unwrap_or(0) > 0, "{node}");
}

/// Steady load through the DP while the CP is killed: not one failed request. Then changes
/// made while the DP's link is cut reach it as one push of the latest config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_plane_keeps_proxying_through_a_control_plane_crash_and_gets_only_the_latest_config(
) {
    let upstream = Upstream::start("steady").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let relay = Relay::start(cp.cluster).await;
    let dp = joined_dp(relay.addr.to_string(), &creds).await;
    cp.create_service_and_route(&cp_id, "steady", upstream.addr, "/steady")
        .await;
    dp.wait_for_hash(&cp.expected_hash(&cp_id).await, WAIT)
        .await;

    // Load: 4 clients in a loop until told to stop; every non-200 counts as a failure.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let proxy = dp.proxy;
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(format!("http://{proxy}/steady/x")).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let before = ok.load(Ordering::Relaxed);
    cp.kill();
    // The DP notices within 1.5 ping intervals; keep the load on well past that.
    eventually(
        WAIT,
        "the data plane to notice the control plane is gone",
        || async { (dp.status().await["connected"] == false).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // CP back, but the DP's link is cut: three changes it cannot see.
    relay.block();
    cp.start_again().await;
    let mut missed = Vec::new();
    for i in 0..3 {
        cp.create_service_and_route(&cp_id, &format!("s{i}"), upstream.addr, &format!("/s{i}"))
            .await;
        missed.push(cp.expected_hash(&cp_id).await);
    }
    let latest = missed.pop().expect("three changes");
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.unblock();
    dp.wait_for_hash(&latest, WAIT).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let served = ok.load(Ordering::Relaxed) - before;
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed proxied requests ({served} succeeded)"
    );
    assert!(served > 100, "the load ran ({served} requests)");
    // Only the newest config ever reached the node: the intermediate hashes were never
    // applied (they would be logged) and the node runs the latest.
    let log = dp.log();
    for hash in &missed {
        assert!(
            !log.contains(hash.as_str()),
            "intermediate config {hash} was applied"
        );
    }
    assert_eq!(dp.get("/s2/x").await.0, 200);
}

/// A DP restarted while the CP is down serves its cache; without a cache it serves
/// `declarative_config` if set, else 404 for everything — and keeps dialling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_data_plane_serves_its_cache_then_declarative_then_nothing_while_the_control_plane_is_down(
) {
    let upstream = Upstream::start("cached").await;
    let local = Upstream::start("local").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let declarative = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: local\n    url: http://{}\n    routes: [{{name: local, paths: [/local]}}]\n",
        local.addr
    );
    let mut dp = DataPlaneProcess::start(DataPlaneOptions {
        control_plane: Some(cp.cluster_endpoint()),
        credentials: Some(creds.clone()),
        server_name: Some("localhost".into()),
        declarative_yaml: Some(declarative),
        extra: fast_cluster(&[]),
        ..Default::default()
    })
    .await;
    cp.create_service_and_route(&cp_id, "cached", upstream.addr, "/cached")
        .await;
    let expected = cp.expected_hash(&cp_id).await;
    dp.wait_for_hash(&expected, WAIT).await;
    dp.wait_for_cache(&expected, WAIT).await;
    // The CP's config replaced the local one.
    assert_eq!(dp.get("/local/x").await.0, 404);

    cp.kill();
    dp.restart().await;
    let status = dp.status().await;
    assert_eq!(status["config_source"], "cache", "{status}");
    assert_eq!(status["config_hash"], expected);
    assert_eq!(dp.get("/cached/x").await.0, 200);

    std::fs::remove_file(dp.prefix().join("config.cache")).expect("delete the cache");
    dp.restart().await;
    assert_eq!(dp.status().await["config_source"], "declarative");
    assert_eq!(dp.get("/local/x").await.0, 200);
    assert_eq!(dp.get("/cached/x").await.0, 404);

    // It keeps dialling: the CP comes back and its config wins again.
    cp.start_again().await;
    dp.wait_for_hash(&expected, WAIT).await;
    assert_eq!(dp.status().await["config_source"], "cp");
    // ...and is the cache again (the same content as the declarative-era hash would not
    // have stopped the push: a local config is never taken for the control plane's).
    dp.wait_for_cache(&expected, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cache_or_declarative_config_the_node_answers_404_and_keeps_dialling() {
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    cp.kill();
    let dp = joined_dp(cp.cluster_endpoint(), &creds).await;
    let status = dp.status().await;
    assert_eq!(status["config_source"], "empty", "{status}");
    let (code, body) = dp.get("/anything").await;
    assert_eq!(code, 404);
    assert!(body.contains("no Route matched"), "{body}");
    cp.start_again().await;
    let expected = cp.expected_hash(&cp_id).await;
    dp.wait_for_hash(&expected, WAIT).await;
    eventually(WAIT, "the node to connect", || async {
        (dp.status().await["connected"] == true).then_some(())
    })
    .await;
}

/// A corrupt cache is detected, moved aside and the next source used; no crash loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_is_moved_aside_and_the_next_source_is_used() {
    let upstream = Upstream::start("c").await;
    let local = Upstream::start("local").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let mut dp = DataPlaneProcess::start(DataPlaneOptions {
        control_plane: Some(cp.cluster_endpoint()),
        credentials: Some(creds.clone()),
        server_name: Some("localhost".into()),
        declarative_yaml: Some(format!(
            "_format_version: \"3.0\"\nservices:\n  - name: local\n    url: http://{}\n    routes: [{{name: local, paths: [/local]}}]\n",
            local.addr
        )),
        extra: fast_cluster(&[]),
        ..Default::default()
    })
    .await;
    cp.create_service_and_route(&cp_id, "c", upstream.addr, "/c")
        .await;
    let expected = cp.expected_hash(&cp_id).await;
    dp.wait_for_hash(&expected, WAIT).await;
    dp.wait_for_cache(&expected, WAIT).await;
    cp.kill();
    let cache = dp.prefix().join("config.cache");
    let pristine = std::fs::read(&cache).expect("read the cache");

    // Truncated, then one flipped byte near the end (inside the gzip body).
    let mut flipped = pristine.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x40;
    for (what, bytes) in [
        ("truncated", pristine[..pristine.len() / 2].to_vec()),
        ("flipped", flipped),
    ] {
        std::fs::write(&cache, &bytes).expect("damage the cache");
        dp.restart().await;
        let status = dp.status().await;
        assert_eq!(status["config_source"], "declarative", "{what}: {status}");
        assert_eq!(dp.get("/local/x").await.0, 200, "{what}");
        assert!(!cache.exists(), "{what}: the bad cache must be moved aside");
        let moved = std::fs::read_dir(dp.prefix())
            .expect("list the prefix")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("config.cache.corrupt")
            })
            .count();
        assert!(moved >= 1, "{what}: no config.cache.corrupt-* file");
        assert!(dp.log().contains("config.cache"), "{what}: nothing logged");
    }
}

/// The DP of one control plane never receives another's config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_planes_of_two_control_planes_get_only_their_own_config() {
    let a_up = Upstream::start("a").await;
    let b_up = Upstream::start("b").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let a = cp.create_control_plane("a", "pinned_client_certs").await;
    let b = cp.create_control_plane("b", "pki_client_certs").await;
    let a_creds = cp.dp_credentials(&a).await;
    let b_creds = cp.dp_credentials(&b).await;
    let dp_a = joined_dp(cp.cluster_endpoint(), &a_creds).await;
    let dp_b = joined_dp(cp.cluster_endpoint(), &b_creds).await;
    cp.create_service_and_route(&a, "a", a_up.addr, "/a").await;
    cp.create_service_and_route(&b, "b", b_up.addr, "/b").await;
    dp_a.wait_for_hash(&cp.expected_hash(&a).await, WAIT).await;
    dp_b.wait_for_hash(&cp.expected_hash(&b).await, WAIT).await;
    assert_eq!(dp_a.get("/a/x").await.0, 200);
    assert_eq!(dp_a.get("/b/x").await.0, 404);
    assert_eq!(dp_b.get("/b/x").await.0, 200);
    assert_eq!(dp_b.get("/a/x").await.0, 404);
    assert_eq!(cp.nodes(&a).await.len(), 1);
    assert_eq!(cp.nodes(&b).await.len(), 1);
}

/// A config the DP rejects is reported with its error, not re-sent, and the next good change
/// applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_config_is_reported_in_nodes_and_not_resent() {
    let upstream = Upstream::start("r").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let dp = joined_dp(cp.cluster_endpoint(), &creds).await;
    cp.create_service_and_route(&cp_id, "r", upstream.addr, "/r")
        .await;
    let good = cp.expected_hash(&cp_id).await;
    dp.wait_for_hash(&good, WAIT).await;

    // A certificate whose key belongs to another certificate: the CP stores it, the DP cannot
    // load it into TLS and refuses the whole config.
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../services/control-plane/tests/fixtures"
    );
    let cert = std::fs::read_to_string(format!("{fixtures}/example.com.cert.pem")).expect("cert");
    let key = std::fs::read_to_string(format!("{fixtures}/api.example.com.key.pem")).expect("key");
    cp.ok(
        Method::POST,
        &format!("/v2/control-planes/{cp_id}/core-entities/certificates"),
        Some(json!({"cert": cert, "key": key})),
    )
    .await;
    let bad = cp.expected_hash(&cp_id).await;
    let node = eventually(WAIT, "the node to show the rejection", || async {
        node_of(&cp, &cp_id)
            .await
            .filter(|n| n["sync_status"] == "rejected")
    })
    .await;
    let errors = node["errors"].to_string();
    assert!(
        errors.contains("the private key does not match the certificate"),
        "{node}"
    );
    // The DP still runs the good config and traffic flows.
    assert_eq!(dp.status().await["config_hash"], good);
    assert_eq!(dp.get("/r/x").await.0, 200);
    // Not re-sent: over several heartbeats the DP is offered the bad hash exactly once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        dp.log().matches(bad.as_str()).count(),
        1,
        "the rejected config was sent again:\n{}",
        dp.log()
    );
    // The next good change (the bad certificate removed, a route added) applies.
    let certs = cp
        .ok(
            Method::GET,
            &format!("/v2/control-planes/{cp_id}/core-entities/certificates"),
            None,
        )
        .await;
    let cert_id = certs["data"][0]["id"].as_str().expect("certificate id");
    cp.ok(
        Method::DELETE,
        &format!("/v2/control-planes/{cp_id}/core-entities/certificates/{cert_id}"),
        None,
    )
    .await;
    cp.create_service_and_route(&cp_id, "r2", upstream.addr, "/r2")
        .await;
    let next = cp.expected_hash(&cp_id).await;
    dp.wait_for_hash(&next, WAIT).await;
    eventually(WAIT, "the node back in sync", || async {
        node_of(&cp, &cp_id)
            .await
            .filter(|n| n["sync_status"] == "in_sync")
    })
    .await;
}

/// License expiry stops traffic with a clear 503; renewal resumes it without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_license_stops_traffic_and_a_renewal_resumes_it() {
    let upstream = Upstream::start("l").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let dp = joined_dp(cp.cluster_endpoint(), &creds).await;
    cp.create_service_and_route(&cp_id, "l", upstream.addr, "/l")
        .await;
    dp.wait_for_hash(&cp.expected_hash(&cp_id).await, WAIT)
        .await;
    assert_eq!(dp.get("/l/x").await.0, 200);

    let org = cp.ok(Method::GET, "/v2/organizations/me", None).await;
    let org_id = org["id"].as_str().expect("org id");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let (code, body) = cp
        .call_as(
            &cp.operator_token,
            Method::PUT,
            &format!("/v2/organizations/{org_id}/license"),
            Some(json!({"expires_at": now + 2})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let body = eventually(
        WAIT,
        "traffic to stop after the license expires",
        || async {
            let (code, body) = dp.get("/l/x").await;
            (code == 503).then_some(body)
        },
    )
    .await;
    assert!(body.contains("license expired"), "{body}");
    let status = dp.status().await;
    assert_eq!(status["license"]["expired"], true, "{status}");

    let (code, body) = cp
        .call_as(
            &cp.operator_token,
            Method::PUT,
            &format!("/v2/organizations/{org_id}/license"),
            Some(json!({"expires_at": now + 86_400})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    eventually(WAIT, "traffic to resume after renewal", || async {
        (dp.get("/l/x").await.0 == 200).then_some(())
    })
    .await;
}

/// A silent link is dropped after 1.5 ping intervals and re-dialled within the jitter window;
/// after a CP restart every node is back in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_loss_reconnects_within_the_jitter_window_and_a_restarted_control_plane_resyncs_every_node(
) {
    let upstream = Upstream::start("h").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let relay = Relay::start(cp.cluster).await;
    let mut dps = Vec::new();
    for _ in 0..3 {
        dps.push(joined_dp(relay.addr.to_string(), &creds).await);
    }
    cp.create_service_and_route(&cp_id, "h", upstream.addr, "/h")
        .await;
    let first = cp.expected_hash(&cp_id).await;
    for dp in &dps {
        dp.wait_for_hash(&first, WAIT).await;
    }

    // Silence: the sockets stay open, nothing arrives. Ping 1 s -> dropped by 1.5 s after the
    // last frame; reconnect delay 200..500 ms.
    relay.freeze();
    let frozen_at = std::time::Instant::now();
    eventually(
        Duration::from_secs(5),
        "the node to drop the silent link",
        || async { (dps[0].status().await["connected"] == false).then_some(()) },
    )
    .await;
    let dropped_after = frozen_at.elapsed();
    eventually(Duration::from_secs(5), "the node to reconnect", || async {
        (dps[0].status().await["connected"] == true).then_some(())
    })
    .await;
    let back_after = frozen_at.elapsed();
    assert!(
        dropped_after <= Duration::from_millis(2000),
        "dropped only after {dropped_after:?}"
    );
    assert!(
        back_after <= Duration::from_millis(2000 + 500 + 500),
        "reconnected only after {back_after:?}"
    );

    // CP restart: a change made right after it reaches every node.
    cp.restart().await;
    cp.create_service_and_route(&cp_id, "h2", upstream.addr, "/h2")
        .await;
    let second = cp.expected_hash(&cp_id).await;
    for dp in &dps {
        dp.wait_for_hash(&second, WAIT).await;
    }
    let nodes = eventually(WAIT, "every node in sync and connected", || async {
        let nodes = cp.nodes(&cp_id).await;
        (nodes.len() == 3
            && nodes
                .iter()
                .all(|n| n["sync_status"] == "in_sync" && n["connected"] == true))
        .then_some(nodes)
    })
    .await;
    assert!(nodes.iter().all(|n| n["config_hash"] == second));
}
