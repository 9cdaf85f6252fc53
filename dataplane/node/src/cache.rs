//! The on-disk config cache (docs/clustering.md "DP cache"): the last config the control
//! plane pushed, so a node restarts into it while the control plane is unreachable.
//!
//! `<prefix>/config.cache` = a one-line JSON header
//! `{"format":1,"config_hash":…,"version":…,"sha256":<hex of the body>,"length":<body bytes>}`,
//! `\n`, then the body = gzip of the canonical config JSON. Writes are atomic (temp file,
//! fsync, rename, fsync of the directory), so a crash at any point leaves either the old
//! cache or the new one, never a torn file. A file that fails any check is renamed aside
//! (`config.cache.corrupt-<unix time>`) with one warning naming why, and never used.
//!
//! The signed license lives beside it in `<prefix>/license.fgl`, written the same way.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use fleetgate_config::GatewayConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Cache file name inside the prefix.
pub const CACHE_FILE: &str = "config.cache";
/// License file name inside the prefix.
pub const LICENSE_FILE: &str = "license.fgl";
/// The header `format` this code writes and reads.
const FORMAT: u32 = 1;
/// A cache body larger than this is refused (same cap as a decompressed `reconfigure`).
const MAX_BODY_BYTES: usize = fleetgate_protocol::MAX_DECOMPRESSED_BYTES;

/// What is written to (and read back from) the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedConfig {
    /// The control plane's config version.
    pub version: i64,
    /// The config hash (`GatewayConfig::hash`) of `canonical_json`.
    pub hash: String,
    /// Canonical config JSON (`GatewayConfig::canonical_json`).
    pub canonical_json: Vec<u8>,
}

/// A cache that passed every check, with the config parsed.
#[derive(Debug)]
pub struct ValidCache {
    /// The control plane's config version.
    pub version: i64,
    /// The verified config hash.
    pub hash: String,
    /// The parsed config.
    pub config: GatewayConfig,
}

/// The outcome of reading the cache.
#[derive(Debug)]
pub enum CacheLoad {
    /// A cache that passed every check.
    Valid(Box<ValidCache>),
    /// No cache file.
    Missing,
    /// The file failed a check and was moved to `moved_to`.
    Corrupt {
        /// Where the bad file now is.
        moved_to: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: u32,
    config_hash: String,
    version: i64,
    sha256: String,
    length: usize,
}

/// Writes `cached` to `<prefix>/config.cache` atomically (mode 0600).
pub fn write(prefix: &Path, cached: &CachedConfig) -> anyhow::Result<()> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&cached.canonical_json)
        .and_then(|()| gz.flush())
        .context("compress the config for the cache")?;
    let body = gz.finish().context("compress the config for the cache")?;
    let header = Header {
        format: FORMAT,
        config_hash: cached.hash.clone(),
        version: cached.version,
        sha256: hex::encode(Sha256::digest(&body)),
        length: body.len(),
    };
    let mut bytes = serde_json::to_vec(&header).context("encode the cache header")?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    write_atomic(prefix, CACHE_FILE, &bytes)
}

/// Reads and checks `<prefix>/config.cache`; a bad file is moved aside and reported.
pub fn load(prefix: &Path) -> CacheLoad {
    let path = prefix.join(CACHE_FILE);
    remove_stale_temp_files(prefix, CACHE_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheLoad::Missing,
        Err(e) => return move_aside(&path, format!("cannot read it: {e}")),
    };
    match parse(&bytes) {
        Ok(valid) => CacheLoad::Valid(Box::new(valid)),
        Err(reason) => move_aside(&path, reason),
    }
}

/// Every integrity check of the cache format; the error is the reason shown in the log.
fn parse(bytes: &[u8]) -> Result<ValidCache, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("the header line is incomplete (no newline)")?;
    let header: Header = serde_json::from_slice(&bytes[..newline])
        .map_err(|e| format!("the header does not parse: {e}"))?;
    if header.format != FORMAT {
        return Err(format!(
            "unsupported cache format {} (this node reads {FORMAT})",
            header.format
        ));
    }
    let body = &bytes[newline + 1..];
    if body.len() != header.length {
        return Err(format!(
            "the body is {} bytes, the header says {}",
            body.len(),
            header.length
        ));
    }
    if hex::encode(Sha256::digest(body)) != header.sha256 {
        return Err("the body's SHA-256 does not match the header".into());
    }
    let mut json = Vec::new();
    GzDecoder::new(body)
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("the body does not gunzip: {e}"))?;
    if json.len() > MAX_BODY_BYTES {
        return Err(format!("the config is larger than {MAX_BODY_BYTES} bytes"));
    }
    let config: GatewayConfig =
        serde_json::from_slice(&json).map_err(|e| format!("the config does not parse: {e}"))?;
    let hash = config.hash();
    if hash.as_str() != header.config_hash {
        return Err(format!(
            "the config hashes to {hash}, the header says {}",
            header.config_hash
        ));
    }
    Ok(ValidCache {
        version: header.version,
        hash: header.config_hash,
        config,
    })
}

/// Renames a bad file to `<name>.corrupt-<unix time>` so it is kept for inspection but never
/// read again, and logs one line naming the file and the reason.
fn move_aside(path: &Path, reason: String) -> CacheLoad {
    let moved_to = path.with_file_name(format!(
        "{}.corrupt-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        crate::license::now_unix()
    ));
    if let Err(e) = fs::rename(path, &moved_to) {
        tracing::warn!(file = %path.display(), %reason, error = %e, "config cache is corrupt and could not be moved aside; ignoring it");
    } else {
        tracing::warn!(file = %path.display(), moved_to = %moved_to.display(), %reason, "config cache is corrupt; moved aside, not used");
    }
    CacheLoad::Corrupt { moved_to, reason }
}

/// Stores the signed license blob in `<prefix>/license.fgl` (atomic, 0600).
pub fn write_license(prefix: &Path, blob: &str) -> anyhow::Result<()> {
    write_atomic(prefix, LICENSE_FILE, blob.as_bytes())
}

/// The stored license blob, if any.
pub fn read_license(prefix: &Path) -> anyhow::Result<Option<String>> {
    let path = prefix.join(LICENSE_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Temp file in the same directory, fsync, rename over `name`, fsync the directory: after a
/// crash at any instant the file is either the old one or the new one. The file is owner-only
/// (the cache, and the node's cluster key and certificate).
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let target = dir.join(name);
    let temp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temp)
        .with_context(|| format!("create {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("write {}", temp.display()))?;
    drop(file);
    fs::rename(&temp, &target)
        .with_context(|| format!("rename {} to {}", temp.display(), target.display()))?;
    // The rename is durable only once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync directory {}", dir.display()))?;
    Ok(())
}

/// Temp files left by a writer that crashed mid-write; only one node uses a prefix, so any
/// temp file found at load time is dead.
fn remove_stale_temp_files(dir: &Path, name: &str) {
    let prefix = format!("{name}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}
