//! The cluster client against a minimal in-test control plane (real TLS 1.3 with client
//! certificates, real WebSocket): hello, reconfigure -> applied + cache + ping, rejected on a
//! bad config, licenses, reconnect within the jitter window, heartbeat timeout, refusals and
//! failed upgrades reported in `last_error`.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetgate_config::{declarative, GatewayConfig, EMPTY_CONFIG_HASH};
use fleetgate_dataplane::cache::{self, CacheLoad};
use fleetgate_dataplane::cluster::tls::client_config_from_pem;
use fleetgate_dataplane::license::now_unix;
use fleetgate_dataplane::status::NodeInfo;
use fleetgate_dataplane::{ClientSettings, ClusterClient, ClusterHandle, ConfigSource, Gateway};
use fleetgate_protocol::{CpMessage, DpMessage, LicenseClaims, LicenseSigner};
use serde_json::Value;
use support::cluster::{Pki, TestCp};
use support::{client, echo_upstream_named, eventually, Dp};

const PING: Duration = Duration::from_millis(300);
const RECONNECT: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(400));
const WAIT: Duration = Duration::from_secs(10);

fn settings(pki: &Pki, cp: &TestCp) -> ClientSettings {
    ClientSettings {
        endpoints: vec![cp.addr.to_string()],
        server_name: None,
        tls: client_config_from_pem(
            pki.client_cert.as_bytes(),
            pki.client_key.as_bytes(),
            pki.ca.as_bytes(),
        )
        .expect("client tls"),
        ping_interval: PING,
        reconnect_delay: RECONNECT,
        connect_timeout: Duration::from_secs(5),
        labels: Default::default(),
    }
}

fn node() -> NodeInfo {
    NodeInfo {
        node_id: uuid::Uuid::new_v4(),
        hostname: "dp-test".into(),
        version: env!("CARGO_PKG_VERSION"),
        cluster: None,
        fallback: None,
    }
}

struct Client {
    handle: ClusterHandle,
    gateway: Arc<Gateway>,
    prefix: tempfile::TempDir,
    node: NodeInfo,
}

fn spawn(settings: ClientSettings) -> Client {
    let gateway = Gateway::new().expect("gateway");
    let prefix = tempfile::tempdir().expect("prefix");
    let node = node();
    let handle = ClusterClient::spawn(
        settings,
        gateway.clone(),
        PathBuf::from(prefix.path()),
        node.clone(),
    );
    Client {
        handle,
        gateway,
        prefix,
        node,
    }
}

fn config(upstream: std::net::SocketAddr, path: &str) -> GatewayConfig {
    declarative::import(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: http://{upstream}\n    routes: [{{name: r, paths: [{path}]}}]\n"
    ))
    .expect("config")
}

fn reconfigure(config: &GatewayConfig, version: i64) -> (CpMessage, String) {
    let hash = config.hash().to_string();
    (
        CpMessage::Reconfigure {
            version,
            config_hash: hash.clone(),
            config: serde_json::to_value(config).expect("json"),
            control_plane_id: None,
        },
        hash,
    )
}

