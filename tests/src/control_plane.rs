//! `fleetgate serve` as a child process over SQLite, or over a fresh PostgreSQL database when
//! `FLEETGATE_TEST_DATABASE_URL` names a server (as `scripts/test` does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::{json, Value};

use crate::{binary, free_port, http, kill_hard, spawn_logged};

/// Env var naming a PostgreSQL server the tests may create databases on.
pub const PG_ENV: &str = "FLEETGATE_TEST_DATABASE_URL";

/// A control plane process, restartable on the same data dir, database and ports.
pub struct ControlPlaneProcess {
    /// REST API address.
    pub api: SocketAddr,
    /// Cluster (mTLS) listener address.
    pub cluster: SocketAddr,
    /// Admin token of the `e2e` organisation.
    pub token: String,
    /// Operator token (licenses).
    pub operator_token: String,
    data_dir: PathBuf,
    database_url: Option<String>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// What a data plane needs to enrol with a join token instead of a certificate.
#[derive(Debug, Clone)]
pub struct JoinCredentials {
    /// The join token (`cluster_join_token`).
    pub token: String,
    /// The CA that signs the control plane's cluster certificate.
    pub ca: String,
}

/// What a data plane needs to join a control plane.
#[derive(Debug, Clone)]
pub struct DpCredentials {
    /// Control plane id.
    pub control_plane_id: String,
    /// Client certificate PEM.
    pub cert: String,
    /// Its private key PEM.
    pub key: String,
    /// The CA that signs the control plane's cluster certificate.
    pub ca: String,
    /// Id of the registered dp-client-certificate.
    pub cert_id: String,
}

async fn fresh_database() -> Option<String> {
    let admin_url = std::env::var(PG_ENV).ok().filter(|u| !u.is_empty())?;
    use sqlx::Connection;
    let name = format!("fg_e2e_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    Some(format!("{base}/{name}"))
}

impl ControlPlaneProcess {
    /// Starts a control plane with extra `serve` arguments (e.g. a short ping interval).
    pub async fn start(extra_args: &[&str]) -> Self {
        Self::start_with_env(extra_args, Vec::new()).await
    }

    /// Starts a control plane with extra `serve` arguments and environment variables (e.g.
    /// [`Moto::aws_env`](crate::Moto::aws_env) for `--cloud-provider aws`).
    pub async fn start_with_env(extra_args: &[&str], env: Vec<(&str, String)>) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let data_dir = dir.path().join("data");
        let database_url = fresh_database().await;
        let token = issue_token(&data_dir, database_url.as_deref(), "admin");
        let operator_token = issue_token(&data_dir, database_url.as_deref(), "operator");
        let mut cp = Self {
            api: free_port(),
            cluster: free_port(),
            token,
            operator_token,
            data_dir,
            database_url,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            child: None,
            _dir: dir,
        };
        cp.launch().await;
        cp
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.join("cp.log")
    }

    /// Everything the process logged so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn launch(&mut self) {
        let mut cmd = Command::new(binary("fleetgate"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api-listen")
            .arg(self.api.to_string())
            .arg("--cluster-listen")
            .arg(self.cluster.to_string())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("FLEETGATE_DATABASE_URL");
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        let ready = format!("http://{}/healthz", self.api);
        let log = self.log_path();
        self.child = Some(spawn_logged(&mut cmd, &log, &ready, "the control plane").await);
    }

    /// SIGKILL: the crash case.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_hard(&mut child);
        }
    }

    /// Starts it again on the same data dir, database and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Starts it again after [`kill`](Self::kill).
    pub async fn start_again(&mut self) {
        self.launch().await;
    }

    /// `https://…`-less `host:port` of the cluster listener.
    pub fn cluster_endpoint(&self) -> String {
        self.cluster.to_string()
    }

