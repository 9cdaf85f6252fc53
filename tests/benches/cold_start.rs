//! Data-plane cold start from its cache: a node whose prefix holds a 10,000-service /
//! 10,000-route cache is started as a process (the release `fleetgate-dp` binary next to this
//! bench), and the clock runs from the spawn until the first request proxied through one of
//! those routes answers 200. Its control plane is unreachable (a closed port), as in an
//! outage: the node must serve from the cache alone.
//!
//!   scripts/bench-cluster   (builds the binary, then runs this and the fan-out bench)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleetgate_config::{GatewayConfig, Route, Service};
use fleetgate_dataplane::cache::{self, CachedConfig};
use fleetgate_e2e::{binary, free_port, Upstream};

fn config(n: usize, upstream: std::net::SocketAddr) -> GatewayConfig {
    let mut config = GatewayConfig::default();
    for i in 0..n {
        let service_id = uuid::Uuid::from_u128(1 + i as u128);
        config.services.push(Service {
            id: service_id,
            name: Some(format!("svc-{i}")),
            host: upstream.ip().to_string(),
            port: upstream.port(),
            ..Service::default()
        });
        config.routes.push(Route {
            id: uuid::Uuid::from_u128(1_000_000 + i as u128),
            name: Some(format!("route-{i}")),
            paths: Some(vec![format!("/svc/{i}")]),
            service: Some(fleetgate_config::EntityRef { id: service_id }),
            ..Route::default()
        });
    }
    config.sort_canonical();
    config
}

fn main() -> anyhow::Result<()> {
    let runs: usize = if std::env::args().any(|a| a == "--bench") {
        10
    } else {
        1
    };
    let rt = tokio::runtime::Runtime::new()?;
    let upstream = rt.block_on(Upstream::start("cold"));
    let dir = tempfile::tempdir()?;
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(&prefix)?;
    let config = config(10_000, upstream.addr);
    config.validate().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (canonical_json, hash) = config.canonical_json_and_hash();
    cache::write(
        &prefix,
        &CachedConfig {
            version: 1,
            hash: hash.to_string(),
            canonical_json,
        },
    )?;
    let cache_bytes = std::fs::metadata(prefix.join("config.cache"))?.len();
    // Certificates are needed to dial; the dial fails (nothing listens), which is the point.
    let creds = rt.block_on(make_credentials(dir.path()))?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let proxy = free_port();
        let status = free_port();
        let conf = dir.path().join("dp.toml");
        std::fs::write(
            &conf,
            format!(
                "prefix = \"{}\"\nproxy_listen = \"{proxy}\"\nstatus_listen = \"{status}\"\nproxy_workers = \"1\"\ncluster_control_plane = \"{}\"\ncluster_cert = \"{}\"\ncluster_cert_key = \"{}\"\ncluster_ca_cert = \"{}\"\n",
                prefix.display(),
                free_port(),
                creds.0.display(),
                creds.1.display(),
                creds.2.display()
            ),
        )?;
        let started = Instant::now();
        let mut child = Command::new(binary("fleetgate-dp"))
            .arg("--conf")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let url = format!("http://{proxy}/svc/9999/x");
        let elapsed = rt.block_on(async {
            let client = reqwest::Client::new();
            loop {
                if let Ok(r) = client.get(&url).send().await {
                    if r.status() == 200 {
                        return Ok(started.elapsed());
                    }
                }
                if started.elapsed() > Duration::from_secs(30) {
                    anyhow::bail!("no proxied answer within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let _ = child.kill();
        let _ = child.wait();
        times.push(elapsed?);
    }
    times.sort();
    println!(
        "cold start from a {cache_bytes}-byte cache (10k services + 10k routes) to the first proxied 200: runs={} min={:?} p50={:?} max={:?}",
        times.len(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}

/// A throwaway CA and client certificate, written as the three PEM files a node needs.
async fn make_credentials(
    dir: &std::path::Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["dp".to_string()])?.self_signed(&key)?;
    let paths = (dir.join("dp.crt"), dir.join("dp.key"), dir.join("ca.crt"));
    std::fs::write(&paths.0, cert.pem())?;
    std::fs::write(&paths.1, key.serialize_pem())?;
    std::fs::write(&paths.2, cert.pem())?;
    Ok(paths)
}
