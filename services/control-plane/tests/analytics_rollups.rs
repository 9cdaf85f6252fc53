//! Analytics rollups and retention: minute/hour/day buckets equal the sum of their sources,
//! re-running changes nothing, and each granularity is pruned on its own schedule.

#[path = "support/dp_client.rs"]
mod dp_client;
#[path = "support/analytics_fixture.rs"]
mod fixture;
mod support;

use fixture::*;
use fleetgate_control_plane::store::now_unix;
use fleetgate_control_plane::telemetry::ingest::IngestOutcome;
use fleetgate_control_plane::telemetry::{rollup, Granularity, Retention};
use fleetgate_protocol::RequestRecord;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn rollups_equal_the_sum_of_their_sources_and_are_idempotent() {
    let f = Fixture::new().await;
    let node = Uuid::new_v4();
    let base = Granularity::Minute.floor(now_unix() - 1_800);
    // Records in 10 s buckets spread over three minutes, with distinct latencies per minute.
    let mut records = Vec::new();
    for i in 0..900i64 {
        let secs = base + (i * 7) % 180;
        records.push(RequestRecord {
            latency_total_us: (1 + (secs - base) as u32 / 60) * 10_000 + i as u32,
            status: if i % 10 == 0 { 503 } else { 200 },
            ..record(f.cp, node, secs * 1000 + i % 1000)
        });
    }
    assert!(matches!(
        f.ingest(node, 1, &records).await,
        IngestOutcome::Stored { .. }
    ));
    let range = absolute(base, base + 180);
    let query = |granularity: &str| {
        json!({
            "metrics": ["request_count", "error_rate", "response_latency_p99", "response_size_sum"],
            "dimensions": ["time"],
            "time_range": range,
            "granularity": granularity,
        })
    };
    let ten = f.metrics(query("tenSecondly")).await;
    let minutes = f.metrics(query("minutely")).await;
    assert_eq!(minutes.len(), 3);
    for m in &minutes {
        let start = unix(&m["timestamp"]);
        let sources: Vec<Value> = ten
            .iter()
            .filter(|p| {
                let t = unix(&p["timestamp"]);
                t >= start && t < start + 60
            })
            .cloned()
            .collect();
        assert_eq!(sources.len(), 6, "six 10 s buckets per minute");
        assert_eq!(
            m["event"]["request_count"].as_i64(),
            Some(total(&sources, "request_count"))
        );
        assert_eq!(
            m["event"]["response_size_sum"].as_i64(),
            Some(total(&sources, "response_size_sum"))
        );
        let mut latencies: Vec<u32> = records
            .iter()
            .filter(|r| r.time_ms / 1000 >= start && r.time_ms / 1000 < start + 60)
            .map(|r| r.latency_total_us)
            .collect();
        assert_within_1pct(
            &m["event"]["response_latency_p99"],
            exact_quantile(&mut latencies, 0.99),
            "minute p99",
        );
    }

    // Re-running the rollup changes nothing.
    let retention = Retention::default();
    rollup::run_once(&f.app.store, &retention, now_unix())
        .await
        .expect("rollup");
    rollup::run_once(&f.app.store, &retention, now_unix())
        .await
        .expect("rollup");
    assert_eq!(f.metrics(query("minutely")).await, minutes);
    let hours = f.metrics(query("hourly")).await;
    let days = f.metrics(query("daily")).await;
    assert_eq!(total(&hours, "request_count"), 900);
    assert_eq!(total(&days, "request_count"), 900);

    // A late batch into an already rolled-up minute is visible at every granularity.
    let late: Vec<RequestRecord> = (0..50)
        .map(|i| record(f.cp, node, base * 1000 + i))
        .collect();
    assert!(matches!(
        f.ingest(node, 2, &late).await,
        IngestOutcome::Stored { .. }
    ));
    let minutes = f.metrics(query("minutely")).await;
    assert_eq!(
        minutes[0]["event"]["request_count"].as_i64(),
        Some(300 + 50)
    );
    assert_eq!(
        total(&f.metrics(query("hourly")).await, "request_count"),
        950
    );
    assert_eq!(
        total(&f.metrics(query("daily")).await, "request_count"),
        950
    );
    rollup::run_once(&f.app.store, &retention, now_unix())
        .await
        .expect("rollup");
    assert_eq!(
        total(&f.metrics(query("daily")).await, "request_count"),
        950
    );
    assert_eq!(f.metrics(query("minutely")).await, minutes);
    f.app.stop().await;
}

#[tokio::test]
async fn retention_prunes_each_granularity_on_its_own_schedule() {
    let f = Fixture::new().await;
    let node = Uuid::new_v4();
    let now = now_unix();
    let records: Vec<RequestRecord> = (0..10)
        .map(|i| record(f.cp, node, now * 1000 - i))
        .collect();
    f.ingest(node, 1, &records).await;
    let range = absolute(Granularity::Day.floor(now), now + 60);
    let count = |granularity: &'static str| {
        let f = &f;
        let range = range.clone();
        async move {
            total(
                &f.metrics(json!({
                    "metrics": ["request_count"],
                    "dimensions": ["time"],
                    "time_range": range,
                    "granularity": granularity,
                }))
                .await,
                "request_count",
            )
        }
    };
    let retention = Retention::default(); // 10 s: 1 day, minute: 7 days, hour: 90 days
    rollup::run_once(&f.app.store, &retention, now)
        .await
        .expect("rollup");
    // Within the 10 s retention the batch id is remembered: a re-send is a duplicate.
    assert_eq!(f.ingest(node, 1, &records).await, IngestOutcome::Duplicate);
    for g in ["tenSecondly", "minutely", "hourly", "daily"] {
        assert_eq!(count(g).await, 10, "{g} before pruning");
    }
    let report = rollup::run_once(&f.app.store, &retention, now + 3 * 86_400)
        .await
        .expect("prune 10 s");
    assert!(report.pruned > 0);
    assert_eq!(count("tenSecondly").await, 0);
    assert_eq!(count("minutely").await, 10);
    rollup::run_once(&f.app.store, &retention, now + 9 * 86_400)
        .await
        .expect("prune minutes");
    assert_eq!(count("minutely").await, 0);
    assert_eq!(count("hourly").await, 10);
    assert_eq!(count("daily").await, 10);
    f.app.stop().await;
}

#[tokio::test]
async fn a_coarser_retention_shorter_than_a_finer_one_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        fleetgate_control_plane::Store::connect(&support::fresh_database_url(dir.path()).await)
            .await
            .expect("store");
    let settings = fleetgate_control_plane::ApiSettings {
        analytics: fleetgate_control_plane::telemetry::AnalyticsSettings {
            retention: Retention {
                minute: std::time::Duration::from_secs(3_600),
                ..Retention::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let err = fleetgate_control_plane::server::start_with(
        store.clone(),
        "127.0.0.1:0".parse().expect("address"),
        settings,
        fleetgate_control_plane::cluster::listener::ClusterSettings {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..Default::default()
        },
    )
    .await
    .expect_err("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("--analytics-retention-minute"),
        "{message}"
    );
    store.close().await;
}