    /// A REST call as the `e2e` admin; returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// A REST call with a given token.
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http()
            .request(method, format!("http://{}{path}", self.api))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("call the control plane");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Asserts a 2xx and returns the body.
    pub async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {body}"
        );
        body
    }

    /// Creates a control plane and returns its id.
    pub async fn create_control_plane(&self, name: &str, auth_type: &str) -> String {
        let body = self
            .ok(
                reqwest::Method::POST,
                "/v2/control-planes",
                Some(json!({"name": name, "auth_type": auth_type})),
            )
            .await;
        body["id"].as_str().expect("control plane id").to_string()
    }

    /// Generates a client certificate for a control plane and returns all a DP needs.
    pub async fn dp_credentials(&self, control_plane_id: &str) -> DpCredentials {
        let generated = self
            .ok(
                reqwest::Method::POST,
                &format!("/v2/control-planes/{control_plane_id}/dp-client-certificates/generate"),
                Some(json!({})),
            )
            .await;
        let cp = self
            .ok(
                reqwest::Method::GET,
                &format!("/v2/control-planes/{control_plane_id}"),
                None,
            )
            .await;
        DpCredentials {
            control_plane_id: control_plane_id.to_string(),
            cert: generated["item"]["cert"]
                .as_str()
                .expect("cert")
                .to_string(),
            key: generated["key"].as_str().expect("key").to_string(),
            ca: cp["config"]["cluster_ca_cert"]
                .as_str()
                .expect("cluster_ca_cert")
                .to_string(),
            cert_id: generated["item"]["id"]
                .as_str()
                .expect("cert id")
                .to_string(),
        }
    }

    /// Mints a join token for a control plane (`POST …/dp-join-tokens`).
    pub async fn join_credentials(&self, control_plane_id: &str) -> JoinCredentials {
        let created = self
            .ok(
                reqwest::Method::POST,
                &format!("/v2/control-planes/{control_plane_id}/dp-join-tokens"),
                Some(json!({"ttl_seconds": 600})),
            )
            .await;
        let cp = self
            .ok(
                reqwest::Method::GET,
                &format!("/v2/control-planes/{control_plane_id}"),
                None,
            )
            .await;
        JoinCredentials {
            token: created["token"].as_str().expect("token").to_string(),
            ca: cp["config"]["cluster_ca_cert"]
                .as_str()
                .expect("cluster_ca_cert")
                .to_string(),
        }
    }

    /// Creates a service pointing at `upstream` with one route on `path`.
    pub async fn create_service_and_route(
        &self,
        control_plane_id: &str,
        name: &str,
        upstream: SocketAddr,
        path: &str,
    ) {
        let base = format!("/v2/control-planes/{control_plane_id}/core-entities");
        let service = self
            .ok(
                reqwest::Method::POST,
                &format!("{base}/services"),
                Some(json!({"name": name, "url": format!("http://{upstream}")})),
            )
            .await;
        self.ok(
            reqwest::Method::POST,
            &format!("{base}/routes"),
            Some(json!({"name": name, "paths": [path], "service": {"id": service["id"]}})),
        )
        .await;
    }

    /// The control plane's `/expected-config-hash`.
    pub async fn expected_hash(&self, control_plane_id: &str) -> String {
        let body = self
            .ok(
                reqwest::Method::GET,
                &format!("/v2/control-planes/{control_plane_id}/expected-config-hash"),
                None,
            )
            .await;
        body["expected_hash"]
            .as_str()
            .expect("expected_hash")
            .to_string()
    }

    /// The `nodes` list of a control plane.
    pub async fn nodes(&self, control_plane_id: &str) -> Vec<Value> {
        let body = self
            .ok(
                reqwest::Method::GET,
                &format!("/v2/control-planes/{control_plane_id}/nodes"),
                None,
            )
            .await;
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Data dir (for tests that look at generated files).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn issue_token(data_dir: &Path, database_url: Option<&str>, role: &str) -> String {
    let mut cmd = Command::new(binary("fleetgate"));
    cmd.args([
        "token", "create", "--org", "e2e", "--role", role, "--name", role,
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .env_remove("FLEETGATE_DATABASE_URL");
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    let out = cmd.output().expect("run fleetgate token create");
    assert!(
        out.status.success(),
        "fleetgate token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
