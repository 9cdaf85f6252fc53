//! The `fleetgate` binary as a user runs it: tokens are printed once, bad input is one line
//! on stderr and a non-zero exit (quickstart: tests/tests/quickstart.rs, with its nodes).

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
