//! The analytics tests' shared fixture: a control plane, an organisation token, a registered
//! data-plane certificate, and helpers to ingest records and query metrics. Included by
//! `analytics.rs` and `analytics_rollups.rs`.
#![allow(dead_code)] // each test binary uses a different part

use dp_client::{DpCert, DpConn};
use fleetgate_control_plane::store::{now_unix, NodeRowCache, Role};
use fleetgate_control_plane::telemetry::ingest::{
    ingest_batch, BatchOrigin, IncomingBatch, IngestOutcome,
};
use fleetgate_control_plane::telemetry::{Granularity, Retention};
use fleetgate_protocol::RequestRecord;
use serde_json::{json, Value};
use support::TestApp;
use uuid::Uuid;

use super::{dp_client, support};

pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) struct Fixture {
    pub(crate) app: TestApp,
    pub(crate) token: String,
    pub(crate) org: Uuid,
    pub(crate) cp: Uuid,
    pub(crate) cert: DpCert,
}

impl Fixture {
    pub(crate) async fn new() -> Self {
        let app = TestApp::start().await;
        let token = app.token("acme", Role::Admin).await;
        let org = app.store.ensure_organization("acme").await.expect("org").id;
        let (cp, _) = app.control_plane(&token, "analytics").await;
        let cert = DpCert::generate();
        app.post(
            &format!("/v2/control-planes/{cp}/dp-client-certificates"),
            &token,
            json!({ "cert": cert.cert_pem }),
        )
        .await
        .expect(201);
        Self {
            app,
            token,
            org,
            cp: cp.parse().expect("uuid"),
            cert,
        }
    }

    pub(crate) async fn connect(&self, node: Uuid) -> DpConn {
        let mut dp = DpConn::dial(
            self.app.cluster_addr,
            &self.app.cluster_ca_pem,
            &self.cert,
            node,
            VERSION,
        )
        .await
        .expect("dial");
        dp.hello(VERSION, "").await;
        dp
    }

    pub(crate) fn origin(&self, node: Uuid) -> BatchOrigin {
        BatchOrigin {
            organization_id: self.org,
            control_plane_id: self.cp,
            node_id: node,
        }
    }

    /// Ingests records directly (same function the session calls).
    pub(crate) async fn ingest(
        &self,
        node: Uuid,
        seq: u64,
        records: &[RequestRecord],
    ) -> IngestOutcome {
        let now = now_unix();
        let horizon = Retention::default().horizon(Granularity::TenSeconds, now);
        let batch = IncomingBatch {
            node_id: node,
            seq,
            records,
            dropped: 0,
        };
        // A fresh cache per call: the store is read back every time, as after a reconnect.
        let mut cache = NodeRowCache::default();
        ingest_batch(
            &self.app.store,
            &mut cache,
            &self.origin(node),
            batch,
            now,
            horizon,
        )
        .await
        .expect("ingest")
    }

    pub(crate) async fn metrics(&self, body: Value) -> Vec<Value> {
        metrics_as(&self.app, &self.token, body).await
    }
}

pub(crate) async fn metrics_as(app: &TestApp, token: &str, body: Value) -> Vec<Value> {
    app.post("/v2/analytics/metrics", token, body)
        .await
        .expect(200)
        .body["data"]
        .as_array()
        .expect("data")
        .clone()
}

/// Konnect's absolute `time_range` for `[start, end)` in Unix seconds.
pub(crate) fn absolute(start: i64, end: i64) -> Value {
    json!({
        "type": "absolute",
        "start": fleetgate_control_plane::api::timestamps::rfc3339(start),
        "end": fleetgate_control_plane::api::timestamps::rfc3339(end),
    })
}

/// Unix seconds of an RFC 3339 `timestamp`.
pub(crate) fn unix(value: &Value) -> i64 {
    fleetgate_control_plane::api::timestamps::parse_rfc3339_ms(
        value.as_str().expect("an RFC 3339 timestamp"),
    )
    .expect("an RFC 3339 timestamp")
        / 1000
}

pub(crate) fn record(cp: Uuid, node: Uuid, time_ms: i64) -> RequestRecord {
    RequestRecord {
        time_ms,
        control_plane_id: cp,
        service_id: None,
        route_id: None,
        consumer_id: None,
        node_id: node,
        status: 200,
        latency_total_us: 1_000,
        latency_upstream_us: 800,
        latency_gateway_us: 200,
        bytes_in: 100,
        bytes_out: 1_000,
    }
}

pub(crate) fn exact_quantile(values: &mut [u32], q: f64) -> f64 {
    values.sort_unstable();
    let rank = (q * (values.len() - 1) as f64).floor() as usize;
    f64::from(values[rank]) / 1000.0
}

pub(crate) fn assert_within_1pct(actual: &Value, expected_ms: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number"));
    let err = (actual - expected_ms).abs() / expected_ms;
    assert!(
        err <= 0.01 + 1e-9,
        "{what}: {actual} ms vs exact {expected_ms} ms"
    );
}

pub(crate) fn total(data: &[Value], metric: &str) -> i64 {
    data.iter()
        .map(|p| p["event"][metric].as_i64().expect("integer metric"))
        .sum()
}
