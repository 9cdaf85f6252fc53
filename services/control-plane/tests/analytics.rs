//! Telemetry ingest and the analytics API end to end: batches over a real mTLS WebSocket
//! session (and through the ingest function), aggregates in SQLite (or PostgreSQL with
//! FLEETGATE_TEST_DATABASE_URL), rollups, retention, and `POST /v2/analytics/metrics`.

#[path = "support/dp_client.rs"]
mod dp_client;
mod support;

use std::collections::BTreeMap;

use fleetgate_control_plane::store::{now_unix, NodeHello, NodeRowCache, Role};
use fleetgate_control_plane::telemetry::ingest::{ingest_batch, IncomingBatch, IngestOutcome};
use fleetgate_control_plane::telemetry::{Granularity, Retention};
use fleetgate_protocol::{CpMessage, DpMessage, RequestRecord};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

#[path = "support/analytics_fixture.rs"]
mod fixture;
use fixture::*;

#[tokio::test]
async fn batches_over_the_session_are_acked_and_counted_once() {
    let f = Fixture::new().await;
    let node = Uuid::new_v4();
    let mut dp = f.connect(node).await;
    // The config names its control plane, which the node stamps on its records.
    loop {
        if let CpMessage::Reconfigure {
            control_plane_id, ..
        } = dp.recv().await
        {
            assert_eq!(control_plane_id, Some(f.cp));
            break;
        }
    }
    let now_ms = now_unix() * 1000;
    let service = Uuid::new_v4();
    let records: Vec<RequestRecord> = (0..120)
        .map(|i| RequestRecord {
            service_id: Some(service),
            status: if i % 4 == 0 { 500 } else { 200 },
            ..record(f.cp, node, now_ms - i)
        })
        .collect();

    dp.telemetry(1 << 20, records.clone(), 3).await;
    assert_eq!(dp.expect_ack(1 << 20).await, Vec::<String>::new());
    // Re-sent (as after a reconnect): acked again, counted once.
    dp.telemetry(1 << 20, records.clone(), 3).await;
    assert_eq!(dp.expect_ack(1 << 20).await, Vec::<String>::new());
    // Text frames are accepted too; records of a node that did not know its control plane
    // yet (nil id) count for the session's.
    let mut unknown_cp = records[..20].to_vec();
    for r in &mut unknown_cp[..5] {
        r.control_plane_id = Uuid::nil();
    }
    dp.send(&DpMessage::Telemetry {
        node_id: node,
        seq: (1 << 20) + 1,
        records: unknown_cp,
        dropped: 2,
    })
    .await;
    assert_eq!(dp.expect_ack((1 << 20) + 1).await, Vec::<String>::new());

    let range = absolute(now_unix() - 60, now_unix() + 60);
    let data = f
        .metrics(json!({
            "metrics": ["request_count", "error_rate"],
            "dimensions": ["gateway_service", "data_plane_node", "time"],
            "time_range": range,
            "granularity": "tenSecondly",
        }))
        .await;
    assert_eq!(total(&data, "request_count"), 140);
    for point in &data {
        assert_eq!(
            point["event"]["gateway_service"],
            json!(service.to_string())
        );
        assert_eq!(point["event"]["data_plane_node"], json!(node.to_string()));
    }
    let minute = f
        .metrics(json!({ "metrics": ["request_count", "error_rate"], "time_range": range }))
        .await;
    assert_eq!(total(&minute, "request_count"), 140);

    // Billing counts every record once.
    let day = fleetgate_control_plane::telemetry::ingest::day_name(now_ms / 86_400_000);
    let calls = f
        .app
        .store
        .api_calls(f.org, &day, &day)
        .await
        .expect("calls");
    assert_eq!(calls.iter().map(|c| c.2).sum::<i64>(), 140);

    // The node's dropped total counts each batch once; ping reports the buffer fill.
    dp.send(&DpMessage::Ping {
        config_hash: String::new(),
        telemetry_buffer_fill: Some(42),
    })
    .await;
    loop {
        if let CpMessage::Pong { .. } = dp.recv().await {
            break;
        }
    }
    // Heartbeats are written in batches a moment after they arrive.
    let row = support::eventually(
        std::time::Duration::from_secs(10),
        "the ping's buffer fill",
        || async {
            let row = f
                .app
                .get(
                    &format!("/v2/control-planes/{}/nodes/{node}", f.cp),
                    &f.token,
                )
                .await
                .expect(200);
            (row.body["item"]["telemetry_buffer_fill"] == json!(42)).then_some(row)
        },
    )
    .await;
    assert_eq!(row.body["item"]["telemetry_dropped"], json!(5));

    // Records of another control plane: acked with an error, nothing stored.
    let foreign = vec![record(Uuid::new_v4(), node, now_ms)];
    dp.telemetry((1 << 20) + 2, foreign, 0).await;
    let errors = dp.expect_ack((1 << 20) + 2).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("control plane"), "{errors:?}");
    let data = f
        .metrics(json!({
            "metrics": ["request_count"],
            "time_range": range,
            "dimensions": ["time"],
            "granularity": "tenSecondly",
        }))
        .await;
    assert_eq!(total(&data, "request_count"), 140);
    dp.close().await;
    f.app.stop().await;
}

