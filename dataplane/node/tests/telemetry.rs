//! Telemetry end to end: a real data plane proxying real requests, its cluster client talking
//! mutual TLS + WebSocket to the in-test control plane, which decodes every binary telemetry
//! frame and acks it (or withholds the ack).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use fleetgate_protocol::{CpMessage, DpMessage, RequestRecord};
use serde_json::Value;
use support::cluster::{CpSession, Pki, TestCp};
use support::{client, echo_upstream, eventually, Dp};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(10);

const SERVICE: &str = "5e7c1a00-0000-4000-8000-000000000001";
const OPEN_ROUTE: &str = "5e7c1a00-0000-4000-8000-000000000002";
const SECURED_ROUTE: &str = "5e7c1a00-0000-4000-8000-000000000003";
const CONSUMER: &str = "5e7c1a00-0000-4000-8000-000000000004";

fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("uuid")
}

fn yaml(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: api
    id: {SERVICE}
    url: http://{upstream}
    routes:
      - name: open
        id: {OPEN_ROUTE}
        paths: [/open]
      - name: secured
        id: {SECURED_ROUTE}
        paths: [/secured]
        plugins:
          - name: key-auth
consumers:
  - username: alice
    id: {CONSUMER}
    keyauth_credentials: [{{key: alice-key}}]
"#
    )
}

/// A clustered data plane dialling `cp`, flushing every 100 ms, with extra settings.
async fn start_dp(pki: &Pki, cp: &TestCp, yaml: &str, more: &[(&str, &str)]) -> Dp {
    let dir = tempfile::tempdir().expect("dir");
    let files = pki.write_client_files(dir.path());
    let cp_addr = cp.addr.to_string();
    let mut extra: Vec<(&str, &str)> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    extra.extend([
        ("cluster_control_plane", cp_addr.as_str()),
        ("cluster_ping_interval", "1s"),
        ("cluster_reconnect_delay", "100ms..200ms"),
        ("analytics_flush_interval", "100ms"),
    ]);
    // `more` overrides the defaults above.
    extra.retain(|(k, _)| !more.iter().any(|(m, _)| m == k));
    extra.extend_from_slice(more);
    Dp::start_in(dir, Some(yaml), &extra).await
}

/// Telemetry batches from `session` until `count` records arrived (in arrival order).
async fn records(session: &mut CpSession, count: usize) -> Vec<RequestRecord> {
    let mut all = Vec::new();
    while all.len() < count {
        let batch = session
            .expect(WAIT, "a telemetry batch", |m| match m {
                DpMessage::Telemetry { records, .. } => Some(records),
                _ => None,
            })
            .await;
        all.extend(batch);
    }
    assert_eq!(all.len(), count, "more records than requests: {all:?}");
    all
}

async fn batch(session: &mut CpSession) -> (u64, Vec<RequestRecord>, u64) {
    session
        .expect(WAIT, "a telemetry batch", |m| match m {
            DpMessage::Telemetry {
                seq,
                records,
                dropped,
                ..
            } => Some((seq, records, dropped)),
            _ => None,
        })
        .await
}

