//! Fallback storage against real S3 semantics (moto) and a real directory: several nodes
//! exporting at once never leave a torn object or an older config over a newer one.

use std::sync::Arc;

use fleetgate_dataplane::fallback::{
    encode, verify, ExportedConfig, FallbackStorage, Published, StorageUrl,
};
use fleetgate_e2e::Moto;
use uuid::Uuid;

const BUCKET: &str = "fleetgate-fallback";
const MAX: usize = 1 << 20;

/// Config version `version` of one control plane: a distinct config per version.
fn config(control_plane: Uuid, version: i64) -> ExportedConfig {
    let yaml = format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s{version}\n    url: http://127.0.0.1:9/\n    routes: [{{name: r{version}, paths: [/v{version}]}}]\n"
    );
    let parsed = fleetgate_config::declarative::import(&yaml).expect("a valid config");
    let (canonical_json, hash) = parsed.canonical_json_and_hash();
    ExportedConfig {
        control_plane_id: Some(control_plane),
        version,
        hash: hash.to_string(),
        canonical_json,
    }
}

/// Rounds of 8 nodes publishing versions in scrambled order at the same instant; after each
/// round the object verifies and holds the round's newest version.
async fn concurrent_exporters_keep_the_newest(storage: Arc<FallbackStorage>) {
    let control_plane = Uuid::new_v4();
    for round in 0..4i64 {
        let versions: Vec<i64> = [3, 7, 1, 8, 5, 2, 6, 4]
            .iter()
            .map(|v| round * 10 + v)
            .collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(versions.len()));
        let mut nodes = Vec::new();
        for version in versions {
            let storage = storage.clone();
            let barrier = barrier.clone();
            nodes.push(tokio::spawn(async move {
                let ours = config(control_plane, version);
                let document = encode(&ours, Uuid::new_v4(), 0).expect("encode");
                barrier.wait().await;
                storage.publish(&ours, document, MAX).await
            }));
        }
        for node in nodes {
            node.await
                .expect("the node task")
                .expect("publish never fails on conflicts alone");
        }
        let stored = storage.read(MAX).await.expect("read").expect("an object");
        let document = verify(&stored, MAX).expect("the object verifies");
        assert_eq!(
            document.header.config_version,
            round * 10 + 8,
            "round {round}"
        );
    }
    // A late node with an old version leaves the newer object alone.
    let old = config(control_plane, 2);
    let outcome = storage
        .publish(&old, encode(&old, Uuid::new_v4(), 0).expect("encode"), MAX)
        .await
        .expect("publish");
    assert_eq!(outcome, Published::NewerPresent(38));
    let newest = config(control_plane, 38);
    let outcome = storage
        .publish(
            &newest,
            encode(&newest, Uuid::new_v4(), 0).expect("encode"),
            MAX,
        )
        .await
        .expect("publish");
    assert_eq!(outcome, Published::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_concurrent_exporters_keep_the_newest_config() {
    let moto = Moto::start().await;
    moto.create_bucket(BUCKET).await;
    // The storage reads the standard AWS environment, as a node does; this test binary
    // runs nothing else that reads it.
    for (key, value) in moto.aws_env() {
        std::env::set_var(key, value);
    }
    let url = StorageUrl::parse(&format!("s3://{BUCKET}/concurrent")).expect("url");
    let storage = Arc::new(FallbackStorage::open(&url).expect("open"));
    concurrent_exporters_keep_the_newest(storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_concurrent_exporters_keep_the_newest_config() {
    let dir = tempfile::tempdir().expect("dir");
    let url = StorageUrl::parse(&format!("file://{}", dir.path().display())).expect("url");
    let storage = Arc::new(FallbackStorage::open(&url).expect("open"));
    concurrent_exporters_keep_the_newest(storage).await;
}
