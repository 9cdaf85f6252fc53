//! Fallback config and manual recovery end to end (the data-plane resilience issue): real
//! `fleetgate serve` and `fleetgate-dp` processes, fallback storage on moto's S3 and on a
//! local directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetgate_e2e::{
    eventually, ControlPlaneProcess, DataPlaneOptions, DataPlaneProcess, DpCredentials, Moto,
    Upstream,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const BUCKET: &str = "fleetgate-fallback";

/// Where fallback objects go in one test.
enum Storage {
    S3 { moto: Moto },
    File { dir: tempfile::TempDir },
}

impl Storage {
    async fn s3() -> Self {
        let moto = Moto::start().await;
        moto.create_bucket(BUCKET).await;
        Self::S3 { moto }
    }

    fn file() -> Self {
        Self::File {
            dir: tempfile::tempdir().expect("create the storage dir"),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::S3 { .. } => format!("s3://{BUCKET}/fleet/prod"),
            Self::File { dir } => format!("file://{}", dir.path().display()),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Self::S3 { moto } => moto
                .aws_env()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            Self::File { .. } => Vec::new(),
        }
    }

    /// The object a node of this version reads and writes, fetched directly.
    async fn object(&self) -> Option<Vec<u8>> {
        let version = major_minor();
        match self {
            Self::S3 { moto } => {
                moto.get_object(BUCKET, &format!("fleet/prod/{version}/config.json"))
                    .await
            }
            Self::File { dir } => std::fs::read(object_path(dir.path())).ok(),
        }
    }
}

fn major_minor() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    format!(
        "{}.{}",
        parts.next().expect("major"),
        parts.next().expect("minor")
    )
}

fn object_path(root: &Path) -> PathBuf {
    root.join(major_minor()).join("config.json")
}

/// A node of `creds`' control plane with fast heartbeats and reconnects and `extra` settings.
async fn node(
    cp_endpoint: String,
    creds: &DpCredentials,
    storage: Option<&Storage>,
    extra: &[(&str, &str)],
) -> DataPlaneProcess {
    let mut settings = vec![
        ("cluster_ping_interval".to_string(), "1s".to_string()),
        (
            "cluster_reconnect_delay".to_string(),
            "200ms..500ms".to_string(),
        ),
    ];
    if let Some(storage) = storage {
        settings.push(("cluster_fallback_config_storage".into(), storage.url()));
    }
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DataPlaneProcess::start(DataPlaneOptions {
        control_plane: Some(cp_endpoint),
        credentials: Some(creds.clone()),
        server_name: Some("localhost".into()),
        extra: settings,
        env: storage.map(Storage::env).unwrap_or_default(),
        ..Default::default()
    })
    .await
}

/// A node that exports every pushed config, at most once per `window`.
async fn exporter(
    cp_endpoint: String,
    creds: &DpCredentials,
    storage: &Storage,
    window: &str,
) -> DataPlaneProcess {
    node(
        cp_endpoint,
        creds,
        Some(storage),
        &[
            ("cluster_fallback_config_export", "on"),
            ("cluster_fallback_config_export_delay", window),
        ],
    )
    .await
}

async fn wait_for_status(dp: &DataPlaneProcess, what: &str, check: impl Fn(&Value) -> bool) {
    eventually(WAIT, what, || async {
        let status = dp.status().await;
        check(&status).then_some(())
    })
    .await;
}

