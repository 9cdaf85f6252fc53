//! Test harness: a real control plane on 127.0.0.1:0 over a real database — a fresh SQLite
//! file, or a fresh PostgreSQL database when `FLEETGATE_TEST_DATABASE_URL` names a server.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use fleetgate_control_plane::auth::issue_token;
use fleetgate_control_plane::cluster::listener::ClusterSettings;
use fleetgate_control_plane::server::{self, RunningServer};
use fleetgate_control_plane::store::{Role, Store};
use fleetgate_control_plane::ApiSettings;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

/// Env var naming a PostgreSQL server the tests may create databases on.
pub const PG_ENV: &str = "FLEETGATE_TEST_DATABASE_URL";

/// A fresh, empty database URL for one test.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match std::env::var(PG_ENV) {
        Ok(admin_url) if !admin_url.is_empty() => {
            use sqlx::Connection;
            let name = format!("fg_test_{}", Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connect to the test PostgreSQL server");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
            format!("{base}/{name}")
        }
        _ => Store::sqlite_url_in(dir),
    }
}

/// A running control plane for one test.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub database_url: String,
    /// Where data planes dial (TLS 1.3, client certificate required).
    pub cluster_addr: std::net::SocketAddr,
    /// The CA that signs the cluster listener's certificate.
    pub cluster_ca_pem: String,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

/// A response: status, content type and parsed body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts the status and returns self for chaining.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        // The one exception: core-entity paths answer 401 in Kong's `{message, status}`.
        let kong_401 = status == 401
            && self.content_type == "application/json"
            && self.body["message"].is_string()
            && self.body["status"] == 401;
        if status >= 400 && !kong_401 {
            assert!(
                self.content_type.starts_with("application/problem+json"),
                "error without problem+json: {} {}",
                self.content_type,
                self.text
            );
        }
        self
    }

    /// The named fields of a problem's `invalid_parameters`.
    pub fn invalid_fields(&self) -> Vec<String> {
        self.body["invalid_parameters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p["field"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("response has an id")
            .to_string()
    }

    /// The `item.id` of a Konnect `{item}` answer (nodes, dp-client-certificates).
    pub fn item_id(&self) -> String {
        self.body["item"]["id"]
            .as_str()
            .expect("response has an item.id")
            .to_string()
    }
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with_cluster(ClusterSettings {
            listen: "127.0.0.1:0".parse().expect("loopback address"),
            ..ClusterSettings::default()
        })
        .await
    }

    /// A control plane whose cluster listener uses these settings (e.g. a short ping interval).
    pub async fn start_with_cluster(cluster: ClusterSettings) -> Self {
        // Server-side errors (e.g. the cause of a 500) show up in the failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,fleetgate_control_plane=info")
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("create a temp dir");
        let database_url = fresh_database_url(dir.path()).await;
        let store = Store::connect(&database_url).await.expect("open the store");
        let server = server::start_with(
            store.clone(),
            "127.0.0.1:0".parse().expect("loopback address"),
            // Cluster TLS material and the license key are generated into the data dir, as
            // in production.
            ApiSettings {
                data_dir: Some(dir.path().to_path_buf()),
                ..ApiSettings::default()
            },
            cluster,
        )
        .await
        .expect("start the API");
        Self {
            base: format!("http://{}", server.addr),
            cluster_addr: server.cluster_addr,
            cluster_ca_pem: server.state.cluster_tls.ca_pem().to_string(),
            client: reqwest::Client::new(),
            store,
            database_url,
            server: Some(server),
            _dir: dir,
        }
    }

    /// The server's data dir (generated keys live here).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Issues a token for the organisation (created if needed).
    pub async fn token(&self, org: &str, role: Role) -> String {
        let org = self
            .store
            .ensure_organization(org)
            .await
            .expect("create org");
        issue_token(&self.store, org.id, "test", role, None)
            .await
            .expect("issue token")
            .secret
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        into_reply(req.send().await.expect("send request")).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body);
        into_reply(req.send().await.expect("send request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a control plane and returns its entity base path.
    pub async fn control_plane(&self, token: &str, name: &str) -> (String, String) {
        let cp = self
            .post(
                "/v2/control-planes",
                token,
                serde_json::json!({ "name": name }),
            )
            .await
            .expect(201)
            .id();
        (cp.clone(), format!("/v2/control-planes/{cp}/core-entities"))
    }

    pub async fn expected_hash(&self, cp: &str, token: &str) -> String {
        self.get(
            &format!("/v2/control-planes/{cp}/expected-config-hash"),
            token,
        )
        .await
        .expect(200)
        .body["expected_hash"]
            .as_str()
            .expect("hash")
            .to_string()
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("shut down");
        }
        self.store.close().await;
    }
}

async fn into_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("read body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    Reply {
        status,
        content_type,
        body,
        text,
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
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
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