#[tokio::test]
async fn metrics_by_dimension_match_exact_counts_and_percentiles() {
    let f = Fixture::new().await;
    let nodes = [Uuid::new_v4(), Uuid::new_v4()];
    let services: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let routes: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let consumer = Uuid::new_v4();
    let statuses = [200u16, 201, 404, 500];
    // All in one minute, so each group is one bucket.
    let minute = Granularity::Minute.floor(now_unix() - 300);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut per_node: BTreeMap<Uuid, Vec<RequestRecord>> = BTreeMap::new();
    for i in 0..6_000 {
        let node = nodes[i % 2];
        let s = rng.gen_range(0..3);
        let r = RequestRecord {
            service_id: Some(services[s]),
            route_id: Some(routes[s * 2 + rng.gen_range(0..2)]),
            consumer_id: rng.gen_bool(0.3).then_some(consumer),
            status: statuses[rng.gen_range(0..4)],
            latency_total_us: 10f64.powf(rng.gen_range(2.0..6.0)) as u32,
            bytes_in: rng.gen_range(0..500),
            bytes_out: rng.gen_range(0..5_000),
            ..record(f.cp, node, minute * 1000 + rng.gen_range(0..60_000))
        };
        per_node.entry(node).or_default().push(r);
    }
    for (node, records) in &per_node {
        // Two batches per node, so rows are merged across batches.
        let (a, b) = records.split_at(records.len() / 2);
        for (seq, part) in [(1, a), (2, b)] {
            let outcome = f.ingest(*node, seq, part).await;
            assert_eq!(
                outcome,
                IngestOutcome::Stored {
                    records: part.len()
                }
            );
        }
    }
    let all: Vec<&RequestRecord> = per_node.values().flatten().collect();
    let range = absolute(minute, minute + 60);

    for granularity in ["tenSecondly", "minutely", "hourly", "daily"] {
        let data = f
            .metrics(json!({
                "metrics": ["request_count", "error_rate", "response_latency_p50", "response_latency_p95",
                            "response_latency_p99", "request_size_sum", "response_size_sum"],
                "dimensions": ["gateway_service", "status_code", "time"],
                "time_range": range,
                "granularity": granularity,
            }))
            .await;
        let mut seen = 0;
        for s in &services {
            for status in statuses {
                let group: Vec<&&RequestRecord> = all
                    .iter()
                    .filter(|r| r.service_id == Some(*s) && r.status == status)
                    .collect();
                let points: Vec<&Value> = data
                    .iter()
                    .filter(|p| {
                        p["event"]["gateway_service"] == json!(s.to_string())
                            && p["event"]["status_code"] == json!(status.to_string())
                    })
                    .collect();
                let count: i64 = points
                    .iter()
                    .map(|p| p["event"]["request_count"].as_i64().expect("count"))
                    .sum();
                assert_eq!(count, group.len() as i64, "{granularity} {s} {status}");
                let bytes_in: i64 = points
                    .iter()
                    .map(|p| p["event"]["request_size_sum"].as_i64().expect("bytes"))
                    .sum();
                assert_eq!(
                    bytes_in,
                    group.iter().map(|r| r.bytes_in as i64).sum::<i64>()
                );
                seen += points.len();
                if granularity != "tenSecondly" {
                    assert_eq!(points.len(), 1);
                    let m = &points[0]["event"];
                    let expected_rate = if status >= 400 { 100.0 } else { 0.0 };
                    assert_eq!(m["error_rate"].as_f64(), Some(expected_rate));
                    let mut latencies: Vec<u32> =
                        group.iter().map(|r| r.latency_total_us).collect();
                    for (q, name) in [
                        (0.5, "response_latency_p50"),
                        (0.95, "response_latency_p95"),
                        (0.99, "response_latency_p99"),
                    ] {
                        let exact = exact_quantile(&mut latencies, q);
                        assert_within_1pct(&m[name], exact, &format!("{granularity} {name}"));
                    }
                }
            }
        }
        assert_eq!(seen, data.len(), "no other groups");
    }

    // Route, consumer (null = anonymous) and node dimensions; filters.
    let data = f
        .metrics(json!({
            "metrics": ["request_count"],
            "dimensions": ["consumer"],
            "time_range": range,
        }))
        .await;
    let anonymous = all.iter().filter(|r| r.consumer_id.is_none()).count() as i64;
    let by_consumer: BTreeMap<String, i64> = data
        .iter()
        .map(|p| {
            (
                p["event"]["consumer"].to_string(),
                p["event"]["request_count"].as_i64().expect("count"),
            )
        })
        .collect();
    assert_eq!(by_consumer["null"], anonymous);
    assert_eq!(
        by_consumer[&json!(consumer.to_string()).to_string()],
        all.len() as i64 - anonymous
    );

    let data = f
        .metrics(json!({
            "metrics": ["request_count", "response_latency_p99"],
            "dimensions": ["route", "data_plane_node"],
            "filters": [
                { "field": "gateway_service", "operator": "in", "value": [services[0].to_string()] },
                { "field": "status_code", "operator": "not_in", "value": [500] },
                { "field": "data_plane_node", "operator": "in", "value": [nodes[1].to_string()] },
            ],
            "time_range": range,
        }))
        .await;
    for route in &routes[..2] {
        let expected = all
            .iter()
            .filter(|r| r.route_id == Some(*route) && r.status != 500 && r.node_id == nodes[1])
            .count() as i64;
        let point = data
            .iter()
            .find(|p| p["event"]["route"] == json!(route.to_string()))
            .expect("route point");
        assert_eq!(
            point["event"]["data_plane_node"],
            json!(nodes[1].to_string())
        );
        assert_eq!(point["event"]["request_count"].as_i64(), Some(expected));
    }
    assert_eq!(data.len(), 2);
    f.app.stop().await;
}

