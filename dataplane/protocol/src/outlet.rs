//! The outlet handshake: the query string a DP sends when dialing
//! `wss://<cluster_control_plane>/v1/outlet?...`.

use url::form_urlencoded;
use uuid::Uuid;

use crate::error::{ProtocolError, Result};
use crate::version::Version;

/// Path of the CP's WebSocket endpoint; the `v1` is [`crate::PROTOCOL_VERSION`].
pub const OUTLET_PATH: &str = "/v1/outlet";

/// Upper bound on `node_hostname`, the DNS name length limit. Keeps a
/// hostile value from bloating CP storage and logs.
const MAX_HOSTNAME_LEN: usize = 253;

/// Upper bound on `node_version` (generous for pre-release suffixes).
const MAX_VERSION_LEN: usize = 64;

/// Identifies a node at connection time, before any message is exchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutletQuery {
    /// The node's stable id.
    pub node_id: Uuid,
    /// The node's hostname.
    pub node_hostname: String,
    /// Node software version, `MAJOR.MINOR.PATCH`.
    pub node_version: String,
}

impl OutletQuery {
    /// Serializes as `node_id=…&node_hostname=…&node_version=…`
    /// (form-urlencoded, no leading `?`).
    pub fn to_query_string(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("node_id", &self.node_id.to_string())
            .append_pair("node_hostname", &self.node_hostname)
            .append_pair("node_version", &self.node_version)
            .finish()
    }

    /// The full dial URL for `cluster_control_plane` (`host[:port]`).
    pub fn to_url(&self, cluster_control_plane: &str) -> String {
        format!(
            "wss://{cluster_control_plane}{OUTLET_PATH}?{}",
            self.to_query_string()
        )
    }

    /// Parses and validates a query string (a leading `?` is allowed).
    /// Errors name the offending parameter so the CP can answer `400` with
    /// it. Unknown parameters are ignored so newer DPs can add some;
    /// duplicated known ones are rejected since which copy wins would be
    /// ambiguous between proxies and the CP.
    pub fn parse(query: &str) -> Result<OutletQuery> {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut node_id = None;
        let mut node_hostname = None;
        let mut node_version = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let (name, slot) = match key.as_ref() {
                "node_id" => ("node_id", &mut node_id),
                "node_hostname" => ("node_hostname", &mut node_hostname),
                "node_version" => ("node_version", &mut node_version),
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(invalid(name, "given more than once"));
            }
        }

        let node_id = node_id.ok_or(ProtocolError::MissingParameter { name: "node_id" })?;
        let node_id = Uuid::parse_str(&node_id).map_err(|_| invalid("node_id", "not a UUID"))?;

        let node_hostname = node_hostname.ok_or(ProtocolError::MissingParameter {
            name: "node_hostname",
        })?;
        validate_text("node_hostname", &node_hostname, MAX_HOSTNAME_LEN)?;

        let node_version = node_version.ok_or(ProtocolError::MissingParameter {
            name: "node_version",
        })?;
        validate_text("node_version", &node_version, MAX_VERSION_LEN)?;
        Version::parse(&node_version).map_err(|err| match err {
            ProtocolError::InvalidVersion { reason, .. } => invalid("node_version", &reason),
            other => other,
        })?;

        Ok(OutletQuery {
            node_id,
            node_hostname,
            node_version,
        })
    }

    /// The parsed `node_version`. Cannot fail for values returned by
    /// [`OutletQuery::parse`], but fields are public so it stays fallible.
    pub fn version(&self) -> Result<Version> {
        Version::parse(&self.node_version)
    }
}

fn invalid(name: &'static str, reason: &str) -> ProtocolError {
    ProtocolError::InvalidParameter {
        name,
        reason: reason.to_owned(),
    }
}

/// Rejects empty, oversized, or control-character values; they end up in
/// CP logs and UI, where control characters enable log injection.
fn validate_text(name: &'static str, value: &str, max_len: usize) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(name, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(invalid(name, &format!("longer than {max_len} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(name, "contains control characters"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    const ID: &str = "0b3c9f5e-6a8e-4c1b-9f0e-2d4a6c8e1f3b";

    fn sample() -> OutletQuery {
        OutletQuery {
            node_id: Uuid::parse_str(ID).unwrap(),
            node_hostname: "dp-1.example.com".into(),
            node_version: "1.4.2".into(),
        }
    }

    #[test]
    fn round_trips() {
        let q = sample();
        let s = q.to_query_string();
        assert_eq!(
            s,
            format!("node_id={ID}&node_hostname=dp-1.example.com&node_version=1.4.2")
        );
        assert_eq!(OutletQuery::parse(&s).unwrap(), q);
        assert_eq!(OutletQuery::parse(&format!("?{s}&future=1")).unwrap(), q);
        assert_eq!(q.version().unwrap(), Version::new(1, 4, 2));
    }

    #[test]
    fn encodes_special_characters() {
        let mut q = sample();
        q.node_hostname = "host &name=x".into();
        q.node_version = "1.0.0+build".into();
        let s = q.to_query_string();
        assert!(!s.contains(' ') && !s.contains("+build"), "{s}");
        assert_eq!(OutletQuery::parse(&s).unwrap(), q);
    }

    #[test]
    fn url_uses_outlet_path() {
        let url = sample().to_url("cp.example.com:8005");
        assert!(
            url.starts_with("wss://cp.example.com:8005/v1/outlet?node_id="),
            "{url}"
        );
        assert_eq!(OUTLET_PATH, format!("/v{}/outlet", crate::PROTOCOL_VERSION));
    }

    #[test]
    fn errors_name_the_parameter() {
        let h = "node_hostname=h";
        let v = "node_version=1.0.0";
        let i = format!("node_id={ID}");
        let long = "a".repeat(300);
        let cases: Vec<(String, &str, bool)> = vec![
            (format!("{h}&{v}"), "node_id", true),
            (format!("{i}&{v}"), "node_hostname", true),
            (format!("{i}&{h}"), "node_version", true),
            ("".into(), "node_id", true),
            (format!("node_id=nope&{h}&{v}"), "node_id", false),
            (format!("{i}&{i}&{h}&{v}"), "node_id", false),
            (format!("{i}&node_hostname=&{v}"), "node_hostname", false),
            (
                format!("{i}&node_hostname={long}&{v}"),
                "node_hostname",
                false,
            ),
            (
                format!("{i}&node_hostname=a%0Ab&{v}"),
                "node_hostname",
                false,
            ),
            (format!("{i}&{h}&node_version=1.x.0"), "node_version", false),
            (format!("{i}&{h}&node_version="), "node_version", false),
        ];
        for (query, param, missing) in cases {
            let err = OutletQuery::parse(&query).unwrap_err();
            assert_eq!(err.parameter(), Some(param), "{query}: {err}");
            assert_eq!(
                matches!(err, ProtocolError::MissingParameter { .. }),
                missing,
                "{query}: {err}"
            );
            assert!(err.to_string().contains(param), "{query}: {err}");
        }
    }
}
