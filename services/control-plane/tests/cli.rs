//! The `fleetgate` binary as a user runs it: quickstart's printed commands work, tokens are
//! printed once, bad input is one line on stderr and a non-zero exit.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fleetgate");

fn fleetgate() -> Command {
    let mut cmd = Command::new(BIN);
    // Make sure no setting leaks in from the environment of whoever runs the tests.
    for var in [
        "FLEETGATE_DATA_DIR",
        "FLEETGATE_DATABASE_URL",
        "FLEETGATE_API_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn token_create_prints_one_token_and_bad_input_fails_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = fleetgate()
        .args([
            "token",
            "create",
            "--org",
            "acme",
            "--role",
            "viewer",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .expect("run fleetgate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("fgt_"));

    let bad_role = fleetgate()
        .args([
            "token",
            "create",
            "--org",
            "acme",
            "--role",
            "root",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .expect("run fleetgate");
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("--role"));

    let bad_db = fleetgate()
        .args([
            "serve",
            "--database-url",
            "mysql://u:hunter2@db/x",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .expect("run fleetgate");
    assert!(!bad_db.status.success());
    let stderr = String::from_utf8_lossy(&bad_db.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("unsupported database URL scheme"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "a password reached the error message"
    );

    let bad_listen = fleetgate()
        .args(["serve", "--api-listen", "not-an-address"])
        .output()
        .await
        .expect("run fleetgate");
    assert!(!bad_listen.status.success());
    assert!(String::from_utf8_lossy(&bad_listen.stderr).contains("--api-listen"));
}

#[tokio::test]
async fn quickstart_prints_curl_lines_that_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = fleetgate()
        .args(["quickstart", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start quickstart");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
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
    let export = printed
        .iter()
        .find(|l| l.starts_with("export FLEETGATE_TOKEN="))
        .expect("an export line");
    let curls: Vec<&String> = printed.iter().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 5, "{printed:#?}");
    for curl in curls {
        let script = format!("set -e\n{export}\n{} --fail-with-body", curl);
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
    }
    // The token was saved, owner-only.
    let saved = dir.path().join("admin-token");
    assert!(export.contains(std::fs::read_to_string(&saved).expect("token file").trim()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "token file is readable by others");
    }
    let pid = child.id().expect("pid");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("quickstart stops on SIGTERM")
        .expect("wait");
    assert!(status.success());
}
