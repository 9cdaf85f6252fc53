//! Contract test: `POST /v2/analytics/metrics` takes Konnect explore's query (the request
//! bodies below are Konnect's examples written out by hand: `datasource`, `metrics`,
//! `dimensions`, `filters[{field, operator, value}]`, `granularity`, relative and absolute
//! `time_range`) and answers in its shape: `{data: [{version, timestamp, event}], meta:
//! {start, end, start_ms, end_ms, granularity_ms, query_id, metric_names, metric_units,
//! display}}`. Metrics and dimensions Fleetgate does not record are 400s naming them. SQLite,
//! or PostgreSQL with FLEETGATE_TEST_DATABASE_URL.

#[path = "support/dp_client.rs"]
mod dp_client;
#[path = "support/analytics_fixture.rs"]
mod fixture;
mod support;

use fixture::*;
use fleetgate_control_plane::store::now_unix;
use fleetgate_control_plane::telemetry::Granularity;
use fleetgate_protocol::RequestRecord;
use serde_json::{json, Value};
use uuid::Uuid;

/// Ten records in one minute of the last hour: six 200s of a service, three anonymous 404s
/// without one, one 503 of the service by a consumer.
async fn ingest_sample(f: &Fixture) -> (Uuid, Uuid, Uuid, i64) {
    let node = Uuid::new_v4();
    let service = Uuid::new_v4();
    let consumer = Uuid::new_v4();
    let minute = Granularity::Minute.floor(now_unix() - 600);
    let mut records = Vec::new();
    for i in 0..10i64 {
        let base = record(f.cp, node, (minute + i) * 1000);
        records.push(match i {
            0..=5 => RequestRecord {
                service_id: Some(service),
                latency_total_us: 2_000,
                ..base
            },
            6..=8 => RequestRecord {
                status: 404,
                ..base
            },
            _ => RequestRecord {
                service_id: Some(service),
                consumer_id: Some(consumer),
                status: 503,
                ..base
            },
        });
    }
    f.ingest(node, 1, &records).await;
    (node, service, consumer, minute)
}

#[tokio::test]
async fn a_relative_time_series_answers_in_explore_shape() {
    let f = Fixture::new().await;
    let (_, _, _, minute) = ingest_sample(&f).await;
    let reply = f
        .app
        .post(
            "/v2/analytics/metrics",
            &f.token,
            json!({
                "datasource": "api_usage",
                "metrics": ["request_count", "response_latency_p99", "response_latency_average"],
                "dimensions": ["time"],
                "granularity": "minutely",
                "time_range": { "type": "relative", "time_range": "1h", "tz": "Etc/UTC" },
            }),
        )
        .await
        .expect(200);
    let data = reply.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "one minute had requests: {data:?}");
    let record = &data[0];
    assert_eq!(record["version"], "v1");
    assert_eq!(unix(&record["timestamp"]), minute);
    assert_eq!(record["event"]["request_count"], 10);
    assert!(record["event"]["response_latency_p99"].is_f64());
    assert!(record["event"]["response_latency_average"].is_f64());
    assert!(record["event"].get("time").is_none());

    let meta = &reply.body["meta"];
    assert_eq!(meta["granularity_ms"], 60_000);
    let (start_ms, end_ms) = (
        meta["start_ms"].as_i64().expect("start_ms"),
        meta["end_ms"].as_i64().expect("end_ms"),
    );
    assert_eq!(start_ms % 60_000, 0, "start floored to the minute");
    assert!((3_600_000..3_660_000).contains(&(end_ms - start_ms)));
    assert_eq!(unix(&meta["start"]) * 1000, start_ms);
    assert_eq!(unix(&meta["end"]) * 1000, end_ms);
    assert!(Uuid::parse_str(meta["query_id"].as_str().expect("query_id")).is_ok());
    assert_eq!(
        meta["metric_names"],
        json!([
            "request_count",
            "response_latency_p99",
            "response_latency_average"
        ])
    );
    assert_eq!(
        meta["metric_units"],
        json!({
            "request_count": "count",
            "response_latency_p99": "ms",
            "response_latency_average": "ms",
        })
    );
    assert!(meta["display"].is_object());
    f.app.stop().await;
}

