//! The `cluster_fallback_config_*` settings (docs/architecture.md), parsed and checked at start-up so a
//! typo fails with one line naming the key instead of a silent no-op during an outage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::settings::{parse_duration, SettingsError};

/// Where fallback configs live: `s3://bucket/prefix` or `file:///absolute/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// An S3 bucket (credentials from the standard AWS environment; `AWS_ENDPOINT_URL` for an
    /// S3-compatible endpoint) and a key prefix (may be empty).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing `/`.
        prefix: String,
    },
    /// A directory (shared storage mounted on every node, or a local dir in tests).
    File {
        /// Absolute directory path.
        path: PathBuf,
    },
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

impl StorageUrl {
    /// Parses the `cluster_fallback_config_storage` value.
    pub fn parse(value: &str) -> Result<Self, SettingsError> {
        let bad = |reason: &str| SettingsError::BadValue {
            key: "cluster_fallback_config_storage".into(),
            value: value.into(),
            reason: reason.into(),
        };
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // S3's bucket naming rules, enough to catch typos like a stray scheme or spaces.
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !bucket_ok {
                return Err(bad(
                    "expected s3://bucket/prefix with a bucket name of 3-63 lowercase letters, digits, '-' or '.'",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == "." || part == "..") {
                return Err(bad("the key prefix may not contain '.' or '..' segments"));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(path) = value.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("expected file:///absolute/path (three slashes)"));
            }
            return Ok(Self::File {
                path: PathBuf::from(path),
            });
        }
        Err(bad("expected s3://bucket/prefix or file:///absolute/path"))
    }
}

/// The fallback config settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackSettings {
    /// Where to import from / export to.
    pub storage: Option<StorageUrl>,
    /// Import at start when there is no valid cache and the control plane is unreachable.
    pub import: bool,
    /// Export each config the control plane pushes.
    pub export: bool,
    /// At most one export per window; the newest config of a window is written.
    pub export_delay: Duration,
}

impl FallbackSettings {
    /// Reads the settings from the raw key/value map (defaults already filled in).
    pub fn from_raw(raw: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        let get = |key: &str| raw.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let storage = get("cluster_fallback_config_storage")
            .map(StorageUrl::parse)
            .transpose()?;
        let import = switch(raw, "cluster_fallback_config_import")?;
        let export = switch(raw, "cluster_fallback_config_export")?;
        let export_delay = parse_duration(
            "cluster_fallback_config_export_delay",
            get("cluster_fallback_config_export_delay").unwrap_or("60s"),
        )?;
        for (key, on) in [
            ("cluster_fallback_config_import", import),
            ("cluster_fallback_config_export", export),
        ] {
            if on && storage.is_none() {
                return Err(SettingsError::Missing {
                    key: "cluster_fallback_config_storage".into(),
                    because: format!("{key} is on"),
                });
            }
        }
        Ok(Self {
            storage,
            import,
            export,
            export_delay,
        })
    }
}

/// `on`/`off` (also `true`/`false`, as TOML booleans arrive as `on`/`off`).
fn switch(raw: &BTreeMap<String, String>, key: &str) -> Result<bool, SettingsError> {
    let value = raw.get(key).map(|v| v.trim()).unwrap_or("off");
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" | "" => Ok(false),
        _ => Err(SettingsError::BadValue {
            key: key.into(),
            value: value.into(),
            reason: "expected on or off".into(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn storage_urls_parse_and_bad_ones_name_the_key() {
        assert_eq!(
            StorageUrl::parse("s3://fleet-fallback/prod/eu/").unwrap(),
            StorageUrl::S3 {
                bucket: "fleet-fallback".into(),
                prefix: "prod/eu".into()
            }
        );
        assert_eq!(
            StorageUrl::parse("s3://fleet-fallback").unwrap(),
            StorageUrl::S3 {
                bucket: "fleet-fallback".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            StorageUrl::parse("file:///var/lib/fallback").unwrap(),
            StorageUrl::File {
                path: "/var/lib/fallback".into()
            }
        );
        for bad in [
            "gs://bucket/x",
            "s3://Bad_Bucket/x",
            "s3://ab",
            "s3://bucket/../x",
            "file://relative/dir",
            "/just/a/path",
        ] {
            let err = StorageUrl::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("cluster_fallback_config_storage") && err.contains(bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn import_or_export_without_storage_is_refused() {
        let err = FallbackSettings::from_raw(&raw(&[("cluster_fallback_config_import", "on")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster_fallback_config_storage"), "{err}");
        assert!(
            err.contains("cluster_fallback_config_import is on"),
            "{err}"
        );
        let err = FallbackSettings::from_raw(&raw(&[("cluster_fallback_config_export", "yes")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected on or off"), "{err}");
    }

    #[test]
    fn defaults_are_off_with_a_60s_window() {
        let settings = FallbackSettings::from_raw(&raw(&[])).unwrap();
        assert_eq!(
            settings,
            FallbackSettings {
                storage: None,
                import: false,
                export: false,
                export_delay: Duration::from_secs(60)
            }
        );
    }
}
