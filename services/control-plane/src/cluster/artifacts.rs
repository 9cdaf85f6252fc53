//! `GET /v1/artifacts/fleetgate-dp` on the cluster listener: the node binary a cloud gateway
//! booting on a stock image downloads (docs/clustering.md, "Node binary").
//!
//! The cluster listener speaks WebSocket upgrades, not plain HTTP, so [`read_head`] reads the
//! request head first: an artifact request is answered here, anything else is handed on to the
//! upgrade with the head replayed ([`Rewound`]).
//!
//! No credential is asked for. The binary is the same for every node and holds no secret; what
//! matters is that a node runs exactly the bytes its control plane serves, and that is checked
//! on the node: the download pins the cluster CA (`curl --cacert`) and the SHA-256 the control
//! plane put in the user data. A join token is not required because it is single-use (spent at
//! enrolment, so a node re-running its boot script could not download again) and checking it
//! without spending it would give token guessers a free oracle.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

/// Where the node binary is served.
pub const DP_ARTIFACT_PATH: &str = "/v1/artifacts/fleetgate-dp";
/// Prefix of every artifact path (requests under it never reach the WebSocket upgrade).
pub const ARTIFACTS_PREFIX: &str = "/v1/artifacts/";
/// A request head larger than this is refused (the upgrade requests nodes send are < 1 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The `fleetgate-dp` binary this control plane serves, with its SHA-256 computed once per
/// file version (size and modification time).
#[derive(Debug)]
pub struct DpArtifact {
    path: PathBuf,
    cached: std::sync::Mutex<Option<(FileStamp, ArtifactDigest)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// What a node is told about the binary before it downloads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactDigest {
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub len: u64,
}

/// Why the binary cannot be served.
#[derive(Debug, thiserror::Error)]
#[error(
    "fleetgate-dp is not available from this control plane: {path} cannot be read ({source}); \
     install fleetgate-dp next to the fleetgate executable or start with --dp-artifact PATH"
)]
pub struct ArtifactMissing {
    /// The path that was tried.
    pub path: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

impl DpArtifact {
    /// The binary at `path`, or by default `fleetgate-dp` next to the running executable.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path: path.unwrap_or_else(default_path),
            cached: std::sync::Mutex::new(None),
        }
    }

    /// The file served.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's SHA-256 and size, hashed again only when the file changed.
    pub async fn digest(&self) -> Result<ArtifactDigest, ArtifactMissing> {
        let stamp = self.stamp()?;
        if let Some((cached_stamp, digest)) = &*self.lock() {
            if *cached_stamp == stamp {
                return Ok(digest.clone());
            }
        }
        let path = self.path.clone();
        let digest = tokio::task::spawn_blocking(move || hash_file(&path))
            .await
            .map_err(|e| self.missing(std::io::Error::other(e)))?
            .map_err(|e| self.missing(e))?;
        *self.lock() = Some((stamp, digest.clone()));
        Ok(digest)
    }

    fn stamp(&self) -> Result<FileStamp, ArtifactMissing> {
        let meta = std::fs::metadata(&self.path).map_err(|e| self.missing(e))?;
        if !meta.is_file() {
            return Err(self.missing(std::io::Error::other("not a regular file")));
        }
        Ok(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    fn missing(&self, source: std::io::Error) -> ArtifactMissing {
        ArtifactMissing {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(FileStamp, ArtifactDigest)>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `fleetgate-dp` next to the running executable (from a test binary in `target/<profile>/deps`,
/// the one in `target/<profile>`).
pub fn default_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let beside = dir.join("fleetgate-dp");
    if !beside.exists() && dir.ends_with("deps") {
        if let Some(up) = dir.parent() {
            return up.join("fleetgate-dp");
        }
    }
    beside
}

fn hash_file(path: &Path) -> std::io::Result<ArtifactDigest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok(ArtifactDigest {
        sha256: hex::encode(hasher.finalize()),
        len,
    })
}

/// Reads up to the end of the request head (`\r\n\r\n`), keeping every byte read. `None` when
/// the peer closed first or sent more than a head may be.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Some(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return None;
        }
    }
}

/// Method and path (without the query) of a request head, if its first line parses.
pub fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let path = target.split('?').next()?;
    Some((method, path))
}

/// Answers one artifact request (the connection closes after it).
pub async fn serve<S: AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    artifact: &DpArtifact,
) {
    let result = respond(stream, method, path, artifact).await;
    if let Err(e) = result {
        tracing::debug!(error = %e, path, "artifact download ended early");
    }
    let _ = stream.shutdown().await;
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    artifact: &DpArtifact,
) -> std::io::Result<()> {
    if path != DP_ARTIFACT_PATH {
        let detail =
            format!("no artifact at {path}; the node binary is served at {DP_ARTIFACT_PATH}");
        return problem(stream, StatusCode::NOT_FOUND, &detail, &[]).await;
    }
    if method != "GET" && method != "HEAD" {
        let detail = format!("{path} answers GET and HEAD only, not {method}");
        return problem(
            stream,
            StatusCode::METHOD_NOT_ALLOWED,
            &detail,
            &[("Allow", "GET, HEAD")],
        )
        .await;
    }
    let digest = match artifact.digest().await {
        Ok(digest) => digest,
        Err(missing) => {
            tracing::warn!(error = %missing, "a node asked for fleetgate-dp, which is not here");
            return problem(stream, StatusCode::NOT_FOUND, &missing.to_string(), &[]).await;
        }
    };
    let mut file = tokio::fs::File::open(artifact.path()).await?;
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
         content-length: {}\r\nx-checksum-sha256: {}\r\n\
         content-disposition: attachment; filename=\"fleetgate-dp\"\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        digest.len, digest.sha256
    );
    stream.write_all(head.as_bytes()).await?;
    if method == "GET" {
        // The file may have changed since it was hashed: send exactly the advertised length,
        // and the node's SHA-256 check catches a mix of versions.
        let mut limited = (&mut file).take(digest.len);
        tokio::io::copy(&mut limited, stream).await?;
    }
    stream.flush().await
}

async fn problem<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: StatusCode,
    detail: &str,
    extra: &[(&str, &str)],
) -> std::io::Result<()> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    })
    .to_string();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        crate::error::PROBLEM_JSON,
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

/// A stream whose first bytes were already read: they are read again before the rest, so the
/// WebSocket handshake sees the request head [`read_head`] took.
#[derive(Debug)]
pub struct Rewound<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewound<S> {
    /// `inner` with `head` in front of its remaining bytes.
    pub fn new(head: Vec<u8>, inner: S) -> Self {
        Self {
            head,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    #[test]
    fn the_request_line_gives_method_and_path_without_query() {
        let head = b"GET /v1/artifacts/fleetgate-dp?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            request_line(head),
            Some(("GET", "/v1/artifacts/fleetgate-dp"))
        );
        assert_eq!(request_line(b"\xff\xfe\r\n\r\n"), None);
    }

    #[tokio::test]
    async fn a_rewound_stream_replays_the_head_then_reads_on() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut rewound = Rewound::new(b"hello".to_vec(), server);
        let mut all = String::new();
        rewound.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
