//! Data-plane settings: a TOML file (`fleetgate-dp --conf dp.toml`) overlaid by
//! `FLEETGATE_<KEY>` environment variables (env wins). Key names follow Kong's so Kong users
//! feel at home. Unknown keys and bad values fail start-up with one line naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A settings problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A key is not a setting.
    #[error("unknown setting '{key}' (from {origin})")]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it came from.
        origin: String,
    },
    /// A setting another one depends on is not set.
    #[error("setting '{key}' is required when {because}")]
    Missing {
        /// The missing key.
        key: String,
        /// The condition that requires it.
        because: String,
    },
    /// A value does not parse.
    #[error("setting '{key}': {reason} (got {value:?})")]
    BadValue {
        /// The key.
        key: String,
        /// The raw value.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
}

/// Every key the data plane understands, with its default (docs/architecture.md).
pub const KEYS: &[(&str, Option<&str>)] = &[
    ("cluster_control_plane", None),
    ("cluster_server_name", None),
    ("cluster_cert", None),
    ("cluster_cert_key", None),
    ("cluster_ca_cert", None),
    ("prefix", Some("./fleetgate-dp")),
    ("declarative_config", None),
    ("proxy_listen", Some("0.0.0.0:8000")),
    ("proxy_listen_tls", Some("off")),
    ("status_listen", Some("127.0.0.1:8100")),
    ("proxy_workers", Some("auto")),
    ("analytics_flush_interval", Some("1s")),
    ("analytics_buffer_size_limit", Some("100000")),
    ("cluster_ping_interval", Some("30s")),
    ("cluster_reconnect_delay", Some("5s..10s")),
    ("cluster_fallback_config_storage", None),
    ("cluster_fallback_config_import", Some("off")),
    ("cluster_fallback_config_export", Some("off")),
    ("cluster_fallback_config_export_delay", Some("60s")),
    ("cluster_join_token", None),
];

/// `cluster_join_token`: a credential, so its Debug shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken(pub String);

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

/// Parsed data-plane settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Working directory (config cache, node id).
    pub prefix: PathBuf,
    /// Fallback Kong-format YAML loaded at start-up (and on SIGHUP).
    pub declarative_config: Option<PathBuf>,
    /// HTTP proxy address.
    pub proxy_listen: SocketAddr,
    /// HTTPS proxy address (certificates chosen by SNI from the config).
    pub proxy_listen_tls: Option<SocketAddr>,
    /// `/status`, `/ready`, `/metrics`.
    pub status_listen: SocketAddr,
    /// Proxy worker threads, each with its own event loop and listener (like nginx
    /// workers); `auto` = the CPUs this process may run on.
    pub proxy_workers: usize,
    /// Control plane `host:port` list (clustering; not used by a standalone node).
    pub cluster_control_plane: Vec<String>,
    /// TLS server name expected from the control plane (default: the endpoint's host).
    pub cluster_server_name: Option<String>,
    /// The node's client certificate (PEM file).
    pub cluster_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM file).
    pub cluster_cert_key: Option<PathBuf>,
    /// The CA that signs the control plane's server certificate (PEM file).
    pub cluster_ca_cert: Option<PathBuf>,
    /// A single-use token to obtain `cluster_cert`/`cluster_cert_key` from the control plane
    /// at first start (kept out of `raw`, and never printed).
    pub cluster_join_token: Option<JoinToken>,
    /// Max time between telemetry flushes.
    pub analytics_flush_interval: Duration,
    /// Buffered requests while disconnected.
    pub analytics_buffer_size_limit: usize,
    /// Heartbeat interval.
    pub cluster_ping_interval: Duration,
    /// Random reconnect delay range.
    pub cluster_reconnect_delay: (Duration, Duration),
    /// `cluster_fallback_config_*`: import/export of the config through object storage.
    pub fallback: crate::fallback::FallbackSettings,
    /// Every raw value, for the settings later issues add behaviour to.
    pub raw: BTreeMap<String, String>,
}

