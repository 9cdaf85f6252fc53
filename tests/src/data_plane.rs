//! `fleetgate-dp` as a child process with a TOML settings file in its own prefix dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use crate::{
    binary, eventually, free_port, http, kill_hard, spawn_logged, try_spawn_logged, DpCredentials,
    JoinCredentials,
};

/// How to start a data plane.
#[derive(Debug, Clone, Default)]
pub struct DataPlaneOptions {
    /// `host:port` of the control plane (or of a relay in front of it); none = standalone.
    pub control_plane: Option<String>,
    /// Certificates to join with.
    pub credentials: Option<DpCredentials>,
    /// A join token (and the CA) to enrol with instead of certificates.
    pub join: Option<JoinCredentials>,
    /// `cluster_server_name`, when not the host part.
    pub server_name: Option<String>,
    /// A `declarative_config` YAML text.
    pub declarative_yaml: Option<String>,
    /// Extra `key = "value"` settings lines.
    pub extra: Vec<(String, String)>,
    /// Extra environment variables (e.g. AWS settings pointing at moto).
    pub env: Vec<(String, String)>,
}

/// A data plane process, restartable on the same prefix and ports.
pub struct DataPlaneProcess {
    /// Proxy address.
    pub proxy: SocketAddr,
    /// Status address.
    pub status: SocketAddr,
    prefix: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl DataPlaneProcess {
    /// Writes the settings and starts the node; waits until its status listener answers.
    pub async fn start(options: DataPlaneOptions) -> Self {
        let mut dp = Self::prepare(options);
        // The ports were free a moment ago; when a parallel test's connection took one in
        // between, the node exits saying so, and it is started again on fresh ports.
        for attempt in 1.. {
            match dp.try_launch().await {
                Ok(()) => break,
                Err(log) if attempt < 3 && log.contains("Address already in use") => {
                    dp.move_to_fresh_ports()
                }
                Err(log) => panic!("the data plane exited before it was ready; its log:\n{log}"),
            }
        }
        dp
    }

    /// Rewrites the settings with newly picked proxy and status ports.
    fn move_to_fresh_ports(&mut self) {
        let (proxy, status) = (free_port(), free_port());
        let toml = std::fs::read_to_string(self.conf_path()).expect("read dp.toml");
        let toml = toml
            .replace(&self.proxy.to_string(), &proxy.to_string())
            .replace(&self.status.to_string(), &status.to_string());
        std::fs::write(self.conf_path(), toml).expect("rewrite dp.toml");
        (self.proxy, self.status) = (proxy, status);
    }

    async fn try_launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(binary("fleetgate-dp"));
        cmd.arg("--conf").arg(self.conf_path());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let ready = format!("http://{}/status", self.status);
        let child = try_spawn_logged(&mut cmd, &self.log_path(), &ready, "the data plane").await?;
        self.child = Some(child);
        Ok(())
    }