#[tokio::test]
async fn organisations_see_only_their_own_control_planes() {
    let f = Fixture::new().await;
    let node = Uuid::new_v4();
    let now = now_unix();
    f.ingest(node, 1, &[record(f.cp, node, now * 1000)]).await;
    let other = f.app.token("globex", Role::Admin).await;
    let range = absolute(now - 60, now + 60);
    let mine = f
        .metrics(json!({ "metrics": ["request_count"], "dimensions": ["control_plane"], "time_range": range }))
        .await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["event"]["control_plane"], json!(f.cp.to_string()));
    let theirs = metrics_as(
        &f.app,
        &other,
        json!({
            "metrics": ["request_count"],
            "filters": [{ "field": "control_plane", "operator": "in", "value": [f.cp.to_string()] }],
            "time_range": range,
        }),
    )
    .await;
    assert!(theirs.is_empty(), "{theirs:?}");
    f.app
        .post("/v2/analytics/metrics", "not-a-token", json!({}))
        .await
        .expect(401);
    f.app.stop().await;
}

#[tokio::test]
async fn bad_queries_are_answered_400_naming_the_field() {
    let f = Fixture::new().await;
    let range = absolute(1_700_000_000, 1_700_000_600);
    let cases = [
        (
            json!({ "metrics": "request_count", "time_range": range }),
            vec!["metrics"],
        ),
        (
            json!({ "metrics": ["latency_p42"], "time_range": range }),
            vec!["metrics[0]"],
        ),
        (
            json!({ "metrics": ["request_count", 7], "dimensions": ["color"], "time_range": range }),
            vec!["metrics[1]", "dimensions[0]"],
        ),
        (
            json!({ "time_range": { "type": "absolute", "start": "2024-01-02T00:00:00Z",
                                     "end": "2024-01-01T00:00:00Z" } }),
            vec!["time_range.end"],
        ),
        (
            json!({ "time_range": { "type": "absolute", "start": "yesterday",
                                     "end": "2024-01-01T00:00:00Z" } }),
            vec!["time_range.start"],
        ),
        (
            json!({ "time_range": { "type": "relative", "time_range": "2h" } }),
            vec!["time_range.time_range"],
        ),
        (
            json!({ "time_range": { "type": "sometime" } }),
            vec!["time_range.type"],
        ),
        (
            json!({ "time_range": range, "granularity": "week" }),
            vec!["granularity"],
        ),
        (
            json!({ "granularity": "tenSecondly", "dimensions": ["time"],
                    "time_range": { "type": "relative", "time_range": "30d" } }),
            vec!["granularity"],
        ),
        (
            json!({ "time_range": range,
                    "filters": [{ "field": "colour", "operator": "in", "value": ["x"] }] }),
            vec!["filters[0].field"],
        ),
        (
            json!({ "time_range": range,
                    "filters": [{ "field": "gateway_service", "operator": "like", "value": ["x"] }] }),
            vec!["filters[0].operator"],
        ),
        (
            json!({ "time_range": range,
                    "filters": [{ "field": "status_code", "operator": "in", "value": [200, 999] }] }),
            vec!["filters[0].value[1]"],
        ),
        (
            json!({ "time_range": range,
                    "filters": [{ "field": "route", "operator": "in", "value": [] }] }),
            vec!["filters[0].value"],
        ),
        (
            json!({ "time_range": range, "group_by": ["x"] }),
            vec!["group_by"],
        ),
    ];
    for (body, fields) in cases {
        let reply = f
            .app
            .post("/v2/analytics/metrics", &f.token, body.clone())
            .await
            .expect(400);
        let named = reply.invalid_fields();
        for field in &fields {
            assert!(
                named.contains(&field.to_string()),
                "{body}: expected {field} in {named:?}"
            );
        }
    }
    f.app.stop().await;
}

