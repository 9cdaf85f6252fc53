//! The config cache and the start-up order: round trip, every kind of damage detected and
//! moved aside, no torn cache after a kill -9 mid-write, cache > declarative > empty, and
//! license enforcement (expired -> 503, renewed -> 200 without a restart).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleetgate_config::{declarative, GatewayConfig};
use fleetgate_dataplane::cache::{self, CacheLoad, CachedConfig};
use fleetgate_dataplane::license::now_unix;
use fleetgate_dataplane::ConfigSource;
use fleetgate_protocol::{LicenseClaims, LicenseSigner};
use serde_json::Value;
use support::{client, echo_upstream_named, Dp};

fn yaml_for(upstream: std::net::SocketAddr, path: &str, services: usize) -> String {
    let mut yaml = String::from("_format_version: \"3.0\"\nservices:\n");
    for i in 0..services {
        let p = if i == 0 {
            path.to_string()
        } else {
            format!("{path}-{i}")
        };
        yaml.push_str(&format!(
            "  - name: svc{i}\n    url: http://{upstream}\n    routes: [{{name: r{i}, paths: [{p}]}}]\n"
        ));
    }
    yaml
}

fn config_for(upstream: std::net::SocketAddr, path: &str, services: usize) -> GatewayConfig {
    declarative::import(&yaml_for(upstream, path, services)).expect("config")
}

fn cached(config: &GatewayConfig, version: i64) -> CachedConfig {
    let (canonical_json, hash) = config.canonical_json_and_hash();
    CachedConfig {
        version,
        hash: hash.to_string(),
        canonical_json,
    }
}

fn corrupt_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("config.cache.corrupt-")
        })
        .count()
}

#[test]
fn cache_round_trips_with_mode_0600() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(matches!(cache::load(dir.path()), CacheLoad::Missing));
    let config = config_for("127.0.0.1:9".parse().expect("addr"), "/a", 3);
    let written = cached(&config, 42);
    cache::write(dir.path(), &written).expect("write");
    let CacheLoad::Valid(valid) = cache::load(dir.path()) else {
        panic!("cache should be valid");
    };
    assert_eq!(valid.version, 42);
    assert_eq!(valid.hash, written.hash);
    assert_eq!(valid.config.hash().to_string(), written.hash);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(cache::CACHE_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The file is portable: a copy in another prefix loads the same.
    let other = tempfile::tempdir().expect("dir");
    std::fs::copy(
        dir.path().join(cache::CACHE_FILE),
        other.path().join(cache::CACHE_FILE),
    )
    .expect("copy");
    assert!(matches!(cache::load(other.path()), CacheLoad::Valid(_)));
}

/// Writes `bytes` as the cache and expects it to be refused and moved aside.
fn assert_corrupt(dir: &Path, bytes: &[u8], what: &str) {
    std::fs::write(dir.join(cache::CACHE_FILE), bytes).expect("write");
    let before = corrupt_files(dir);
    match cache::load(dir) {
        CacheLoad::Corrupt { moved_to, reason } => {
            assert!(moved_to.exists(), "{what}: moved file exists");
            assert!(!reason.is_empty());
        }
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    }
    assert!(
        !dir.join(cache::CACHE_FILE).exists(),
        "{what}: original removed"
    );
    // Same-second renames overwrite each other, so count at least one.
    assert!(corrupt_files(dir) >= before.max(1), "{what}");
    assert!(
        matches!(cache::load(dir), CacheLoad::Missing),
        "{what}: next load"
    );
}

