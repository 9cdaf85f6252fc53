//! Fallback storage through `object_store`: one object per `<major.minor>` key.
//!
//! Several nodes export to the same key. A write never tears (S3 puts and the file store's
//! rename are atomic); what must not happen is a slow node putting an *older* config over a
//! newer one. So each export reads the stored document, keeps it when it is newer, and writes
//! conditionally: on S3 with `If-None-Match`/`If-Match` on the ETag it read (a conflict means
//! another node wrote in between: read again), on the file store under an exclusive lock
//! file, since a local file system offers no compare-and-swap put.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use super::document::{self, ExportedConfig};
use super::settings::StorageUrl;

/// Conflicting writes tolerated before an export gives up (until the next window).
const MAX_CONFLICTS: usize = 5;

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The document was written.
    Written,
    /// The stored document already holds this config.
    Unchanged,
    /// The stored document holds a newer version of the same control plane's config.
    NewerPresent(i64),
}

/// The fallback object of this node's version in one storage location.
pub struct FallbackStorage {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    shown: String,
    /// File store: the lock file that serialises read-compare-write between nodes.
    lock_file: Option<PathBuf>,
}

impl std::fmt::Debug for FallbackStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl FallbackStorage {
    /// Opens `url` for this node's version (`<prefix>/<major.minor>/config.json`). S3
    /// credentials and region come from the standard AWS environment; `AWS_ENDPOINT_URL`
    /// (or `AWS_ENDPOINT_URL_S3`) points at an S3-compatible endpoint.
    pub fn open(url: &StorageUrl) -> anyhow::Result<Self> {
        let version = document::major_minor(env!("CARGO_PKG_VERSION"));
        match url {
            StorageUrl::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_conditional_put(S3ConditionalPut::ETagMatch);
                let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                    .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                    .ok()
                    .filter(|e| !e.is_empty());
                if let Some(endpoint) = endpoint {
                    // A plain-HTTP endpoint is a local S3 stand-in (tests, on-prem); real S3
                    // is always HTTPS.
                    let http = endpoint.starts_with("http://");
                    builder = builder.with_endpoint(endpoint).with_allow_http(http);
                }
                let store = builder
                    .build()
                    .with_context(|| format!("open fallback storage {url}"))?;
                let key = if prefix.is_empty() {
                    format!("{version}/config.json")
                } else {
                    format!("{prefix}/{version}/config.json")
                };
                Ok(Self {
                    shown: format!("s3://{bucket}/{key}"),
                    store: Arc::new(store),
                    key: ObjectPath::from(key),
                    lock_file: None,
                })
            }
            StorageUrl::File { path } => {
                let dir = path.join(&version);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("create fallback storage dir {}", dir.display()))?;
                let store = LocalFileSystem::new_with_prefix(path)
                    .with_context(|| format!("open fallback storage {url}"))?;
                Ok(Self {
                    shown: format!("file://{}", dir.join("config.json").display()),
                    store: Arc::new(store),
                    key: ObjectPath::from(format!("{version}/config.json")),
                    lock_file: Some(dir.join("config.json.lock")),
                })
            }
        }
    }

    /// Where the object is, for logs and `/status` (no credentials in it).
    pub fn location(&self) -> &str {
        &self.shown
    }

    /// The stored document, or `None` when there is none; larger than `max_bytes` is an
    /// error (nothing that big is read into memory).
    pub async fn read(&self, max_bytes: usize) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .read_versioned(max_bytes)
            .await?
            .map(|(bytes, _)| bytes))
    }

    async fn read_versioned(
        &self,
        max_bytes: usize,
    ) -> anyhow::Result<Option<(Vec<u8>, UpdateVersion)>> {
        let result = match self.store.get(&self.key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", self.shown)),
        };
        if result.meta.size > max_bytes as u64 {
            anyhow::bail!(
                "{} is {} bytes, more than the {max_bytes} allowed",
                self.shown,
                result.meta.size
            );
        }
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let bytes = result
            .bytes()
            .await
            .with_context(|| format!("read {}", self.shown))?;
        Ok(Some((bytes.to_vec(), version)))
    }

    /// Writes `document` (the encoding of `ours`) unless the stored one is the same config or
    /// a newer version of it; see the module docs for how concurrent exporters stay ordered.
    pub async fn publish(
        &self,
        ours: &ExportedConfig,
        document: Vec<u8>,
        max_bytes: usize,
    ) -> anyhow::Result<Published> {
        let _lock = match &self.lock_file {
            Some(path) => Some(lock_exclusive(path.clone()).await?),
            None => None,
        };
        for _ in 0..MAX_CONFLICTS {
            let stored = match self.read_versioned(max_bytes).await {
                Ok(stored) => stored,
                // An oversized or unreadable object is replaced, not kept forever.
                Err(e) if self.lock_file.is_some() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "replacing an unreadable fallback object");
                    None
                }
            };
            if let Some((bytes, _)) = &stored {
                match document::header(bytes) {
                    Ok(h) if h.config_hash == ours.hash => return Ok(Published::Unchanged),
                    Ok(h)
                        if h.control_plane_id == ours.control_plane_id
                            && h.config_version > ours.version =>
                    {
                        return Ok(Published::NewerPresent(h.config_version))
                    }
                    Ok(h) if h.control_plane_id != ours.control_plane_id => {
                        tracing::warn!(
                            location = %self.shown,
                            stored = ?h.control_plane_id,
                            ours = ?ours.control_plane_id,
                            "the fallback object belongs to another control plane; give each control plane its own storage prefix. Replacing it"
                        );
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        tracing::warn!(location = %self.shown, %reason, "replacing a fallback object that does not parse")
                    }
                }
            }
            let mode = match (&self.lock_file, stored) {
                // The lock already serialises writers of the file store.
                (Some(_), _) => PutMode::Overwrite,
                (None, None) => PutMode::Create,
                (None, Some((_, version))) => PutMode::Update(version),
            };
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&self.key, document.clone().into(), options)
                .await
            {
                Ok(_) => return Ok(Published::Written),
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => {
                    tracing::debug!(location = %self.shown, "another node wrote the fallback object meanwhile; reading it again");
                }
                Err(e) => return Err(e).with_context(|| format!("write {}", self.shown)),
            }
        }
        anyhow::bail!(
            "write {}: {MAX_CONFLICTS} conflicting writes by other nodes in a row",
            self.shown
        )
    }
}

/// An exclusive advisory lock on `path` (created if missing), held until the file is dropped.
async fn lock_exclusive(path: PathBuf) -> anyhow::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open lock file {}", path.display()))?;
        file.lock()
            .with_context(|| format!("lock {}", path.display()))?;
        Ok(file)
    })
    .await
    .context("lock the fallback storage")?
}