impl Settings {
    /// Reads `file` (if given) and the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, SettingsError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let text = match file {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|e| SettingsError::File {
                    path: path.display().to_string(),
                    reason: format!("cannot read: {e}"),
                })?,
            )),
            None => None,
        };
        Self::from_sources(text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())), &env)
    }

    /// Builds settings from file text and an environment (testable without touching the
    /// process environment).
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: &[(String, String)],
    ) -> Result<Self, SettingsError> {
        let mut raw: BTreeMap<String, String> = KEYS
            .iter()
            .filter_map(|(k, d)| d.map(|d| (k.to_string(), d.to_string())))
            .collect();
        if let Some((path, text)) = file {
            let table: toml::Table = toml::from_str(text).map_err(|e| SettingsError::File {
                path: path.to_string(),
                reason: e.message().to_string()
                    + &e.span()
                        .map(|s| format!(" (at line {})", line_of(text, s.start)))
                        .unwrap_or_default(),
            })?;
            for (key, value) in table {
                if !KEYS.iter().any(|(k, _)| *k == key) {
                    return Err(SettingsError::UnknownKey {
                        key,
                        origin: path.to_string(),
                    });
                }
                let value = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Boolean(b) => if b { "on" } else { "off" }.to_string(),
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                raw.insert(key, value);
            }
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix("FLEETGATE_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // Only data-plane keys; other FLEETGATE_* variables (logging, the control plane's
            // own settings) are not ours to reject.
            if KEYS.iter().any(|(k, _)| *k == key) {
                raw.insert(key, value.clone());
            }
        }
        // A credential: held apart so no Debug of the settings can print it.
        let cluster_join_token = raw
            .remove("cluster_join_token")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(JoinToken);
        let get = |key: &str| raw.get(key).map(String::as_str);
        let addr = |key: &str| -> Result<SocketAddr, SettingsError> {
            let value = get(key).unwrap_or("");
            value.parse().map_err(|_| SettingsError::BadValue {
                key: key.into(),
                value: value.into(),
                reason: "expected an address like 127.0.0.1:8000".into(),
            })
        };
        let proxy_listen_tls = match get("proxy_listen_tls") {
            None | Some("off") | Some("") => None,
            Some(_) => Some(addr("proxy_listen_tls")?),
        };
        let reconnect = get("cluster_reconnect_delay").unwrap_or("5s..10s");
        let (lo, hi) = match reconnect.split_once("..") {
            Some((lo, hi)) => (
                parse_duration("cluster_reconnect_delay", lo)?,
                parse_duration("cluster_reconnect_delay", hi)?,
            ),
            None => {
                let d = parse_duration("cluster_reconnect_delay", reconnect)?;
                (d, d)
            }
        };
        if lo > hi {
            return Err(SettingsError::BadValue {
                key: "cluster_reconnect_delay".into(),
                value: reconnect.into(),
                reason: "the lower bound is above the upper bound".into(),
            });
        }
        let workers = get("proxy_workers").unwrap_or("auto");
        let proxy_workers = match workers {
            "auto" => std::thread::available_parallelism().map_or(1, usize::from),
            n => n
                .parse()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| SettingsError::BadValue {
                    key: "proxy_workers".into(),
                    value: n.into(),
                    reason: "expected 'auto' or a whole number from 1 to 1024".into(),
                })?,
        };
        let buffer = get("analytics_buffer_size_limit").unwrap_or("100000");
        let text = |key: &str| get(key).map(str::trim).filter(|s| !s.is_empty());
        let path = |key: &str| text(key).map(PathBuf::from);
        let cluster_control_plane: Vec<String> = text("cluster_control_plane")
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !cluster_control_plane.is_empty() {
            // A clustered node cannot authenticate without a certificate and key, or a join
            // token to obtain them, and the CA; say which is missing now rather than failing
            // every dial later.
            let has_cert = text("cluster_cert").is_some() || text("cluster_cert_key").is_some();
            if !has_cert && cluster_join_token.is_none() {
                return Err(SettingsError::Missing {
                    key: "cluster_cert".into(),
                    because: "cluster_control_plane is set and no cluster_join_token is given"
                        .into(),
                });
            }
            let needed: &[&str] = if has_cert {
                &["cluster_cert", "cluster_cert_key", "cluster_ca_cert"]
            } else {
                &["cluster_ca_cert"]
            };
            for key in needed {
                if text(key).is_none() {
                    return Err(SettingsError::Missing {
                        key: key.to_string(),
                        because: "cluster_control_plane is set".into(),
                    });
                }
            }
            for endpoint in &cluster_control_plane {
                let port = endpoint.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
                if !matches!(port, Some(Ok(_))) {
                    return Err(SettingsError::BadValue {
                        key: "cluster_control_plane".into(),
                        value: endpoint.clone(),
                        reason: "expected host:port entries separated by commas".into(),
                    });
                }
            }
        }
        Ok(Settings {
            prefix: PathBuf::from(get("prefix").unwrap_or("./fleetgate-dp")),
            declarative_config: get("declarative_config")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            proxy_listen: addr("proxy_listen")?,
            proxy_listen_tls,
            status_listen: addr("status_listen")?,
            proxy_workers,
            cluster_control_plane,
            cluster_server_name: text("cluster_server_name").map(str::to_string),
            cluster_cert: path("cluster_cert"),
            cluster_cert_key: path("cluster_cert_key"),
            cluster_ca_cert: path("cluster_ca_cert"),
            cluster_join_token,
            analytics_flush_interval: parse_duration(
                "analytics_flush_interval",
                get("analytics_flush_interval").unwrap_or("1s"),
            )?,
            // 0 turns telemetry off (docs/telemetry.md).
            analytics_buffer_size_limit: buffer.parse().ok().ok_or_else(|| {
                SettingsError::BadValue {
                    key: "analytics_buffer_size_limit".into(),
                    value: buffer.into(),
                    reason: "expected a whole number (0 turns telemetry off)".into(),
                }
            })?,
            cluster_ping_interval: parse_duration(
                "cluster_ping_interval",
                get("cluster_ping_interval").unwrap_or("30s"),
            )?,
            cluster_reconnect_delay: (lo, hi),
            fallback: crate::fallback::FallbackSettings::from_raw(&raw)?,
            raw,
        })
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a bare number means seconds).
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, SettingsError> {
    let bad = || SettingsError::BadValue {
        key: key.into(),
        value: value.into(),
        reason: "expected a duration like 250ms, 5s, 2m or 1h".into(),
    };
    let v = value.trim();
    let (number, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_and_env_wins_over_file() {
        let s = Settings::from_sources(
            Some((
                "dp.toml",
                "proxy_listen = \"127.0.0.1:9000\"\nprefix = \"/x\"\n",
            )),
            &env(&[("FLEETGATE_PROXY_LISTEN", "127.0.0.1:9001")]),
        )
        .expect("valid");
        assert_eq!(s.proxy_listen.port(), 9001);
        assert_eq!(s.prefix, PathBuf::from("/x"));
        assert_eq!(s.status_listen.port(), 8100);
        assert_eq!(s.analytics_buffer_size_limit, 100_000);
        assert_eq!(
            s.cluster_reconnect_delay,
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        assert!(s.proxy_listen_tls.is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Settings::from_sources(Some(("dp.toml", "proxy_lisen = \"x\"\n")), &[])
            .expect_err("unknown key");
        assert!(err.to_string().contains("proxy_lisen"), "{err}");
        let err = Settings::from_sources(None, &env(&[("FLEETGATE_PROXY_LISTEN", "nope")]))
            .expect_err("bad address");
        assert!(err.to_string().contains("proxy_listen"), "{err}");
        let err =
            Settings::from_sources(None, &env(&[("FLEETGATE_CLUSTER_PING_INTERVAL", "soon")]))
                .expect_err("bad duration");
        assert!(err.to_string().contains("cluster_ping_interval"), "{err}");
        let err =
            Settings::from_sources(Some(("dp.toml", "prefix = \n")), &[]).expect_err("bad toml");
        assert!(err.to_string().contains("dp.toml"), "{err}");
    }

    #[test]
    fn cluster_settings_require_cert_key_and_ca() {
        let err = Settings::from_sources(
            None,
            &env(&[
                ("FLEETGATE_CLUSTER_CONTROL_PLANE", "cp.example:8005"),
                ("FLEETGATE_CLUSTER_CERT", "/c.pem"),
                ("FLEETGATE_CLUSTER_CA_CERT", "/ca.pem"),
            ]),
        )
        .expect_err("key missing");
        assert_eq!(
            err.to_string(),
            "setting 'cluster_cert_key' is required when cluster_control_plane is set"
        );
        let s = Settings::from_sources(
            None,
            &env(&[
                ("FLEETGATE_CLUSTER_CONTROL_PLANE", "a:1, b:2"),
                ("FLEETGATE_CLUSTER_CERT", "/c.pem"),
                ("FLEETGATE_CLUSTER_CERT_KEY", "/k.pem"),
                ("FLEETGATE_CLUSTER_CA_CERT", "/ca.pem"),
                ("FLEETGATE_CLUSTER_SERVER_NAME", "cp.internal"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.cluster_control_plane, vec!["a:1", "b:2"]);
        assert_eq!(s.cluster_cert_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(s.cluster_server_name.as_deref(), Some("cp.internal"));
        let err = Settings::from_sources(
            None,
            &env(&[
                ("FLEETGATE_CLUSTER_CONTROL_PLANE", "cp.example"),
                ("FLEETGATE_CLUSTER_CERT", "/c.pem"),
                ("FLEETGATE_CLUSTER_CERT_KEY", "/k.pem"),
                ("FLEETGATE_CLUSTER_CA_CERT", "/ca.pem"),
            ]),
        )
        .expect_err("no port");
        assert!(err.to_string().contains("cluster_control_plane"), "{err}");
    }

    #[test]
    fn a_join_token_replaces_cert_and_key_but_not_the_ca() {
        let err = Settings::from_sources(
            None,
            &env(&[
                ("FLEETGATE_CLUSTER_CONTROL_PLANE", "cp.example:8005"),
                ("FLEETGATE_CLUSTER_CA_CERT", "/ca.pem"),
            ]),
        )
        .expect_err("neither cert nor token");
        assert_eq!(
            err.to_string(),
            "setting 'cluster_cert' is required when cluster_control_plane is set and no cluster_join_token is given"
        );
        let err = Settings::from_sources(
            None,
            &env(&[
                ("FLEETGATE_CLUSTER_CONTROL_PLANE", "cp.example:8005"),
                ("FLEETGATE_CLUSTER_JOIN_TOKEN", "fgjt_secret"),
            ]),
        )
        .expect_err("no CA");
        assert_eq!(
            err.to_string(),
            "setting 'cluster_ca_cert' is required when cluster_control_plane is set"
        );
        let s = Settings::from_sources(
            Some((
                "dp.toml",
                "cluster_control_plane = \"cp.example:8005\"\ncluster_ca_cert = \"/ca.pem\"\ncluster_join_token = \"fgjt_secret\"\n",
            )),
            &[],
        )
        .expect("a token instead of cert and key");
        assert_eq!(s.cluster_join_token, Some(JoinToken("fgjt_secret".into())));
        assert_eq!(s.cluster_cert, None);
        // The token is a credential: no Debug of the settings shows it.
        assert!(!format!("{s:?}").contains("fgjt_secret"));
        assert!(!s.raw.contains_key("cluster_join_token"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("k", "250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("k", "2m").ok(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_duration("k", "3").ok(), Some(Duration::from_secs(3)));
        assert!(parse_duration("k", "-1s").is_err());
    }
}
