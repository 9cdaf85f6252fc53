//! Joining with a token end to end: a real `fleetgate-dp` given only `cluster_join_token`
//! (and the CA) enrols against a real `fleetgate serve`, connects and proxies; a restart
//! reuses the stored certificate; a second node with the same token exits naming why.

use std::time::Duration;

use fleetgate_e2e::{
    eventually, ControlPlaneProcess, DataPlaneOptions, DataPlaneProcess, Upstream,
};

const WAIT: Duration = Duration::from_secs(20);

fn fast_cluster() -> Vec<(String, String)> {
    vec![
        ("cluster_ping_interval".into(), "1s".into()),
        ("cluster_reconnect_delay".into(), "200ms..500ms".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_only_a_join_token_enrols_once_and_the_token_cannot_be_reused() {
    let upstream = Upstream::start("one").await;
    let cp = ControlPlaneProcess::start(&["--cluster-ping-interval", "1s"]).await;
    let cp_id = cp.create_control_plane("prod", "pinned_client_certs").await;
    cp.create_service_and_route(&cp_id, "one", upstream.addr, "/one")
        .await;
    let join = cp.join_credentials(&cp_id).await;
    let options = DataPlaneOptions {
        control_plane: Some(cp.cluster_endpoint()),
        join: Some(join.clone()),
        server_name: Some("localhost".into()),
        extra: fast_cluster(),
        ..Default::default()
    };

    let mut dp = DataPlaneProcess::start(options.clone()).await;
    let expected = cp.expected_hash(&cp_id).await;
    dp.wait_for_hash(&expected, WAIT).await;
    let (status, body) = dp.get("/one/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"upstream\":\"one\""), "{body}");
    let node_id = dp.status().await["node_id"].clone();
    eventually(WAIT, "the enrolled node to show in /nodes", || async {
        cp.nodes(&cp_id)
            .await
            .into_iter()
            .find(|n| n["id"] == node_id && n["connected"] == true)
    })
    .await;

    // The node's key stayed on the node: owner-only, next to the certificate it got.
    let key = dp.prefix().join("cluster.key");
    let cert = dp.prefix().join("cluster.crt");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("cluster.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cert_before = std::fs::read_to_string(&cert).expect("cluster.crt");
    assert!(!dp.log().contains(&join.token), "the node logged its token");

    // A restart uses the stored certificate: the spent token is not needed again.
    dp.restart().await;
    eventually(WAIT, "the restarted node to connect", || async {
        (dp.status().await["connected"] == true).then_some(())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&cert).expect("cluster.crt"),
        cert_before,
        "the restart enrolled again"
    );
    assert!(
        dp.log().contains("cluster_join_token is not needed again"),
        "{}",
        dp.log()
    );

    // A second node with the same token exits non-zero, saying why in one line.
    let (code, log) = DataPlaneProcess::run_to_exit(options, WAIT).await;
    assert_eq!(code, Some(1), "{log}");
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.contains("cluster_join_token") && last.contains("already used"),
        "{log}"
    );
    assert!(!log.contains(&join.token), "the node logged its token");
    let refused = cp.log();
    assert!(
        refused.contains("data plane enrolment refused") && refused.contains("already used"),
        "{refused}"
    );
    assert!(
        !refused.contains(&join.token),
        "the control plane logged a token"
    );
}
