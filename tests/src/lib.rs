//! Test support for whole-system tests: the real `fleetgate` and `fleetgate-dp` binaries as
//! child processes, a real upstream, a TCP relay that can cut the cluster link, a private moto
//! server (AWS EC2/S3) per test and EC2 read-back helpers ([`ec2`]), and a bounded
//! `eventually`. The binaries come from the same cargo target dir as the test (nextest and
//! `cargo test --workspace` build them first).

mod control_plane;
mod data_plane;
pub mod ec2;
mod moto;
mod relay;
mod upstream;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use control_plane::{ControlPlaneProcess, DpCredentials, JoinCredentials};
pub use data_plane::{DataPlaneOptions, DataPlaneProcess};
pub use moto::{Moto, MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY};
pub use relay::Relay;
pub use upstream::Upstream;

/// Polls `check` every 25 ms until it gives `Some`, at most `timeout`; then panics naming
/// `what`, so a failed wait says what never happened.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A port on 127.0.0.1 that was free a moment ago. The child process binds it; a clash
/// (another test grabbing it in between) shows up as a start-up failure, not a wrong answer.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("reserve a loopback port")
}

/// Path of a workspace binary next to the running test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("locate the test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// An HTTP client that never reuses connections, so each request sees the current state.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build an HTTP client")
}

/// Starts `cmd` with stdin closed and stdout/stderr appended to `log`, then waits (30 s at
/// most) until `ready_url` answers 2xx; `what` names the process in a timeout.
pub async fn spawn_logged(
    cmd: &mut std::process::Command,
    log: &std::path::Path,
    ready_url: &str,
    what: &str,
) -> std::process::Child {
    match try_spawn_logged(cmd, log, ready_url, what).await {
        Ok(child) => child,
        Err(log) => panic!("{what} exited before answering {ready_url}; its log:\n{log}"),
    }
}

/// [`spawn_logged`], except that a process that exits before it is ready is reported with
/// its log (`Err`) instead of being waited for until the timeout: so a caller can tell a
/// port taken in the meantime (see [`free_port`]) from a real failure, and retry.
pub async fn try_spawn_logged(
    cmd: &mut std::process::Command,
    log: &std::path::Path,
    ready_url: &str,
    what: &str,
) -> Result<std::process::Child, String> {
    let log_path = log.to_path_buf();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open the log of {what}: {e}"));
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let client = http();
    let outcome = eventually(
        Duration::from_secs(30),
        &format!("{what} to answer {ready_url}"),
        || {
            let exited = child.try_wait().ok().flatten().is_some();
            let request = client.get(ready_url);
            async move {
                if exited {
                    return Some(false);
                }
                request
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| true)
            }
        },
    )
    .await;
    if outcome {
        Ok(child)
    } else {
        Err(std::fs::read_to_string(&log_path).unwrap_or_default())
    }
}

/// Sends a SIGKILL-like stop: used where a test wants the crash, not a clean shutdown.
pub fn kill_hard(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}