    /// Writes the settings and runs the node until it exits by itself (at most `timeout`):
    /// its exit code and its log.
    pub async fn run_to_exit(
        options: DataPlaneOptions,
        timeout: Duration,
    ) -> (Option<i32>, String) {
        let mut dp = Self::prepare(options);
        let log = std::fs::File::create(dp.log_path()).expect("create the data plane log");
        let child = Command::new(binary("fleetgate-dp"))
            .arg("--conf")
            .arg(dp.conf_path())
            .envs(dp.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the data plane");
        // Held by `dp`, so a node that never exits is killed when the test fails.
        dp.child = Some(child);
        let status = eventually(timeout, "the data plane to exit by itself", || {
            let exited = dp
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll the data plane"));
            async move { exited }
        })
        .await;
        dp.child = None;
        (status.code(), dp.log())
    }

    fn prepare(options: DataPlaneOptions) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let prefix = dir.path().join("prefix");
        std::fs::create_dir_all(&prefix).expect("create the prefix dir");
        let proxy = free_port();
        let status = free_port();
        let mut toml = String::new();
        let mut set = |key: &str, value: &str| {
            toml.push_str(&format!("{key} = {}\n", toml_string(value)));
        };
        set("prefix", &path_str(&prefix));
        set("proxy_listen", &proxy.to_string());
        set("status_listen", &status.to_string());
        set("proxy_workers", "1");
        if let Some(cp) = &options.control_plane {
            set("cluster_control_plane", cp);
        }
        if let Some(creds) = &options.credentials {
            for (name, pem) in [
                ("cluster.crt", &creds.cert),
                ("cluster.key", &creds.key),
                ("cluster-ca.crt", &creds.ca),
            ] {
                std::fs::write(dir.path().join(name), pem).expect("write a PEM file");
            }
            set("cluster_cert", &path_str(&dir.path().join("cluster.crt")));
            set(
                "cluster_cert_key",
                &path_str(&dir.path().join("cluster.key")),
            );
            set(
                "cluster_ca_cert",
                &path_str(&dir.path().join("cluster-ca.crt")),
            );
        }
        if let Some(join) = &options.join {
            std::fs::write(dir.path().join("cluster-ca.crt"), &join.ca).expect("write the CA");
            set(
                "cluster_ca_cert",
                &path_str(&dir.path().join("cluster-ca.crt")),
            );
            set("cluster_join_token", &join.token);
        }
        if let Some(name) = &options.server_name {
            set("cluster_server_name", name);
        }
        if let Some(yaml) = &options.declarative_yaml {
            let path = dir.path().join("kong.yml");
            std::fs::write(&path, yaml).expect("write declarative_config");
            set("declarative_config", &path_str(&path));
        }
        for (key, value) in &options.extra {
            set(key, value);
        }
        std::fs::write(dir.path().join("dp.toml"), toml).expect("write dp.toml");
        Self {
            proxy,
            status,
            prefix,
            env: options.env,
            child: None,
            _dir: dir,
        }
    }

    fn conf_path(&self) -> PathBuf {
        self._dir.path().join("dp.toml")
    }

    fn log_path(&self) -> PathBuf {
        self._dir.path().join("dp.log")
    }

    /// Everything the node logged so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The prefix dir (config cache, license, node id).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    async fn launch(&mut self) {
        let mut cmd = Command::new(binary("fleetgate-dp"));
        cmd.arg("--conf").arg(self.conf_path());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let ready = format!("http://{}/status", self.status);
        let log = self.log_path();
        self.child = Some(spawn_logged(&mut cmd, &log, &ready, "the data plane").await);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_hard(&mut child);
        }
    }

    /// Kills and starts the node again on the same prefix, settings and ports.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// The node's `/status` document.
    pub async fn status(&self) -> Value {
        http()
            .get(format!("http://{}/status", self.status))
            .send()
            .await
            .expect("GET /status")
            .json()
            .await
            .expect("/status is JSON")
    }

    /// A GET through the proxy: status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        match http()
            .get(format!("http://{}{path}", self.proxy))
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    }

    /// Waits until the on-disk cache holds config `hash` (written just after the node reports
    /// `applied`), by the hash in the cache's header line.
    pub async fn wait_for_cache(&self, hash: &str, timeout: Duration) {
        let path = self.prefix.join("config.cache");
        eventually(timeout, &format!("config {hash} in the cache"), || {
            let path = path.clone();
            async move {
                let bytes = std::fs::read(&path).ok()?;
                let header = bytes.split(|&b| b == b'\n').next()?;
                let header: Value = serde_json::from_slice(header).ok()?;
                (header["config_hash"] == hash).then_some(())
            }
        })
        .await;
    }

    /// Waits until `/status` reports `config_hash == hash`.
    pub async fn wait_for_hash(&self, hash: &str, timeout: Duration) {
        eventually(
            timeout,
            &format!("the data plane to run config {hash}"),
            || async { (self.status().await["config_hash"] == hash).then_some(()) },
        )
        .await;
    }
}

impl Drop for DataPlaneProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