#[tokio::test]
async fn dimensions_filters_and_defaults() {
    let f = Fixture::new().await;
    let (node, service, consumer, minute) = ingest_sample(&f).await;
    let range = absolute(minute, minute + 60);

    // No metric, no dimension: request_count over the whole range, one record.
    let all = f.metrics(json!({ "time_range": range })).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["event"]["request_count"], 10);
    assert_eq!(unix(&all[0]["timestamp"]), minute);
    // And with no time_range either: the last hour.
    assert_eq!(total(&f.metrics(json!({})).await, "request_count"), 10);

    // By service and status class, 2XX and 5XX only.
    let reply = f
        .app
        .post(
            "/v2/analytics/metrics",
            &f.token,
            json!({
                "datasource": "api_usage",
                "metrics": ["request_count", "error_rate", "request_per_minute",
                            "request_size_sum", "response_size_average"],
                "dimensions": ["gateway_service", "status_code_grouped"],
                "filters": [
                    { "field": "status_code_grouped", "operator": "in", "value": ["2XX", "5XX"] },
                ],
                "time_range": range,
            }),
        )
        .await
        .expect(200);
    let data = reply.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{data:?}");
    let ok = data
        .iter()
        .find(|r| r["event"]["status_code_grouped"] == "2XX")
        .expect("2XX");
    assert_eq!(ok["event"]["gateway_service"], service.to_string());
    assert_eq!(ok["event"]["request_count"], 6);
    assert_eq!(ok["event"]["error_rate"], 0.0);
    assert_eq!(ok["event"]["request_per_minute"], 6.0);
    assert_eq!(ok["event"]["request_size_sum"], 600);
    assert_eq!(ok["event"]["response_size_average"], 1000.0);
    let failed = data
        .iter()
        .find(|r| r["event"]["status_code_grouped"] == "5XX")
        .expect("5XX");
    assert_eq!(failed["event"]["error_rate"], 100.0);
    let display = &reply.body["meta"]["display"];
    assert_eq!(
        display["gateway_service"][service.to_string()]["name"],
        service.to_string()
    );
    assert_eq!(reply.body["meta"]["metric_units"]["error_rate"], "percent");

    // empty / not_empty: anonymous requests, and the others.
    let anonymous = f
        .metrics(json!({
            "filters": [{ "field": "consumer", "operator": "empty" }],
            "time_range": range,
        }))
        .await;
    assert_eq!(total(&anonymous, "request_count"), 9);
    let by_consumer = f
        .metrics(json!({
            "dimensions": ["consumer", "data_plane_node"],
            "filters": [{ "field": "consumer", "operator": "not_empty" }],
            "time_range": range,
        }))
        .await;
    assert_eq!(by_consumer.len(), 1);
    assert_eq!(by_consumer[0]["event"]["consumer"], consumer.to_string());
    assert_eq!(by_consumer[0]["event"]["data_plane_node"], node.to_string());

    // status_code values are strings, as Konnect's; filters take numbers or strings.
    let not_found = f
        .metrics(json!({
            "dimensions": ["status_code"],
            "filters": [{ "field": "status_code", "operator": "in", "value": ["404"] }],
            "time_range": range,
        }))
        .await;
    assert_eq!(not_found.len(), 1);
    assert_eq!(not_found[0]["event"]["status_code"], "404");
    assert_eq!(not_found[0]["event"]["request_count"], 3);
    f.app.stop().await;
}

#[tokio::test]
async fn what_is_not_recorded_is_refused_by_name() {
    let f = Fixture::new().await;
    let refused = |body: Value, field: &'static str, says: &'static str| {
        let f = &f;
        async move {
            let reply = f
                .app
                .post("/v2/analytics/metrics", &f.token, body)
                .await
                .expect(400);
            assert_eq!(reply.invalid_fields(), vec![field]);
            let reason = reply.body["invalid_parameters"][0]["reason"]
                .as_str()
                .expect("reason")
                .to_string();
            assert!(reason.contains(says), "{reason}");
        }
    };
    refused(
        json!({ "metrics": ["request_count", "upstream_latency_p99"] }),
        "metrics[1]",
        "not recorded",
    )
    .await;
    refused(
        json!({ "metrics": ["kong_latency_average"] }),
        "metrics[0]",
        "response_latency_p99",
    )
    .await;
    refused(
        json!({ "dimensions": ["api_product"] }),
        "dimensions[0]",
        "gateway_service",
    )
    .await;
    refused(
        json!({ "filters": [{ "field": "application", "operator": "in", "value": ["x"] }] }),
        "filters[0].field",
        "not recorded",
    )
    .await;
    refused(
        json!({ "datasource": "llm_usage" }),
        "datasource",
        "api_usage",
    )
    .await;
    refused(
        json!({ "time_range": { "type": "relative", "time_range": "1h", "tz": "Europe/Paris" } }),
        "time_range.tz",
        "Etc/UTC",
    )
    .await;
    refused(
        json!({ "filters": [{ "field": "consumer", "operator": "empty", "value": ["x"] }] }),
        "filters[0].value",
        "absent",
    )
    .await;
    f.app.stop().await;
}