async fn status(dp: &Dp) -> Value {
    client()
        .get(dp.status_url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_hold_ids_and_numbers_for_proxied_404_and_401_answers() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let up = echo_upstream().await;
    let dp = start_dp(&pki, &cp, "_format_version: \"3.0\"\n", &[]).await;
    let mut session = cp.next_session(WAIT).await;
    // The config comes from the control plane, which names itself.
    let control_plane = Uuid::new_v4();
    let config = fleetgate_config::declarative::import(&yaml(up)).expect("config");
    session.send(&CpMessage::Reconfigure {
        version: 1,
        config_hash: config.hash().to_string(),
        config: serde_json::to_value(&config).expect("json"),
        control_plane_id: Some(control_plane),
    });
    session
        .expect(WAIT, "applied", |m| {
            matches!(m, DpMessage::Applied { .. }).then_some(())
        })
        .await;

    let base = &dp.base;
    let proxied = client()
        .post(format!("{base}/open/x"))
        .body("hello world")
        .send()
        .await
        .expect("send");
    assert_eq!(proxied.status(), 200);
    let proxied_len = proxied.bytes().await.expect("body").len() as u64;
    let missing = client()
        .get(format!("{base}/nothing"))
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
    let missing_len = missing.bytes().await.expect("body").len() as u64;
    let denied = client()
        .get(format!("{base}/secured"))
        .send()
        .await
        .expect("send");
    assert_eq!(denied.status(), 401);
    let denied_len = denied.bytes().await.expect("body").len() as u64;
    let allowed = client()
        .get(format!("{base}/secured"))
        .header("apikey", "alice-key")
        .send()
        .await
        .expect("send");
    assert_eq!(allowed.status(), 200);
    let allowed_len = allowed.bytes().await.expect("body").len() as u64;

    let got = records(&mut session, 4).await;
    let node = dp.dp.gateway.telemetry.status();
    assert_eq!(node.dropped, 0);
    let node_id: Uuid = status(&dp).await["node_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("node id");
    let expect = [
        (200, Some(SERVICE), Some(OPEN_ROUTE), None, 11, proxied_len),
        (404, None, None, None, 0, missing_len),
        (401, Some(SERVICE), Some(SECURED_ROUTE), None, 0, denied_len),
        (
            200,
            Some(SERVICE),
            Some(SECURED_ROUTE),
            Some(CONSUMER),
            0,
            allowed_len,
        ),
    ];
    let now = fleetgate_dataplane::telemetry::now_unix_ms();
    // Proxy workers are separate threads, so match records by what tells them apart rather
    // than by arrival order.
    let find = |status: u16, route: Option<&str>, consumer: Option<&str>| {
        got.iter()
            .find(|r| {
                r.status == status
                    && r.route_id == route.map(id)
                    && r.consumer_id == consumer.map(id)
            })
            .unwrap_or_else(|| panic!("no record for {status} {route:?} in {got:?}"))
    };
    for (status, service, route, consumer, bytes_in, bytes_out) in expect {
        let record = find(status, route, consumer);
        let what = format!("{record:?}");
        assert_eq!(record.status, status, "{what}");
        assert_eq!(record.service_id, service.map(id), "{what}");
        assert_eq!(record.route_id, route.map(id), "{what}");
        assert_eq!(record.consumer_id, consumer.map(id), "{what}");
        assert_eq!(
            (record.bytes_in, record.bytes_out),
            (bytes_in, bytes_out),
            "{what}"
        );
        assert_eq!(record.control_plane_id, control_plane, "{what}");
        assert_eq!(record.node_id, node_id, "{what}");
        assert!(
            now - record.time_ms < 60_000 && record.time_ms <= now,
            "{what}"
        );
        assert!(record.latency_total_us > 0, "{what}");
        assert_eq!(
            record.latency_gateway_us,
            record.latency_total_us - record.latency_upstream_us,
            "{what}"
        );
    }
    // Only the proxied requests waited on the upstream.
    assert!(find(200, Some(OPEN_ROUTE), None).latency_upstream_us > 0);
    assert!(find(200, Some(SECURED_ROUTE), Some(CONSUMER)).latency_upstream_us > 0);
    assert_eq!(find(404, None, None).latency_upstream_us, 0);
    assert_eq!(find(401, Some(SECURED_ROUTE), None).latency_upstream_us, 0);

    // On the wire, every record has exactly the allow-listed fields.
    let allowed_fields: BTreeSet<&str> = [
        "time_ms",
        "control_plane_id",
        "service_id",
        "route_id",
        "consumer_id",
        "node_id",
        "status",
        "latency_total_us",
        "latency_upstream_us",
        "latency_gateway_us",
        "bytes_in",
        "bytes_out",
    ]
    .into();
    let frames = cp.telemetry_json.lock().expect("lock").clone();
    assert!(!frames.is_empty());
    for frame in frames {
        let batch: Value = serde_json::from_str(&frame).expect("json");
        let keys: BTreeSet<&str> = batch
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["type", "node_id", "seq", "records", "dropped"].into()
        );
        for record in batch["records"].as_array().expect("records") {
            let keys: BTreeSet<&str> = record
                .as_object()
                .expect("record")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, allowed_fields);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_path_query_headers_and_body_never_reach_telemetry() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let up = echo_upstream().await;
    let dp = start_dp(&pki, &cp, &yaml(up), &[]).await;
    let mut session = cp.next_session(WAIT).await;
    let secret = "s3cr3t-7f2a9c";
    for (path, key) in [
        ("open", "none"),
        ("secured", "alice-key"),
        ("secured", secret),
    ] {
        let resp = client()
            .post(format!("{}/{path}/{secret}?token={secret}", dp.base))
            .header("apikey", key)
            .header("x-secret", secret)
            .header("cookie", format!("session={secret}"))
            .body(format!("password={secret}"))
            .send()
            .await
            .expect("send");
        resp.bytes().await.expect("body");
    }
    records(&mut session, 3).await;
    let frames = cp.telemetry_json.lock().expect("lock").clone();
    assert!(!frames.is_empty());
    for frame in frames {
        assert!(!frame.contains(secret), "secret leaked into {frame}");
        assert!(!frame.contains("127.0.0.1"), "client address in {frame}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_keeps_the_newest_records_and_reports_the_drops() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    // Disconnected: every upgrade is refused until the requests are done.
    *cp.refuse_upgrade.lock().expect("lock") = Some((503, "down for the test".into()));
    let up = echo_upstream().await;
    let dp = start_dp(
        &pki,
        &cp,
        &yaml(up),
        // One worker: "oldest" is then exact even for requests in the same millisecond.
        &[("analytics_buffer_size_limit", "5"), ("proxy_workers", "1")],
    )
    .await;
    for code in 201..=208 {
        let resp = client()
            .get(format!("{}/open/status/{code}", dp.base))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), code);
        resp.bytes().await.expect("body");
    }
    // The flusher applies the limit while no session drains the buffer.
    eventually(WAIT, "5 records held, 3 dropped", || async {
        let t = status(&dp).await["telemetry"].clone();
        (t["buffer_fill"] == 5 && t["dropped"] == 3).then_some(())
    })
    .await;
    assert_eq!(status(&dp).await["telemetry"]["buffer_limit"], 5);

    *cp.refuse_upgrade.lock().expect("lock") = None;
    let mut session = cp.next_session(WAIT).await;
    let (_, got, dropped) = batch(&mut session).await;
    // Records of different proxy workers are ordered by start millisecond only, so compare
    // the set: the newest five survived.
    let mut statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 205, 206, 207, 208]);
    assert_eq!(dropped, 3);
    eventually(WAIT, "the acked batch freed the buffer", || async {
        let t = status(&dp).await["telemetry"].clone();
        (t["buffer_fill"] == 0 && t["unacked_batches"] == 0 && t["dropped"] == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_batches_are_resent_after_reconnect_and_acked_ones_are_not() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    cp.withhold_acks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let up = echo_upstream().await;
    let dp = start_dp(&pki, &cp, &yaml(up), &[]).await;
    let mut first = cp.next_session(WAIT).await;
    let get = |path: &'static str| {
        let url = format!("{}{path}", dp.base);
        async move {
            client()
                .get(url)
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body");
        }
    };
    get("/open/a").await;
    get("/nothing").await;
    let (seq, sent, dropped) = batch(&mut first).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(status(&dp).await["telemetry"]["unacked_batches"], 1);

    // The link drops before any ack; the next session gets the same batch first.
    cp.withhold_acks
        .store(false, std::sync::atomic::Ordering::SeqCst);
    drop(first);
    let mut second = cp.next_session(WAIT).await;
    let again = batch(&mut second).await;
    assert_eq!(again, (seq, sent, dropped));
    let frames = cp.telemetry_json.lock().expect("lock").clone();
    assert_eq!(frames.len(), 2);
    assert_eq!(
        frames[0], frames[1],
        "a re-sent batch is byte-for-byte the same"
    );
    eventually(WAIT, "the re-sent batch acked", || async {
        (status(&dp).await["telemetry"]["unacked_batches"] == 0).then_some(())
    })
    .await;

    get("/open/b").await;
    let (next_seq, next, _) = batch(&mut second).await;
    assert!(next_seq > seq);
    assert_eq!(next.len(), 1);
    eventually(WAIT, "the new batch acked", || async {
        (status(&dp).await["telemetry"]["unacked_batches"] == 0).then_some(())
    })
    .await;

    // Acked batches are gone: after another reconnect only new records travel.
    drop(second);
    let mut third = cp.next_session(WAIT).await;
    third
        .expect(WAIT, "hello", |m| {
            matches!(m, DpMessage::Hello { .. }).then_some(())
        })
        .await;
    get("/open/c").await;
    let (third_seq, third_records, _) = batch(&mut third).await;
    assert!(third_seq > next_seq);
    assert_eq!(third_records.len(), 1);
    assert_eq!(third_records[0].route_id, Some(id(OPEN_ROUTE)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_zero_turns_telemetry_off() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let up = echo_upstream().await;
    let dp = start_dp(
        &pki,
        &cp,
        &yaml(up),
        &[
            ("analytics_buffer_size_limit", "0"),
            ("cluster_ping_interval", "200ms"),
        ],
    )
    .await;
    let mut session = cp.next_session(WAIT).await;
    for _ in 0..5 {
        let resp = client()
            .get(format!("{}/open/x", dp.base))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
    }
    // Three heartbeats (600 ms, six flush intervals) after the requests: a batch would have
    // come before them.
    for _ in 0..3 {
        session
            .expect(WAIT, "a ping", |m| match m {
                DpMessage::Ping { .. } => Some(()),
                DpMessage::Telemetry { .. } => panic!("telemetry sent while off: {m:?}"),
                _ => None,
            })
            .await;
    }
    assert!(cp.telemetry_json.lock().expect("lock").is_empty());
    let t = status(&dp).await["telemetry"].clone();
    assert_eq!(
        (t["buffer_fill"].as_u64(), t["buffer_limit"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_gateway_makes_itself_are_recorded_too() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let up = echo_upstream().await;
    let gone = support::closed_port().await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: limited
    url: http://{up}
    routes:
      - name: limited
        paths: [/limited]
        plugins:
          - name: rate-limiting
            config: {{minute: 1}}
  - name: broken
    url: http://{gone}
    retries: 0
    routes: [{{name: broken, paths: [/broken]}}]
"#
    );
    let dp = start_dp(&pki, &cp, &yaml, &[]).await;
    let mut session = cp.next_session(WAIT).await;
    let get = |path: &'static str| {
        let url = format!("{}{path}", dp.base);
        async move {
            let resp = client().get(url).send().await.expect("send");
            let status = resp.status().as_u16();
            (status, resp.bytes().await.expect("body").len() as u64)
        }
    };
    assert_eq!(get("/limited").await.0, 200);
    let limited = get("/limited").await;
    assert_eq!(limited.0, 429);
    let broken = get("/broken").await;
    assert_eq!(broken.0, 502);
    dp.dp
        .gateway
        .license
        .set(fleetgate_protocol::LicenseClaims {
            license_id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            issued_at: 0,
            expires_at: 1,
        });
    let expired = get("/limited").await;
    assert_eq!(expired.0, 503);

    let mut got = records(&mut session, 4).await;
    got.sort_by_key(|r| r.status);
    let seen: Vec<(u16, u64)> = got.iter().map(|r| (r.status, r.bytes_out)).collect();
    let ok_len = seen[0].1;
    assert_eq!(
        seen,
        [
            (200, ok_len),
            (429, limited.1),
            (502, broken.1),
            (503, expired.1)
        ]
    );
    // The 502 waited on the (refusing) upstream; the 429 and 503 never reached one.
    assert_eq!(got[1].latency_upstream_us, 0);
    assert!(got[1].route_id.is_some() && got[2].route_id.is_some());
    assert_eq!(got[3].latency_upstream_us, 0);
    assert_eq!(
        got[3].route_id, None,
        "the license check runs before routing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_before_the_answer_is_recorded_as_499() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let up = echo_upstream().await;
    let dp = start_dp(&pki, &cp, &yaml(up), &[]).await;
    let mut session = cp.next_session(WAIT).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let gave_up = impatient
        .get(format!("{}/open/delay/3000", dp.base))
        .send()
        .await;
    assert!(gave_up.is_err(), "the upstream answers after 3 s");
    let got = records(&mut session, 1).await;
    let record = &got[0];
    assert_eq!(
        record.status,
        fleetgate_dataplane::telemetry::CLIENT_CLOSED_REQUEST
    );
    assert_eq!(record.route_id, Some(id(OPEN_ROUTE)));
    assert_eq!(record.bytes_out, 0);
    // It was waiting on the upstream the whole time it waited at all.
    assert!(record.latency_upstream_us >= 150_000, "{record:?}");
    assert!(
        record.latency_upstream_us <= record.latency_total_us,
        "{record:?}"
    );
    assert!(
        record.latency_total_us < 3_000_000,
        "recorded when the client left, not when the upstream answered: {record:?}"
    );
}