#[test]
fn truncated_or_flipped_caches_are_refused_and_moved_aside() {
    let dir = tempfile::tempdir().expect("dir");
    let config = config_for("127.0.0.1:9".parse().expect("addr"), "/a", 20);
    cache::write(dir.path(), &cached(&config, 7)).expect("write");
    let good = std::fs::read(dir.path().join(cache::CACHE_FILE)).expect("read");
    let newline = good.iter().position(|b| *b == b'\n').expect("header line");
    // Every length class: empty, inside the header, just before/at/after the newline,
    // inside the body, one byte short.
    let lengths = [
        0,
        1,
        newline / 2,
        newline - 1,
        newline,
        newline + 1,
        newline + 2,
        (newline + good.len()) / 2,
        good.len() - 1,
    ];
    for len in lengths {
        assert_corrupt(dir.path(), &good[..len], &format!("truncated to {len}"));
    }
    // A flipped bit anywhere in the body.
    for at in [
        newline + 1,
        newline + 10,
        (newline + good.len()) / 2,
        good.len() - 1,
    ] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert_corrupt(dir.path(), &bad, &format!("body byte {at} flipped"));
    }
    // A flipped bit anywhere in the header is refused, except inside the version number,
    // which no checksum covers (the format fixes what the header holds): then the config
    // itself must still be exactly the one written.
    let header = std::str::from_utf8(&good[..newline]).expect("utf8");
    let version_at = header.find("\"version\":").expect("version field") + "\"version\":".len();
    for at in 0..newline {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        if at == version_at {
            std::fs::write(dir.path().join(cache::CACHE_FILE), &bad).expect("write");
            match cache::load(dir.path()) {
                CacheLoad::Valid(valid) => assert_eq!(valid.hash, config.hash().to_string()),
                CacheLoad::Corrupt { .. } => {}
                CacheLoad::Missing => panic!("file was written"),
            }
            let _ = std::fs::remove_file(dir.path().join(cache::CACHE_FILE));
            continue;
        }
        assert_corrupt(dir.path(), &bad, &format!("header byte {at} flipped"));
    }
    // A body that is intact but holds another config than the header's hash.
    let other = config_for("127.0.0.1:9".parse().expect("addr"), "/b", 1);
    let mut lie = cached(&other, 1);
    lie.hash = config.hash().to_string();
    cache::write(dir.path(), &lie).expect("write");
    match cache::load(dir.path()) {
        CacheLoad::Corrupt { reason, .. } => assert!(reason.contains("hashes to"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

const WRITER_ENV: &str = "FLEETGATE_TEST_CACHE_WRITER_DIR";
const INPUT_ENV: &str = "FLEETGATE_TEST_CACHE_WRITER_INPUT";

/// Not a test on its own: the writer process of `no_torn_cache_after_kill_9_mid_write`.
/// Writes the two prepared configs alternately, in a loop, until killed.
#[test]
fn cache_writer_child() {
    let (Ok(dir), Ok(input)) = (std::env::var(WRITER_ENV), std::env::var(INPUT_ENV)) else {
        return;
    };
    let input = Path::new(&input);
    let read = |name: &str, version: i64| CachedConfig {
        version,
        hash: std::fs::read_to_string(input.join(format!("{name}.hash"))).expect("hash"),
        canonical_json: std::fs::read(input.join(format!("{name}.json"))).expect("json"),
    };
    let (a, b) = (read("a", 1), read("b", 2));
    println!("WRITING");
    for i in 0u64.. {
        cache::write(Path::new(&dir), if i % 2 == 0 { &a } else { &b }).expect("write");
    }
}

#[test]
fn no_torn_cache_after_kill_9_mid_write() {
    use rand::Rng;
    let dir = tempfile::tempdir().expect("dir");
    // Prepared once here so each writer process starts writing at once.
    let input = tempfile::tempdir().expect("dir");
    for (name, path, services) in [("a", "/a", 100), ("b", "/b", 80)] {
        let c = cached(
            &config_for("127.0.0.1:9".parse().expect("addr"), path, services),
            0,
        );
        std::fs::write(input.path().join(format!("{name}.hash")), &c.hash).expect("hash");
        std::fs::write(input.path().join(format!("{name}.json")), &c.canonical_json).expect("json");
    }
    // Kill times spread over about three writes, so kills land before, inside and between
    // writes whatever this machine's speed.
    let timing = tempfile::tempdir().expect("dir");
    let c = cached(
        &config_for("127.0.0.1:9".parse().expect("addr"), "/a", 100),
        0,
    );
    let t = Instant::now();
    for _ in 0..10 {
        cache::write(timing.path(), &c).expect("write");
    }
    let window = u64::try_from((t.elapsed() * 3 / 10).as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let exe = std::env::current_exe().expect("test binary");
    let started = Instant::now();
    let (mut valid, mut missing) = (0, 0);
    for round in 0..1000 {
        let mut child = Command::new(&exe)
            .args([
                "cache_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, dir.path())
            .env(INPUT_ENV, input.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.map(|l| l.contains("WRITING")).unwrap_or(false));
        assert!(ready, "writer {round} did not start");
        std::thread::sleep(Duration::from_micros(
            rand::thread_rng().gen_range(0..window),
        ));
        child.kill().expect("kill -9");
        let _ = child.wait();
        match cache::load(dir.path()) {
            CacheLoad::Valid(_) => valid += 1,
            CacheLoad::Missing => missing += 1,
            CacheLoad::Corrupt { reason, .. } => panic!("torn cache after kill {round}: {reason}"),
        }
    }
    assert_eq!(valid + missing, 1000);
    assert!(valid > 0, "some writes must complete ({missing} missing)");
    eprintln!(
        "1000 kills within {window} us of the start: {valid} valid, {missing} missing, {:?}",
        started.elapsed()
    );
}

async fn get(url: &str) -> (u16, Value) {
    let resp = client().get(url).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn startup_prefers_a_valid_cache_then_declarative_then_empty() {
    let cached_up = echo_upstream_named("cached").await;
    let declared_up = echo_upstream_named("declared").await;
    let declared = yaml_for(declared_up, "/d", 1);

    // A valid cache beats declarative_config, and SIGHUP does not replace it.
    let dir = tempfile::tempdir().expect("dir");
    cache::write(dir.path(), &cached(&config_for(cached_up, "/c", 1), 9)).expect("write");
    let dp = Dp::start_in(dir, Some(&declared), &[]).await;
    assert_eq!(dp.dp.gateway.current().source, ConfigSource::Cache);
    let (status, body) = get(&format!("{}/c", dp.base)).await;
    assert_eq!((status, body["upstream"].as_str()), (200, Some("cached")));
    let (_, st) = get(&dp.status_url("/status")).await;
    assert_eq!(st["config_source"], "cache");
    assert_eq!(st["config_version"], 9);
    assert_eq!(st["connected"], false);
    assert_eq!(st["telemetry"]["dropped"], 0);
    dp.dp.reload().expect("reload");
    assert_eq!(dp.dp.gateway.current().source, ConfigSource::Cache);
    dp.dp.shutdown().await;

    // A corrupt cache is moved aside and declarative_config runs.
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join(cache::CACHE_FILE),
        b"{\"format\":1}\ngarbage",
    )
    .expect("write");
    let dp = Dp::start_in(dir, Some(&declared), &[]).await;
    assert_eq!(dp.dp.gateway.current().source, ConfigSource::Declarative);
    assert_eq!(corrupt_files(dp.dir.path()), 1);
    let (status, body) = get(&format!("{}/d", dp.base)).await;
    assert_eq!((status, body["upstream"].as_str()), (200, Some("declared")));
    dp.dp.shutdown().await;

    // Nothing at all: empty, 404 with a clear body.
    let dp = Dp::start_in(tempfile::tempdir().expect("dir"), None, &[]).await;
    assert_eq!(dp.dp.gateway.current().source, ConfigSource::Empty);
    let (status, body) = get(&format!("{}/anything", dp.base)).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "no Route matched with those values");
    dp.dp.shutdown().await;
}

fn license(expires_at: i64) -> LicenseClaims {
    LicenseClaims {
        license_id: uuid::Uuid::new_v4(),
        organization_id: uuid::Uuid::new_v4(),
        issued_at: now_unix() - 86_400,
        expires_at,
    }
}

#[tokio::test]
async fn an_expired_license_stops_proxying_until_renewed() {
    let up = echo_upstream_named("up").await;
    let signer = LicenseSigner::generate();
    // The stored license (expired) is loaded at start with the cache.
    let dir = tempfile::tempdir().expect("dir");
    let expired_at = now_unix() - 60;
    cache::write_license(dir.path(), &signer.sign(&license(expired_at))).expect("license");
    let dp = Dp::start_in(dir, Some(&yaml_for(up, "/x", 1)), &[]).await;
    let (status, body) = get(&format!("{}/x", dp.base)).await;
    assert_eq!(status, 503);
    let expected = format!(
        "the Fleetgate license expired at {}; renew it in the control plane",
        fleetgate_dataplane::license::rfc3339(expired_at)
    );
    assert_eq!(body["message"], expected.as_str());
    let (_, st) = get(&dp.status_url("/status")).await;
    assert_eq!(st["license"]["expired"], true);
    assert_eq!(st["license"]["reason"], expected.as_str());

    // A renewed license resumes traffic without a restart.
    dp.dp.gateway.license.set(license(now_unix() + 3600));
    let (status, body) = get(&format!("{}/x", dp.base)).await;
    assert_eq!((status, body["upstream"].as_str()), (200, Some("up")));
    let (_, st) = get(&dp.status_url("/status")).await;
    assert_eq!(st["license"]["expired"], false);
    dp.dp.shutdown().await;

    // A standalone node without any license proxies normally.
    let dp = Dp::start(&yaml_for(up, "/x", 1)).await;
    assert_eq!(get(&format!("{}/x", dp.base)).await.0, 200);
    dp.dp.shutdown().await;
}
