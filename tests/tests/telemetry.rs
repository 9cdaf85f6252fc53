//! Usage end to end: requests proxied by real data-plane processes are billed and counted by
//! the control plane exactly once, through control-plane crashes and cut links.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_e2e::{
    eventually, ControlPlaneProcess, DataPlaneOptions, DataPlaneProcess, DpCredentials, Relay,
    Upstream,
};
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// `YYYY-MM` of a Unix time (UTC), by the civil-from-days algorithm.
fn period_of(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

async fn dp_via(relay: &Relay, creds: &DpCredentials, extra: &[(&str, &str)]) -> DataPlaneProcess {
    let mut settings = vec![
        ("cluster_ping_interval".to_string(), "1s".to_string()),
        (
            "cluster_reconnect_delay".to_string(),
            "100ms..300ms".to_string(),
        ),
        ("analytics_flush_interval".to_string(), "200ms".to_string()),
    ];
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DataPlaneProcess::start(DataPlaneOptions {
        control_plane: Some(relay.addr.to_string()),
        credentials: Some(creds.clone()),
        server_name: Some("localhost".into()),
        extra: settings,
        ..Default::default()
    })
    .await
}

async fn billed_calls(cp: &ControlPlaneProcess, periods: &[String]) -> i64 {
    let mut total = 0;
    for period in periods {
        let (code, body) = cp
            .call(
                Method::GET,
                &format!("/v2/billing/usage?period={period}"),
                None,
            )
            .await;
        assert_eq!(code, 200, "{body}");
        total += body["api_calls"].as_i64().unwrap_or(0);
    }
    total
}

/// `request_count` per value of `dimension` over the last hour.
async fn counts_by(cp: &ControlPlaneProcess, dimension: &str) -> HashMap<String, i64> {
    let body = cp
        .ok(
            Method::POST,
            "/v2/analytics/metrics",
            Some(json!({
                "metrics": ["request_count"],
                "dimensions": [dimension],
                "time_range": {"type": "relative", "time_range": "1h"},
            })),
        )
        .await;
    let mut counts = HashMap::new();
    for point in body["data"].as_array().cloned().unwrap_or_default() {
        let key = match &point["event"][dimension] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *counts.entry(key).or_default() += point["event"]["request_count"].as_i64().unwrap_or(0);
    }
    counts
}

/// Two DPs under load; the CP is killed and restarted 5 times and each DP's link is cut twice.
/// Billed calls equal the requests sent, exactly, and analytics agree per service, route and
/// consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_proxied_request_is_billed_exactly_once_through_crashes_and_partitions() {
    let upstream = Upstream::start("billed").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let started_at = now();
    cp.create_service_and_route(&cp_id, "open", upstream.addr, "/open")
        .await;
    cp.create_service_and_route(&cp_id, "keyed", upstream.addr, "/keyed")
        .await;
    let base = format!("/v2/control-planes/{cp_id}/core-entities");
    let consumer = cp
        .ok(
            Method::POST,
            &format!("{base}/consumers"),
            Some(json!({"username": "alice"})),
        )
        .await;
    let consumer_id = consumer["id"].as_str().expect("consumer id").to_string();
    cp.ok(
        Method::POST,
        &format!("{base}/consumers/{consumer_id}/key-auth"),
        Some(json!({"key": "alice-key"})),
    )
    .await;
    cp.ok(
        Method::POST,
        &format!("{base}/plugins"),
        Some(json!({"name": "key-auth", "route": {"id": route_id(&cp, &base, "keyed").await}})),
    )
    .await;
    let relays = [
        Relay::start(cp.cluster).await,
        Relay::start(cp.cluster).await,
    ];
    let dps = [
        dp_via(&relays[0], &creds, &[]).await,
        dp_via(&relays[1], &creds, &[]).await,
    ];
    let expected = cp.expected_hash(&cp_id).await;
    for dp in &dps {
        dp.wait_for_hash(&expected, WAIT).await;
    }

    // Load: each DP gets a steady stream on both routes until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (i, dp) in dps.iter().enumerate() {
        let proxy = dp.proxy;
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut open, mut keyed, mut failed) = (0i64, 0i64, 0i64);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let keyed_turn = (n + i as u64).is_multiple_of(3);
                let req = if keyed_turn {
                    client
                        .get(format!("http://{proxy}/keyed/{n}"))
                        .header("apikey", "alice-key")
                } else {
                    client.get(format!("http://{proxy}/open/{n}"))
                };
                match req.send().await {
                    Ok(r) if r.status() == 200 => {
                        if keyed_turn {
                            keyed += 1
                        } else {
                            open += 1
                        }
                    }
                    _ => failed += 1,
                }
            }
            (open, keyed, failed)
        }));
    }
    // Chaos: 5 CP crashes, and each link cut twice in between.
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        cp.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        cp.start_again().await;
        if round < 2 {
            for relay in &relays {
                relay.block();
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            for relay in &relays {
                relay.unblock();
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut open, mut keyed) = (0, 0);
    for task in load {
        let (o, k, failed) = task.await.expect("load task");
        assert_eq!(failed, 0, "proxied requests failed");
        open += o;
        keyed += k;
    }
    let sent = open + keyed;
    assert!(sent > 200, "the load ran ({sent} requests)");

    let periods: Vec<String> = {
        let mut p = vec![period_of(started_at)];
        if period_of(now()) != p[0] {
            p.push(period_of(now()));
        }
        p
    };
    eventually(WAIT, "billing to count every request", || async {
        (billed_calls(&cp, &periods).await >= sent).then_some(())
    })
    .await;
    // Exactly: a flush or two later it has not grown (no re-sent batch counted twice).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let billed = billed_calls(&cp, &periods).await;
    eprintln!("sent {sent} requests ({open} open, {keyed} keyed) through 5 CP crashes and 2 cuts per link; billed {billed}");
    assert_eq!(billed, sent, "billed API calls");

    let by_consumer = counts_by(&cp, "consumer").await;
    assert_eq!(
        by_consumer.get(&consumer_id).copied(),
        Some(keyed),
        "{by_consumer:?}"
    );
    let by_route = counts_by(&cp, "route").await;
    let mut route_counts: Vec<i64> = by_route.values().copied().collect();
    route_counts.sort();
    let mut want = vec![open, keyed];
    want.sort();
    assert_eq!(route_counts, want, "{by_route:?}");
    let by_service = counts_by(&cp, "gateway_service").await;
    assert_eq!(by_service.values().sum::<i64>(), sent, "{by_service:?}");
    let by_node = counts_by(&cp, "data_plane_node").await;
    assert_eq!(by_node.len(), 2, "{by_node:?}");
}

async fn route_id(cp: &ControlPlaneProcess, base: &str, name: &str) -> String {
    let route = cp
        .ok(Method::GET, &format!("{base}/routes/{name}"), None)
        .await;
    route["id"].as_str().expect("route id").to_string()
}

/// A disconnected DP with a buffer of L records, sent M > L requests: the newest L arrive and
/// M - L are reported dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_keeps_the_newest_records_and_reports_the_drop() {
    const LIMIT: i64 = 50;
    const SENT: i64 = 80;
    let upstream = Upstream::start("buffered").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    cp.create_service_and_route(&cp_id, "b", upstream.addr, "/b")
        .await;
    let relay = Relay::start(cp.cluster).await;
    let dp = dp_via(&relay, &creds, &[("analytics_buffer_size_limit", "50")]).await;
    dp.wait_for_hash(&cp.expected_hash(&cp_id).await, WAIT)
        .await;

    relay.block();
    eventually(WAIT, "the node to see the link down", || async {
        (dp.status().await["connected"] == false).then_some(())
    })
    .await;
    for i in 0..SENT {
        assert_eq!(dp.get(&format!("/b/{i}")).await.0, 200);
    }
    // Workers hand their records to the node's buffer at each flush tick.
    eventually(WAIT, "the node to count the drop", || async {
        (dp.status().await["telemetry"]["dropped"] == SENT - LIMIT).then_some(())
    })
    .await;
    relay.unblock();

    let node = eventually(WAIT, "the drop to be reported", || async {
        cp.nodes(&cp_id)
            .await
            .into_iter()
            .next()
            .filter(|n| n["telemetry_dropped"] == SENT - LIMIT)
    })
    .await;
    let by_node = eventually(WAIT, "the buffered records to arrive", || async {
        let counts = counts_by(&cp, "data_plane_node").await;
        (counts.values().sum::<i64>() >= LIMIT).then_some(counts)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let by_node_later = counts_by(&cp, "data_plane_node").await;
    assert_eq!(by_node, by_node_later);
    assert_eq!(by_node.values().sum::<i64>(), LIMIT, "{by_node:?} {node}");
}

/// A secret in the path, query, a header and the body reaches the upstream but never the
/// control plane's database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_requests_never_reach_the_control_plane_database() {
    const SECRET: &str = "s3cr3t-7f1d2c9e-do-not-store";
    let upstream = Upstream::start("secret").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    cp.create_service_and_route(&cp_id, "s", upstream.addr, "/s")
        .await;
    let relay = Relay::start(cp.cluster).await;
    let dp = dp_via(&relay, &creds, &[]).await;
    dp.wait_for_hash(&cp.expected_hash(&cp_id).await, WAIT)
        .await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let resp = client
            .post(format!("http://{}/s/{SECRET}?token={SECRET}", dp.proxy))
            .header("x-api-secret", SECRET)
            .body(SECRET)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
    }
    eventually(WAIT, "the requests to be counted", || async {
        (counts_by(&cp, "data_plane_node")
            .await
            .values()
            .sum::<i64>()
            == 5)
            .then_some(())
    })
    .await;
    if std::env::var("FLEETGATE_TEST_DATABASE_URL").is_err() {
        // SQLite: every file of the database, WAL included.
        for entry in std::fs::read_dir(cp.data_dir()).expect("list the data dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with("fleetgate.db") {
                let bytes = std::fs::read(&path).expect("read the database");
                let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
                assert!(!found, "the secret is stored in {}", path.display());
            }
        }
    }
    assert!(
        !cp.log().contains(SECRET),
        "the secret is in the control plane log"
    );
    assert!(
        !dp.log().contains(SECRET),
        "the secret is in the data plane log"
    );
}