#[tokio::test]
async fn session_caches_stay_exact_when_two_writers_share_a_node() {
    let f = Fixture::new().await;
    let node = Uuid::new_v4();
    // A node row, as after hello: it carries the write counter the caches check.
    f.app
        .store
        .upsert_node(NodeHello {
            id: node,
            control_plane_id: f.cp,
            hostname: "dp",
            version: VERSION,
            config_hash: "",
            cert_expiry: None,
            data_plane_cert_id: Uuid::new_v4(),
            incompatible: None,
            connected: true,
        })
        .await
        .expect("node row");
    let now = now_unix();
    let horizon = Retention::default().horizon(Granularity::TenSeconds, now);
    let second = Granularity::TenSeconds.floor(now - 120);
    let (mut a, mut b) = (NodeRowCache::default(), NodeRowCache::default());
    let mut expected: Vec<u32> = Vec::new();
    // Batches alternate between two caches (an old and a new session of the node, or two
    // replicas) in runs, so each cache is sometimes current and sometimes stale.
    for (seq, use_a) in [
        (1, true),
        (2, true),
        (3, false),
        (4, true),
        (5, true),
        (6, false),
        (7, false),
    ] {
        let records: Vec<RequestRecord> = (0..100u32)
            .map(|i| RequestRecord {
                latency_total_us: seq as u32 * 1_000 + i,
                ..record(f.cp, node, second * 1000 + i64::from(i) * 50)
            })
            .collect();
        expected.extend(records.iter().map(|r| r.latency_total_us));
        let cache = if use_a { &mut a } else { &mut b };
        let batch = IncomingBatch {
            node_id: node,
            seq,
            records: &records,
            dropped: 1,
        };
        let outcome = ingest_batch(&f.app.store, cache, &f.origin(node), batch, now, horizon)
            .await
            .expect("ingest");
        assert!(matches!(outcome, IngestOutcome::Stored { .. }));
    }
    let data = f
        .metrics(json!({
            "metrics": ["request_count", "response_latency_p50", "response_latency_p99"],
            "time_range": absolute(second, second + 10),
            "dimensions": ["time"],
            "granularity": "tenSecondly",
        }))
        .await;
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["event"]["request_count"].as_i64(), Some(700));
    assert_within_1pct(
        &data[0]["event"]["response_latency_p50"],
        exact_quantile(&mut expected, 0.5),
        "p50",
    );
    assert_within_1pct(
        &data[0]["event"]["response_latency_p99"],
        exact_quantile(&mut expected, 0.99),
        "p99",
    );
    let row = f
        .app
        .get(
            &format!("/v2/control-planes/{}/nodes/{node}", f.cp),
            &f.token,
        )
        .await
        .expect(200);
    assert_eq!(row.body["item"]["telemetry_dropped"], json!(7));
    f.app.stop().await;
}