/// Exporter node + control plane; the control plane dies; a brand-new node with import on
/// proxies the exported config; the control plane comes back with a change and the new node
/// switches to it.
async fn a_new_node_starts_from_the_exported_config_while_the_control_plane_is_down(
    storage: Storage,
) {
    let upstream = Upstream::start("exported").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let exporter = exporter(cp.cluster_endpoint(), &creds, &storage, "1s").await;
    cp.create_service_and_route(&cp_id, "exported", upstream.addr, "/exported")
        .await;
    let exported = cp.expected_hash(&cp_id).await;
    exporter.wait_for_hash(&exported, WAIT).await;
    wait_for_status(&exporter, "the exporter to write the config", |s| {
        s["fallback"]["last_export_hash"] == exported.as_str()
    })
    .await;
    let Some(object) = storage.object().await else {
        let moto_log = match &storage {
            Storage::S3 { moto } => moto.log(),
            Storage::File { .. } => String::new(),
        };
        panic!(
            "no fallback object; exporter status {}\nlog:\n{}\nmoto:\n{moto_log}",
            exporter.status().await,
            exporter.log()
        );
    };
    let document: Value = serde_json::from_slice(&object).expect("the object is JSON");
    assert_eq!(document["config_hash"], exported.as_str());
    assert_eq!(document["control_plane_id"], cp_id.as_str());

    cp.kill();
    let newcomer = node(
        cp.cluster_endpoint(),
        &creds,
        Some(&storage),
        &[("cluster_fallback_config_import", "on")],
    )
    .await;
    wait_for_status(
        &newcomer,
        "the new node to import the fallback config",
        |s| s["config_source"] == "fallback" && s["config_hash"] == exported.as_str(),
    )
    .await;
    let status = newcomer.status().await;
    assert_eq!(status["fallback"]["import"], "imported", "{status}");
    assert_eq!(status["connected"], false);
    assert_eq!(status["ready"], true);
    let (code, body) = newcomer.get("/exported/orders").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"upstream\":\"exported\""), "{body}");

    cp.start_again().await;
    cp.create_service_and_route(&cp_id, "later", upstream.addr, "/later")
        .await;
    let latest = cp.expected_hash(&cp_id).await;
    newcomer.wait_for_hash(&latest, WAIT).await;
    let status = newcomer.status().await;
    assert_eq!(status["config_source"], "cp", "{status}");
    newcomer.wait_for_cache(&latest, WAIT).await;
    assert_eq!(newcomer.get("/later/x").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_new_node_starts_from_the_exported_config_while_the_control_plane_is_down() {
    a_new_node_starts_from_the_exported_config_while_the_control_plane_is_down(Storage::s3().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_a_new_node_starts_from_the_exported_config_while_the_control_plane_is_down() {
    a_new_node_starts_from_the_exported_config_while_the_control_plane_is_down(Storage::file())
        .await;
}

/// Ten changes inside one export window: one object write, holding the newest config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_changes_within_the_export_window_are_written_once_with_the_newest() {
    const WINDOW: Duration = Duration::from_secs(6);
    let storage = Storage::s3().await;
    let upstream = Upstream::start("window").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    // Configured before the node joins, so the node's first config is this one: written at
    // once (nothing was written before) and opening a window.
    cp.create_service_and_route(&cp_id, "first", upstream.addr, "/first")
        .await;
    let first = cp.expected_hash(&cp_id).await;
    let exporter = exporter(cp.cluster_endpoint(), &creds, &storage, "6s").await;
    wait_for_status(&exporter, "the first export", |s| {
        s["fallback"]["exports"] == 1 && s["fallback"]["last_export_hash"] == first.as_str()
    })
    .await;
    let window_opened = std::time::Instant::now();

    let mut pushed = Vec::new();
    for i in 0..10 {
        cp.create_service_and_route(
            &cp_id,
            &format!("change-{i}"),
            upstream.addr,
            &format!("/c{i}"),
        )
        .await;
        let hash = cp.expected_hash(&cp_id).await;
        // Each change reaches the node (so each is a change the exporter sees).
        exporter.wait_for_hash(&hash, WAIT).await;
        pushed.push(hash);
    }
    assert!(
        window_opened.elapsed() < WINDOW,
        "the ten changes took {:?}, longer than the {WINDOW:?} window; the test proves nothing",
        window_opened.elapsed()
    );
    let newest = pushed.last().expect("ten changes").clone();
    wait_for_status(&exporter, "the end-of-window export", |s| {
        s["fallback"]["exports"] == 2 && s["fallback"]["last_export_hash"] == newest.as_str()
    })
    .await;
    let document: Value =
        serde_json::from_slice(&storage.object().await.expect("the object")).expect("JSON");
    assert_eq!(document["config_hash"], newest.as_str());
    // No further write follows: one more full window passes with the count unchanged.
    tokio::time::sleep(WINDOW + Duration::from_secs(1)).await;
    let status = exporter.status().await;
    assert_eq!(status["fallback"]["exports"], 2, "{status}");
    let written = exporter
        .log()
        .lines()
        .filter(|l| l.contains("exported the fallback config"))
        .count();
    assert_eq!(written, 2, "{}", exporter.log());
}

/// A broken, tampered, foreign-version or missing fallback object is refused with a log line
/// naming why; the node runs the next source (empty: 404) and keeps dialling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_fallback_object_is_refused_with_a_clear_log_and_the_next_source_is_used() {
    let upstream = Upstream::start("good").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let storage = Storage::file();
    let exporter = exporter(cp.cluster_endpoint(), &creds, &storage, "1s").await;
    cp.create_service_and_route(&cp_id, "good", upstream.addr, "/good")
        .await;
    let hash = cp.expected_hash(&cp_id).await;
    wait_for_status(&exporter, "the export", |s| {
        s["fallback"]["last_export_hash"] == hash.as_str()
    })
    .await;
    drop(exporter);
    cp.kill();
    let Storage::File { dir } = &storage else {
        unreachable!("file storage")
    };
    let path = object_path(dir.path());
    let good = std::fs::read_to_string(&path).expect("the exported object");

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        (
            "tampered",
            Some(good.replace("/good", "/evil")),
            "the config hashes to",
        ),
        (
            "truncated",
            Some(good[..good.len() / 2].to_string()),
            "does not parse",
        ),
        (
            "another version",
            Some(good.replace(
                &format!("\"fleetgate_version\":\"{}\"", env!("CARGO_PKG_VERSION")),
                "\"fleetgate_version\":\"0.99.0\"",
            )),
            "written by version 0.99.0",
        ),
        ("missing", None, "there is no fallback object"),
    ];
    for (case, content, reason) in cases {
        match &content {
            Some(text) => std::fs::write(&path, text).expect("write the bad object"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        let newcomer = node(
            cp.cluster_endpoint(),
            &creds,
            Some(&storage),
            &[("cluster_fallback_config_import", "on")],
        )
        .await;
        wait_for_status(&newcomer, &format!("{case}: the import to fail"), |s| {
            s["fallback"]["import"] == "failed"
        })
        .await;
        let status = newcomer.status().await;
        let error = status["fallback"]["import_error"].as_str().unwrap_or("");
        assert!(error.contains(reason), "{case}: {status}");
        assert_eq!(status["config_source"], "empty", "{case}: {status}");
        assert_eq!(status["ready"], true, "{case}: {status}");
        assert_eq!(newcomer.get("/good/x").await.0, 404, "{case}");
        let log = newcomer.log();
        assert!(
            log.lines()
                .any(|l| l.contains("could not import the fallback config") && l.contains(reason)),
            "{case}: {log}"
        );
    }
}

/// The manual recovery path: a cache file copied from a healthy node starts a node that has
/// never reached the control plane; the next control-plane session replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_copied_from_a_healthy_node_starts_a_disconnected_node() {
    let upstream = Upstream::start("copied").await;
    let mut cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    let creds = cp.dp_credentials(&cp_id).await;
    let healthy = node(cp.cluster_endpoint(), &creds, None, &[]).await;
    cp.create_service_and_route(&cp_id, "copied", upstream.addr, "/copied")
        .await;
    let hash = cp.expected_hash(&cp_id).await;
    healthy.wait_for_cache(&hash, WAIT).await;

    cp.kill();
    let mut stranded = node(cp.cluster_endpoint(), &creds, None, &[]).await;
    assert_eq!(stranded.get("/copied/x").await.0, 404);
    std::fs::copy(
        healthy.prefix().join("config.cache"),
        stranded.prefix().join("config.cache"),
    )
    .expect("copy the cache file");
    stranded.restart().await;
    let status = stranded.status().await;
    assert_eq!(status["config_source"], "cache", "{status}");
    assert_eq!(status["config_hash"], hash.as_str(), "{status}");
    let (code, body) = stranded.get("/copied/x").await;
    assert_eq!(code, 200, "{body}");

    cp.start_again().await;
    cp.create_service_and_route(&cp_id, "after", upstream.addr, "/after")
        .await;
    let latest = cp.expected_hash(&cp_id).await;
    stranded.wait_for_hash(&latest, WAIT).await;
    stranded.wait_for_cache(&latest, WAIT).await;
    assert_eq!(stranded.status().await["config_source"], "cp");
}
