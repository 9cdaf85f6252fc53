//! `fleetgate quickstart` as a user runs it on a fresh machine: the printed curl lines work,
//! two local gateway nodes (real `fleetgate-dp` processes that enrolled with join tokens and
//! connected over mutual TLS) proxy the demo route, and a killed node is replaced and back in
//! sync.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fleetgate_e2e::{binary, eventually, http};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The local nodes live in their own process groups (they keep serving when the control
/// plane stops), so the test stops them itself, also when it fails.
struct NodeReaper(PathBuf);

impl Drop for NodeReaper {
    fn drop(&mut self) {
        for pid in node_pids(&self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The control plane's and every node's log, for a failure message.
fn logs(data_dir: &Path) -> String {
    let mut out = std::fs::read_to_string(data_dir.join("quickstart.log")).unwrap_or_default();
    for (dir, _) in nodes(data_dir) {
        out.push_str(&format!("\n--- {}\n", dir.display()));
        out.push_str(&std::fs::read_to_string(dir.join("dp.log")).unwrap_or_default());
    }
    out
}

/// `(instance dir, pid)` of every local node that has a process recorded.
fn nodes(data_dir: &Path) -> Vec<(PathBuf, u32)> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("local-gateways/instances")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let record: Value =
                serde_json::from_slice(&std::fs::read(entry.path().join("instance.json")).ok()?)
                    .ok()?;
            let pid = u32::try_from(record.get("pid")?.as_u64()?).ok()?;
            Some((entry.path(), pid))
        })
        .collect()
}

