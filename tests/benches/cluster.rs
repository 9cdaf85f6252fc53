//! Config fan-out at fleet scale, in one process with the real code on both ends: the control
//! plane's API and cluster listener, and N data-plane cluster clients (each with its own
//! gateway, cache dir and mutual-TLS session).
//!
//!   cargo bench -p fleetgate-e2e --bench cluster            (1,000 sessions)
//!   FLEETGATE_BENCH_SESSIONS=200 cargo bench -p fleetgate-e2e --bench cluster
//!
//! Prints: time for N sessions to connect and apply the first config; for one change, the
//! per-session latency from the API answer to the session's `applied` (p50/p99/max) over
//! several changes; after a control-plane restart (same database and ports), the time until
//! every session is connected and in sync again.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleetgate_control_plane::cluster::listener::ClusterSettings;
use fleetgate_control_plane::server::{self, RunningServer};
use fleetgate_control_plane::store::{Role, Store};
use fleetgate_control_plane::ApiSettings;
use fleetgate_dataplane::cluster::tls::client_config_from_pem;
use fleetgate_dataplane::status::NodeInfo;
use fleetgate_dataplane::{ClientSettings, ClusterClient, ClusterHandle, Gateway};
use serde_json::{json, Value};

struct Cp {
    server: RunningServer,
    api: String,
    token: String,
}

async fn start_cp(
    store: Store,
    data_dir: &std::path::Path,
    api: SocketAddr,
    cluster: SocketAddr,
    token: Option<String>,
) -> anyhow::Result<Cp> {
    let settings = ApiSettings {
        cluster_endpoint: cluster.to_string(),
        data_dir: Some(data_dir.to_path_buf()),
        ..ApiSettings::default()
    };
    let cluster_settings = ClusterSettings {
        listen: cluster,
        ..ClusterSettings::default()
    };
    let server = server::start_with(store.clone(), api, settings, cluster_settings).await?;
    let token = match token {
        Some(t) => t,
        None => {
            let org = store.ensure_organization("bench").await?;
            fleetgate_control_plane::auth::issue_token(&store, org.id, "bench", Role::Admin, None)
                .await?
                .secret
        }
    };
    Ok(Cp {
        api: format!("http://{}", server.addr),
        server,
        token,
    })
}

async fn call(cp: &Cp, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method.clone(), format!("{}{path}", cp.api))
        .bearer_auth(&cp.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("call the API");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

/// The control plane's `/expected-config-hash`.
async fn expected_hash(cp: &Cp, cp_id: &str) -> String {
    call(
        cp,
        reqwest::Method::GET,
        &format!("/v2/control-planes/{cp_id}/expected-config-hash"),
        None,
    )
    .await["expected_hash"]
        .as_str()
        .expect("hash")
        .to_string()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// Waits until `done(state)` holds for every session; returns when each got there.
async fn wait_all(
    handles: &[ClusterHandle],
    started: Instant,
    what: &str,
    done: impl Fn(&fleetgate_dataplane::ClusterState) -> bool + Clone + Send + Sync + 'static,
) -> Vec<Duration> {
    let mut waits = Vec::with_capacity(handles.len());
    for h in handles {
        let mut rx = h.state();
        let done = done.clone();
        waits.push(tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(120), rx.wait_for(|s| done(s))).await;
            (r.map(|r| r.is_ok()).unwrap_or(false), started.elapsed())
        }));
    }
    let mut times = Vec::with_capacity(waits.len());
    for w in waits {
        let (ok, t) = w.await.expect("join a waiter");
        assert!(ok, "a session never got to: {what}");
        times.push(t);
    }
    times.sort();
    times
}

fn report(label: &str, times: &[Duration]) {
    println!(
        "{label}: n={} p50={:?} p99={:?} max={:?}",
        times.len(),
        percentile(times, 0.50),
        percentile(times, 0.99),
        times.last().copied().unwrap_or_default()
    );
}