fn applied(msg: DpMessage) -> Option<Result<String, (String, Vec<String>)>> {
    match msg {
        DpMessage::Applied { config_hash } => Some(Ok(config_hash)),
        DpMessage::Rejected {
            config_hash,
            errors,
        } => Some(Err((config_hash, errors))),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_config_is_applied_cached_and_acknowledged() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let up = echo_upstream_named("pushed").await;
    let declared = echo_upstream_named("declared").await;
    // A real data plane with a declarative config and the cluster settings.
    let dir = tempfile::tempdir().expect("dir");
    let files = pki.write_client_files(dir.path());
    let cp_addr = cp.addr.to_string();
    let mut extra: Vec<(&str, &str)> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    extra.extend([
        ("cluster_control_plane", cp_addr.as_str()),
        ("cluster_ping_interval", "300ms"),
        ("cluster_reconnect_delay", "200ms..400ms"),
    ]);
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: local\n    url: http://{declared}\n    routes: [{{name: l, paths: [/local]}}]\n"
    );
    let dp = Dp::start_in(dir, Some(&yaml), &extra).await;
    let mut session = cp.next_session(WAIT).await;
    let declared_hash = dp.dp.gateway.current().hash.to_string();
    let hello = session
        .expect(WAIT, "hello", |m| match m {
            DpMessage::Hello {
                node_id,
                config_hash,
                plugins,
                version,
                ..
            } => Some((node_id, config_hash, plugins, version)),
            _ => None,
        })
        .await;
    // A local (declarative) config is not the control plane's: the hello reports no hash,
    // so the control plane pushes even a config with the same content.
    assert_eq!(hello.1, "");
    assert_ne!(declared_hash, "");
    assert!(hello.2.iter().any(|p| p.name == "key-auth"));
    assert_eq!(hello.3, env!("CARGO_PKG_VERSION"));
    assert!(
        session.uri.starts_with("/v1/outlet?node_id="),
        "{}",
        session.uri
    );
    assert!(session.uri.contains(&hello.0.to_string()));

    // reconfigure -> applied, then a ping with the new hash; live, cached, in /status.
    let pushed = config(up, "/pushed");
    let (msg, hash) = reconfigure(&pushed, 5);
    session.send(&msg);
    let answer = session.expect(WAIT, "applied", applied).await;
    assert_eq!(answer, Ok(hash.clone()));
    session
        .expect(WAIT, "ping after apply", |m| match m {
            DpMessage::Ping { config_hash, .. } if config_hash == hash => Some(()),
            _ => None,
        })
        .await;
    let current = dp.dp.gateway.current();
    assert_eq!(
        (current.source, current.version),
        (ConfigSource::Cp, Some(5))
    );
    match cache::load(dp.dir.path()) {
        CacheLoad::Valid(valid) => {
            assert_eq!((valid.hash.as_str(), valid.version), (hash.as_str(), 5))
        }
        other => panic!("cache after apply: {other:?}"),
    }
    let resp = client()
        .get(format!("{}/pushed", dp.base))
        .send()
        .await
        .expect("proxy");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["upstream"], "pushed");
    let status_url = dp.status_url("/status");
    let status = eventually(WAIT, "connected status with a ping", || async {
        let st: Value = client()
            .get(&status_url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (st["connected"] == true && st["last_ping"].is_string()).then_some(st)
    })
    .await;
    assert_eq!(status["config_source"], "cp");
    assert_eq!(status["config_version"], 5);
    assert_eq!(status["config_hash"], hash.as_str());

    // SIGHUP must not replace a config pushed by the control plane.
    dp.dp.reload().expect("reload");
    assert_eq!(dp.dp.gateway.current().hash.to_string(), hash);

    // The same hash again: nothing to swap, still applied.
    session.send(&msg);
    assert_eq!(
        session.expect(WAIT, "applied", applied).await,
        Ok(hash.clone())
    );

    // A hash that does not match the config: rejected, running config kept.
    let other = config(up, "/other");
    session.send(&CpMessage::Reconfigure {
        version: 6,
        config_hash: "0123456789abcdef0123456789abcdef".into(),
        config: serde_json::to_value(&other).expect("json"),
        control_plane_id: None,
    });
    let (rejected_hash, errors) = session
        .expect(WAIT, "rejected", applied)
        .await
        .expect_err("rejected");
    assert_eq!(rejected_hash, "0123456789abcdef0123456789abcdef");
    assert!(
        errors.iter().any(|e| e.starts_with("config_hash:")),
        "{errors:?}"
    );

    // An invalid config (a route of a service that is not there): rejected with the field.
    let mut broken = config(up, "/broken");
    broken.services.clear();
    let broken_json = serde_json::to_value(&broken).expect("json");
    session.send(&CpMessage::Reconfigure {
        version: 7,
        config_hash: broken.hash().to_string(),
        config: broken_json,
        control_plane_id: None,
    });
    let (_, errors) = session
        .expect(WAIT, "rejected", applied)
        .await
        .expect_err("rejected");
    assert!(
        errors.iter().any(|e| e.starts_with("routes[0].service")),
        "{errors:?}"
    );
    assert_eq!(dp.dp.gateway.current().hash.to_string(), hash);

    // A license is verified, stored with the cache and enforced.
    let signer = LicenseSigner::generate();
    let claims = LicenseClaims {
        license_id: uuid::Uuid::new_v4(),
        organization_id: uuid::Uuid::new_v4(),
        issued_at: now_unix(),
        expires_at: now_unix() - 1,
    };
    session.send(&CpMessage::License {
        signed_blob: signer.sign(&claims),
    });
    let gateway = dp.dp.gateway.clone();
    eventually(WAIT, "license installed", || async {
        gateway
            .license
            .claims()
            .filter(|c| c.license_id == claims.license_id)
    })
    .await;
    assert!(dp.dir.path().join(cache::LICENSE_FILE).exists());
    let resp = client()
        .get(format!("{}/pushed", dp.base))
        .send()
        .await
        .expect("proxy");
    assert_eq!(resp.status(), 503);
    dp.dp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_within_the_jitter_window_after_the_cp_drops_the_link() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let c = spawn(settings(&pki, &cp));
    let mut session = cp.next_session(WAIT).await;
    let up = echo_upstream_named("x").await;
    let (msg, hash) = reconfigure(&config(up, "/x"), 1);
    session.send(&msg);
    assert_eq!(
        session.expect(WAIT, "applied", applied).await,
        Ok(hash.clone())
    );
    for round in 0..3 {
        let dropped = Instant::now();
        drop(session);
        session = cp.next_session(WAIT).await;
        let gap = session.accepted_at.duration_since(dropped);
        assert!(
            gap >= RECONNECT.0 && gap <= RECONNECT.1 + Duration::from_millis(700),
            "round {round}: reconnected after {gap:?}, expected within {RECONNECT:?} (+ handshake)"
        );
        // The new hello carries the applied hash, so the CP can skip the reconfigure.
        let hello_hash = session
            .expect(WAIT, "hello", |m| match m {
                DpMessage::Hello { config_hash, .. } => Some(config_hash),
                _ => None,
            })
            .await;
        assert_eq!(hello_hash, hash);
    }
    let state = c.handle.state();
    assert!(state.borrow().sessions >= 4);
    assert_eq!(state.borrow().applied_hash.as_deref(), Some(hash.as_str()));
    assert!(matches!(cache::load(c.prefix.path()), CacheLoad::Valid(_)));
    c.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_control_plane_is_dropped_after_one_and_a_half_ping_intervals() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let c = spawn(settings(&pki, &cp));
    let mut session = cp.next_session(WAIT).await;
    session
        .expect(WAIT, "hello", |m| {
            matches!(m, DpMessage::Hello { .. }).then_some(())
        })
        .await;
    // Answered pings keep the link up well past 1.5 intervals.
    let pong_a_while = Instant::now();
    while pong_a_while.elapsed() < PING * 3 {
        session
            .expect(WAIT, "ping", |m| {
                matches!(m, DpMessage::Ping { .. }).then_some(())
            })
            .await;
    }
    session.go_silent();
    let silent_from = Instant::now();
    let closed = session.closed(WAIT).await;
    let after = closed.duration_since(silent_from);
    // The last frame (a pong) came at most one interval before going silent.
    assert!(
        after <= PING.mul_f64(1.5) + Duration::from_millis(500),
        "dropped {after:?} after going silent"
    );
    let mut state = c.handle.state();
    let error = eventually(WAIT, "last_error set", || {
        let e = state.borrow_and_update().last_error.clone();
        async move { e }
    })
    .await;
    assert!(error.contains("no frame from the control plane"), "{error}");
    // ... and it dials again.
    cp.next_session(WAIT).await;
    c.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failed_upgrades_are_reported_and_retried() {
    let pki = Pki::generate();
    let mut cp = TestCp::start(&pki).await;
    let c = spawn(settings(&pki, &cp));
    let session = cp.next_session(WAIT).await;
    session.send(&CpMessage::Refused {
        reason: "data plane 9.0.0 is newer than the control plane".into(),
    });
    let state = c.handle.state();
    let last_error = || {
        let e = state.borrow().last_error.clone();
        async move { e }
    };
    let error = eventually(WAIT, "refusal reported", last_error).await;
    assert!(error.contains("newer than the control plane"), "{error}");
    // It retries; this time the upgrade is refused with HTTP 401 and a reason.
    *cp.refuse_upgrade.lock().expect("lock") = Some((401, "unknown client certificate".into()));
    drop(session);
    let error = eventually(WAIT, "401 reported", || {
        let e = state
            .borrow()
            .last_error
            .clone()
            .filter(|e| e.contains("401"));
        async move { e }
    })
    .await;
    assert!(error.contains("unknown client certificate"), "{error}");
    assert!(!state.borrow().connected);
    *cp.refuse_upgrade.lock().expect("lock") = None;
    cp.next_session(WAIT).await;
    c.handle.shutdown().await;

    // A CP whose certificate is not signed by cluster_ca_cert: a TLS error, reported.
    let other = Pki::generate();
    let mut bad = settings(&pki, &cp);
    bad.tls = client_config_from_pem(
        pki.client_cert.as_bytes(),
        pki.client_key.as_bytes(),
        other.ca.as_bytes(),
    )
    .expect("tls");
    let c = spawn(bad);
    let state = c.handle.state();
    let error = eventually(WAIT, "TLS error reported", || {
        let e = state.borrow().last_error.clone();
        async move { e }
    })
    .await;
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(c.gateway.current().hash.to_string(), EMPTY_CONFIG_HASH);
    let _ = &c.node;
    c.handle.shutdown().await;
}