fn node_pids(data_dir: &Path) -> Vec<u32> {
    nodes(data_dir).into_iter().map(|(_, pid)| pid).collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn status_of(url: &str) -> Option<(u16, String)> {
    let response = http().get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

#[tokio::test]
async fn quickstart_gives_two_gateway_nodes_that_proxy_the_demo_route_and_replaces_a_killed_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = std::fs::File::create(dir.path().join("quickstart.log")).expect("log file");
    let _reaper = NodeReaper(dir.path().to_path_buf());
    let mut child = Command::new(binary("fleetgate"))
        .args([
            "quickstart",
            "--api-listen",
            "127.0.0.1:0",
            "--cluster-listen",
            "127.0.0.1:0",
            "--cloud-reconcile-interval",
            "1s",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("FLEETGATE_DATABASE_URL")
        .env_remove("FLEETGATE_API_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("start quickstart");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(150), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let done = line.contains("Ctrl-C");
            printed.push(line);
            if done {
                break;
            }
        }
    })
    .await
    .expect("quickstart printed its instructions in time");

    // Every printed curl line works as printed: the API ones and the ones through the nodes.
    let export = printed
        .iter()
        .find(|l| l.starts_with("export FLEETGATE_TOKEN="))
        .expect("an export line");
    let token = export
        .trim_start_matches("export FLEETGATE_TOKEN=")
        .to_string();
    let curls: Vec<&String> = printed.iter().filter(|l| l.starts_with("curl ")).collect();
    let through_nodes: Vec<String> = curls
        .iter()
        .filter(|l| l.ends_with("/demo") && !l.contains("Authorization"))
        .map(|l| l.trim_start_matches("curl -s ").to_string())
        .collect();
    assert_eq!(through_nodes.len(), 2, "two node curl lines: {printed:#?}");
    assert!(curls.len() >= 7, "{printed:#?}");
    for curl in &curls {
        let script = format!("set -e\n{export}\n{curl} --fail-with-body");
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .await
            .expect("run curl");
        assert!(
            out.status.success(),
            "{curl} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        if through_nodes.iter().any(|u| curl.contains(u.as_str())) {
            assert!(
                String::from_utf8_lossy(&out.stdout)
                    .contains("Hello from the Fleetgate demo upstream"),
                "{curl} reached the demo upstream"
            );
        }
    }

    // The token was saved, owner-only.
    let saved = dir.path().join("admin-token");
    assert_eq!(
        std::fs::read_to_string(&saved).expect("token file").trim(),
        token
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "token file is readable by others");
    }

    // The API: both nodes connected and in sync with the demo control plane.
    let base = printed
        .iter()
        .find_map(|l| l.strip_prefix("Fleetgate is running at "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the API address line")
        .to_string();
    let api = |path: String| {
        let token = token.clone();
        async move {
            let response = http().get(&path).bearer_auth(&token).send().await.ok()?;
            response.json::<Value>().await.ok()
        }
    };
    let planes = api(format!("{base}/v2/control-planes"))
        .await
        .expect("control planes");
    let cp = planes["data"][0]["id"]
        .as_str()
        .expect("the demo control plane")
        .to_string();
    let nodes_url = format!("{base}/v2/control-planes/{cp}/nodes");
    let in_sync = |nodes: &Value| {
        let list = nodes["items"].as_array().cloned().unwrap_or_default();
        let good = list
            .iter()
            .filter(|n| n["connected"] == json!(true) && n["sync_status"] == json!("in_sync"))
            .count();
        good == 2
    };
    let first_nodes = eventually(Duration::from_secs(30), "2 connected nodes in sync", || {
        let url = nodes_url.clone();
        let api = &api;
        async move { api(url).await.filter(|n| in_sync(n)) }
    })
    .await;
    let node_ids: Vec<String> = first_nodes["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect();
    let configurations = api(format!("{base}/v2/cloud-gateways/configurations"))
        .await
        .expect("configurations");
    let group = &configurations["data"][0]["dataplane_groups"][0];
    assert_eq!(group["provider"], json!("local"), "{configurations}");

    // Kill one node's process: the supervisor starts it again, it reconnects as the same
    // node, serves the route, and takes a new change.
    let (victim_dir, victim_pid) = nodes(dir.path()).into_iter().next().expect("a node");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &victim_pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let new_pid = eventually(Duration::from_secs(30), "the killed node restarted", || {
        let victim_dir = victim_dir.clone();
        let data_dir = dir.path().to_path_buf();
        async move {
            nodes(&data_dir)
                .into_iter()
                .find(|(d, pid)| *d == victim_dir && *pid != victim_pid && alive(*pid))
                .map(|(_, pid)| pid)
        }
    })
    .await;
    assert_ne!(new_pid, victim_pid);
    eventually(Duration::from_secs(30), "both nodes in sync again", || {
        let url = nodes_url.clone();
        let api = &api;
        async move { api(url).await.filter(|n| in_sync(n)) }
    })
    .await;
    let after: Vec<String> = api(nodes_url.clone()).await.expect("nodes")["items"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(after, node_ids, "the restarted node came back as itself");

    let services = api(format!(
        "{base}/v2/control-planes/{cp}/core-entities/services"
    ))
    .await
    .expect("services");
    // The printed lines created an "orders" service too; the route goes to the demo one.
    let service = services["data"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == json!("demo"))
        .and_then(|s| s["id"].as_str())
        .expect("the demo service")
        .to_string();
    let created = http()
        .post(format!(
            "{base}/v2/control-planes/{cp}/core-entities/routes"
        ))
        .bearer_auth(&token)
        .json(&json!({"name": "hello", "paths": ["/hello"], "service": {"id": service}}))
        .send()
        .await
        .expect("create a route");
    assert_eq!(created.status().as_u16(), 201);
    for node in &through_nodes {
        let url = node.replace("/demo", "/hello");
        let answered = tokio::time::timeout(Duration::from_secs(30), async {
            while status_of(&url).await.map(|(s, _)| s) != Some(200) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            answered.is_ok(),
            "{url} never answered 200 after the route was added; logs:\n{}",
            logs(dir.path())
        );
    }

    let pid = child.id().expect("pid");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("quickstart stops on SIGTERM")
        .expect("wait");
    assert!(status.success());
}