fn main() -> anyhow::Result<()> {
    let sessions: usize = std::env::var("FLEETGATE_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too, so keep it small.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sessions = if quick { sessions.min(20) } else { sessions };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(sessions))
}

async fn run(sessions: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("cp");
    std::fs::create_dir_all(&data_dir)?;
    let store = Store::connect(&Store::sqlite_url_in(&data_dir)).await?;
    let api = fleetgate_e2e::free_port();
    let cluster = fleetgate_e2e::free_port();
    let cp = start_cp(store.clone(), &data_dir, api, cluster, None).await?;
    let created = call(
        &cp,
        reqwest::Method::POST,
        "/v2/control-planes",
        Some(json!({"name": "bench", "auth_type": "pinned_client_certs"})),
    )
    .await;
    let cp_id = created["id"].as_str().expect("id").to_string();
    let ca = created["config"]["cluster_ca_cert"]
        .as_str()
        .expect("ca")
        .to_string();
    let generated = call(
        &cp,
        reqwest::Method::POST,
        &format!("/v2/control-planes/{cp_id}/dp-client-certificates/generate"),
        Some(json!({})),
    )
    .await;
    let tls = client_config_from_pem(
        generated["item"]["cert"].as_str().expect("cert").as_bytes(),
        generated["key"].as_str().expect("key").as_bytes(),
        ca.as_bytes(),
    )?;
    let base = format!("/v2/control-planes/{cp_id}/core-entities");
    call(
        &cp,
        reqwest::Method::POST,
        &format!("{base}/services"),
        Some(json!({"name": "s0", "url": "http://127.0.0.1:9/"})),
    )
    .await;

    let client_settings = ClientSettings {
        endpoints: vec![cluster.to_string()],
        server_name: Some("localhost".into()),
        tls,
        ping_interval: Duration::from_secs(30),
        // A fleet reconnecting after a CP restart spreads over this window (the Istio lesson).
        reconnect_delay: (Duration::from_millis(500), Duration::from_millis(2500)),
        connect_timeout: Duration::from_secs(10),
        labels: Default::default(),
    };
    // Each node's cache on its own "disk": in one process on one VM disk, 1,000 nodes' fsyncs
    // would queue behind one another (~1 ms each), which no real fleet does. tmpfs keeps the
    // writes (and the code path) but not that artefact.
    let nodes_dir = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir()?,
    };
    let started = Instant::now();
    let mut handles = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let prefix = nodes_dir.path().join(format!("dp{i}"));
        std::fs::create_dir_all(&prefix)?;
        let gateway = Gateway::new()?;
        handles.push(ClusterClient::spawn(
            client_settings.clone(),
            gateway,
            prefix,
            NodeInfo {
                node_id: uuid::Uuid::new_v4(),
                hostname: format!("bench-{i}"),
                version: env!("CARGO_PKG_VERSION"),
                cluster: None,
                fallback: None,
            },
        ));
    }
    let expected = expected_hash(&cp, &cp_id).await;
    let first = {
        let expected = expected.clone();
        wait_all(&handles, started, "the first config", move |s| {
            s.applied_hash.as_deref() == Some(expected.as_str())
        })
        .await
    };
    report(
        &format!("connect + first config, {sessions} sessions"),
        &first,
    );

    // One change at a time; latency from the API's answer to each session's apply. Waiters
    // look for "no longer the previous hash" so they start before the expected hash is known.
    let mut all = Vec::new();
    let mut previous = expected;
    for round in 1..=5 {
        call(
            &cp,
            reqwest::Method::POST,
            &format!("{base}/services"),
            Some(json!({"name": format!("s{round}"), "url": "http://127.0.0.1:9/"})),
        )
        .await;
        let changed = Instant::now();
        let old = previous.clone();
        let waiting = wait_all(&handles, changed, "a change", move |s| {
            s.applied_hash.as_deref().is_some_and(|h| h != old)
        });
        let times = waiting.await;
        let hash = expected_hash(&cp, &cp_id).await;
        for h in &handles {
            assert_eq!(
                h.state().borrow().applied_hash.as_deref(),
                Some(hash.as_str())
            );
        }
        report(&format!("change {round} applied on every session"), &times);
        all.extend(times);
        previous = hash;
    }
    all.sort();
    report("one change -> applied, all rounds", &all);

    // Control-plane restart: same database, same ports, same data dir.
    let token = cp.token.clone();
    cp.server.shutdown().await?;
    let restarted = Instant::now();
    let cp = start_cp(store.clone(), &data_dir, api, cluster, Some(token)).await?;
    let times = wait_all(&handles, restarted, "reconnected after restart", |s| {
        s.connected && s.sessions >= 2
    })
    .await;
    report("CP restart -> every session connected again", &times);
    let nodes_in_sync = Instant::now();
    loop {
        let mut in_sync = 0;
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(c) => {
                    format!("/v2/control-planes/{cp_id}/nodes?page[size]=1000&page[after]={c}")
                }
                None => format!("/v2/control-planes/{cp_id}/nodes?page[size]=1000"),
            };
            let page = call(&cp, reqwest::Method::GET, &path, None).await;
            in_sync += page["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|n| n["sync_status"] == "in_sync" && n["connected"] == true)
                        .count()
                })
                .unwrap_or(0);
            match page["page"]["next"].as_str() {
                Some(c) if !c.is_empty() => after = Some(c.to_string()),
                _ => break,
            }
        }
        if in_sync == sessions {
            break;
        }
        assert!(
            nodes_in_sync.elapsed() < Duration::from_secs(120),
            "only {in_sync} of {sessions} nodes in sync"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "CP restart -> /nodes shows all {sessions} in_sync and connected after {:?}",
        restarted.elapsed()
    );
    for h in handles {
        h.shutdown().await;
    }
    cp.server.shutdown().await?;
    Ok(())
}
