//! A private moto server (the EC2/S3-compatible endpoint from PyPI) per test: started on a
//! free loopback port, killed on drop. One server per test keeps tests independent without a
//! shared reset. `scripts/test` installs moto and exports `FLEETGATE_MOTO_SERVER`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port, http};

/// Credentials moto accepts (any non-empty pair); the region tests use by default.
pub const MOTO_ACCESS_KEY: &str = "fleetgate-test";
/// See [`MOTO_ACCESS_KEY`].
pub const MOTO_SECRET_KEY: &str = "fleetgate-test-secret";
/// See [`MOTO_ACCESS_KEY`].
pub const MOTO_REGION: &str = "us-east-1";

/// A running moto server.
pub struct Moto {
    /// `http://127.0.0.1:<port>`: the value for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    child: Child,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts moto and waits (20 s at most) until it answers.
    pub async fn start() -> Self {
        let server = moto_server_path();
        let log = tempfile::NamedTempFile::new().expect("create the moto log file");
        let addr = free_port();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("reopen the moto log"))
            .stderr(log.reopen().expect("reopen the moto log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", server.display()));
        let endpoint = format!("http://{addr}");
        let client = http();
        let ready = format!("{endpoint}/moto-api/");
        eventually(Duration::from_secs(20), "moto to answer", || {
            let request = client.get(&ready);
            async move {
                let answered = request.send().await.ok()?;
                answered.status().is_success().then_some(())
            }
        })
        .await;
        Self {
            endpoint,
            child,
            _log: log,
        }
    }

    /// The environment a child process (or an SDK client) needs to talk to this moto.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", MOTO_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", MOTO_SECRET_KEY.to_string()),
            ("AWS_REGION", MOTO_REGION.to_string()),
            ("AWS_DEFAULT_REGION", MOTO_REGION.to_string()),
            // No instance-metadata lookups: there is no metadata service on a test machine.
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// An AWS SDK configuration for this moto (static credentials, [`MOTO_REGION`]): for a
    /// provider under test or a client that checks results independently of it.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(MOTO_REGION))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                MOTO_ACCESS_KEY,
                MOTO_SECRET_KEY,
                None,
                None,
                "moto",
            ))
            .load()
            .await
    }

    /// An EC2 client on this moto.
    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }

    /// Creates an S3 bucket (moto's S3 answers path-style requests on the same endpoint).
    pub async fn create_bucket(&self, bucket: &str) {
        let resp = http()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("PUT bucket on moto");
        assert!(
            resp.status().is_success(),
            "moto refused to create bucket {bucket}: {}",
            resp.status()
        );
    }
}

impl Moto {
    /// Everything moto logged (one line per request), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._log.path()).unwrap_or_default()
    }

    /// An S3 object's bytes (signed request, as moto refuses anonymous reads), or `None`.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        use object_store::ObjectStoreExt as _;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region(MOTO_REGION)
            .with_access_key_id(MOTO_ACCESS_KEY)
            .with_secret_access_key(MOTO_SECRET_KEY)
            .build()
            .expect("an S3 client for moto");
        let path = object_store::path::Path::from(key);
        match store.get(&path).await {
            Ok(result) => Some(result.bytes().await.expect("read the object").to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("get s3://{bucket}/{key} from moto: {e}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `FLEETGATE_MOTO_SERVER`, else the venv `scripts/test` installs into.
fn moto_server_path() -> PathBuf {
    let path = std::env::var_os("FLEETGATE_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/fleetgate-moto/bin/moto_server")
        });
    assert!(
        path.exists(),
        "moto_server not found at {}: run scripts/test (it installs moto) or set FLEETGATE_MOTO_SERVER",
        path.display()
    );
    path
}
