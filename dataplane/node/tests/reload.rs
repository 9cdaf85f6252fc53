//! Config swaps and reloads: in-flight and concurrent requests never fail, a bad file never
//! replaces a good config, and a bad file at start-up names the file, line and field.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetgate_config::declarative;
use fleetgate_dataplane::{ConfigSource, DataPlane, Settings};
use serde_json::Value;
use support::{client, echo_upstream_named, eventually, Dp};

fn config_to(upstream: std::net::SocketAddr, tag: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: http://{upstream}\n    tags: [{tag}]\n    routes: [{{name: r, paths: [/x]}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_config_100_times_under_load_loses_no_request() {
    let a = echo_upstream_named("a").await;
    let b = echo_upstream_named("b").await;
    let config_a = declarative::import(&config_to(a, "a")).expect("config a");
    let config_b = declarative::import(&config_to(b, "b")).expect("config b");
    let dp = Dp::start(&config_to(a, "a")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let url = format!("{}/x", dp.base);
        let stop = stop.clone();
        let ok = ok.clone();
        loaders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(resp) if resp.status() == 200 => {
                        let body: Value = resp.json().await.unwrap_or(Value::Null);
                        match body["upstream"].as_str() {
                            Some("a") | Some("b") => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failures.push(format!("answered by {other:?}")),
                        }
                    }
                    Ok(resp) => failures.push(format!("status {}", resp.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            failures
        }));
    }
    eventually(Duration::from_secs(10), "load to start", || async {
        (ok.load(Ordering::Relaxed) > 10).then_some(())
    })
    .await;
    for i in 0..100 {
        let config = if i % 2 == 0 {
            config_b.clone()
        } else {
            config_a.clone()
        };
        dp.dp
            .gateway
            .apply(config, ConfigSource::Declarative)
            .expect("apply");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for loader in loaders {
        failures.extend(loader.await.expect("loader"));
    }
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little load to prove anything"
    );
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_config() {
    let a = echo_upstream_named("a").await;
    let b = echo_upstream_named("b").await;
    let dp = Dp::start(&config_to(a, "a")).await;
    let hash_before = dp.dp.gateway.current().hash.clone();
    let err = dp
        .rewrite("_format_version: \"3.0\"\nservices:\n  - name: [broken\n")
        .expect_err("broken YAML is rejected");
    assert!(err.to_string().contains("line"), "{err}");
    let err = dp
        .rewrite(
            "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://x\n    portz: 1\n",
        )
        .expect_err("unknown field is rejected");
    assert!(err.to_string().contains("portz"), "{err}");
    assert_eq!(dp.dp.gateway.current().hash, hash_before);
    let resp = client()
        .get(format!("{}/x", dp.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.json::<Value>().await.expect("json")["upstream"], "a");
    // A good file is picked up.
    dp.rewrite(&config_to(b, "b")).expect("good reload");
    let resp = client()
        .get(format!("{}/x", dp.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.json::<Value>().await.expect("json")["upstream"], "b");
    let status: Value = client()
        .get(dp.status_url("/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["config_source"], "declarative");
    assert_eq!(
        status["config_hash"],
        dp.dp.gateway.current().hash.to_string()
    );
    assert_eq!(status["entities"]["routes"], 1);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn no_config_answers_404_and_is_ready() {
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "prefix = {:?}\nproxy_listen = \"127.0.0.1:0\"\nstatus_listen = \"127.0.0.1:0\"\n",
        dir.path().display().to_string()
    );
    let dp =
        DataPlane::start(Settings::from_sources(Some(("dp.toml", &toml)), &[]).expect("settings"))
            .await
            .expect("start");
    let resp = client()
        .get(format!("http://{}/anything", dp.proxy_addr))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["message"],
        "no Route matched with those values"
    );
    let ready = client()
        .get(format!("http://{}/ready", dp.status_addr))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    dp.shutdown().await;
}

#[test]
fn a_broken_declarative_config_fails_start_up_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("kong.yml");
    std::fs::write(
        &file,
        "_format_version: \"3.0\"\nservices:\n  - name: ok\n    url: http://x\n    retries: many\n",
    )
    .expect("write");
    let conf = dir.path().join("dp.toml");
    std::fs::write(
        &conf,
        format!(
            "prefix = {:?}\ndeclarative_config = {:?}\nproxy_listen = \"127.0.0.1:0\"\nstatus_listen = \"127.0.0.1:0\"\n",
            dir.path().display().to_string(),
            file.display().to_string()
        ),
    )
    .expect("write conf");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetgate-dp"))
        .arg("--conf")
        .arg(&conf)
        .output()
        .expect("run fleetgate-dp");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or("");
    assert!(
        last.contains("kong.yml") && last.contains("retries"),
        "{stderr}"
    );

    let bad_key = dir.path().join("bad.toml");
    std::fs::write(&bad_key, "proxy_lissen = \"127.0.0.1:0\"\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetgate-dp"))
        .arg("--conf")
        .arg(&bad_key)
        .output()
        .expect("run fleetgate-dp");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxy_lissen"));
}
