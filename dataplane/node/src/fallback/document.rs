//! The fallback object: one JSON document per `<major.minor>` key, readable with any S3 tool.
//!
//! ```json
//! {"format":1,"fleetgate_version":"0.1.0","control_plane_id":"…","config_version":12,
//!  "config_hash":"…","exported_at":1764133200,"exported_by":"<node id>","config":{…}}
//! ```
//! `config` is the canonical config JSON exactly as the control plane hashed it, so an import
//! recomputes the hash and refuses a document whose config does not match `config_hash`.

use fleetgate_config::GatewayConfig;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// The document `format` this code writes and reads.
const FORMAT: u32 = 1;

/// A config as the exporter publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedConfig {
    /// The control plane the config came from.
    pub control_plane_id: Option<Uuid>,
    /// The control plane's config version.
    pub version: i64,
    /// The config hash the control plane sent (verified by the node before applying).
    pub hash: String,
    /// Canonical config JSON.
    pub canonical_json: Vec<u8>,
}

/// The document's fields apart from the config itself: enough to decide whether a stored
/// document is newer than ours without parsing the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Document format.
    pub format: u32,
    /// Version of the node that wrote it.
    pub fleetgate_version: String,
    /// The control plane the config came from.
    pub control_plane_id: Option<Uuid>,
    /// The control plane's config version.
    pub config_version: i64,
    /// Hash of `config`.
    pub config_hash: String,
    /// Unix seconds of the export.
    pub exported_at: i64,
    /// Node id of the exporter.
    pub exported_by: Uuid,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<'a> {
    #[serde(flatten)]
    header: Header,
    #[serde(borrow)]
    config: &'a RawValue,
}

/// A document that passed every check.
#[derive(Debug)]
pub struct VerifiedDocument {
    /// Its header.
    pub header: Header,
    /// The parsed, validated config.
    pub config: GatewayConfig,
}

/// Serialises `config` as a fallback document written by node `exported_by`.
pub fn encode(
    config: &ExportedConfig,
    exported_by: Uuid,
    now_unix: i64,
) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let raw = std::str::from_utf8(&config.canonical_json)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
        .context("the canonical config is not JSON")?;
    let document = Document {
        header: Header {
            format: FORMAT,
            fleetgate_version: env!("CARGO_PKG_VERSION").to_string(),
            control_plane_id: config.control_plane_id,
            config_version: config.version,
            config_hash: config.hash.clone(),
            exported_at: now_unix,
            exported_by,
        },
        config: raw,
    };
    serde_json::to_vec(&document).context("encode the fallback document")
}

/// Reads just the header (the exporter's "is the stored one newer?" check).
pub fn header(bytes: &[u8]) -> Result<Header, String> {
    let document: Document<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("the document does not parse: {e}"))?;
    Ok(document.header)
}

/// Every check an import makes; the error is the reason shown in the log.
pub fn verify(bytes: &[u8], max_bytes: usize) -> Result<VerifiedDocument, String> {
    if bytes.len() > max_bytes {
        return Err(format!(
            "the document is {} bytes, more than the {max_bytes} allowed",
            bytes.len()
        ));
    }
    let document: Document<'_> =
        serde_json::from_slice(bytes).map_err(|e| format!("the document does not parse: {e}"))?;
    let header = document.header;
    if header.format != FORMAT {
        return Err(format!(
            "unsupported document format {} (this node reads {FORMAT})",
            header.format
        ));
    }
    let ours = major_minor(env!("CARGO_PKG_VERSION"));
    if major_minor(&header.fleetgate_version) != ours {
        return Err(format!(
            "written by version {}, this node is {} (major.minor must match)",
            header.fleetgate_version,
            env!("CARGO_PKG_VERSION")
        ));
    }
    let config: GatewayConfig = serde_json::from_str(document.config.get())
        .map_err(|e| format!("the config does not parse: {e}"))?;
    config.validate().map_err(|errors| {
        format!(
            "the config is invalid: {}",
            crate::gateway::field_messages(errors).join("; ")
        )
    })?;
    let (_, hash) = config.canonical_json_and_hash();
    if hash.as_str() != header.config_hash {
        return Err(format!(
            "the config hashes to {hash}, the document says {}",
            header.config_hash
        ));
    }
    Ok(VerifiedDocument { header, config })
}

/// `"0.1"` of `"0.1.7"`: the key segment, so nodes of another minor never read the object.
pub fn major_minor(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => version.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> ExportedConfig {
        let yaml = r#"
_format_version: "3.0"
services:
  - name: orders
    url: http://127.0.0.1:9/
    routes:
      - name: orders
        paths: ["/orders"]
"#;
        let config = fleetgate_config::declarative::import(yaml).expect("sample config");
        let (canonical_json, hash) = config.canonical_json_and_hash();
        ExportedConfig {
            control_plane_id: Some(Uuid::new_v4()),
            version: 7,
            hash: hash.to_string(),
            canonical_json,
        }
    }

    #[test]
    fn a_document_round_trips_and_keeps_its_header() {
        let exported = sample();
        let node = Uuid::new_v4();
        let bytes = encode(&exported, node, 1_764_000_000).unwrap();
        let verified = verify(&bytes, 1 << 20).unwrap();
        assert_eq!(verified.header.config_hash, exported.hash);
        assert_eq!(verified.header.config_version, 7);
        assert_eq!(verified.header.exported_by, node);
        assert_eq!(verified.header.control_plane_id, exported.control_plane_id);
        assert_eq!(
            verified.config.canonical_json_and_hash().0,
            exported.canonical_json
        );
        assert_eq!(header(&bytes).unwrap().config_version, 7);
    }

    #[test]
    fn tampering_truncation_and_other_versions_are_refused_with_the_reason() {
        let bytes = encode(&sample(), Uuid::new_v4(), 0).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();

        let tampered = text.replace("/orders", "/orderz");
        let err = verify(tampered.as_bytes(), 1 << 20).unwrap_err();
        assert!(err.contains("the config hashes to"), "{err}");

        let err = verify(&bytes[..bytes.len() / 2], 1 << 20).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");

        let other = text.replace(
            &format!("\"fleetgate_version\":\"{}\"", env!("CARGO_PKG_VERSION")),
            "\"fleetgate_version\":\"9.4.0\"",
        );
        let err = verify(other.as_bytes(), 1 << 20).unwrap_err();
        assert!(err.contains("written by version 9.4.0"), "{err}");

        let err = verify(&bytes, 10).unwrap_err();
        assert!(err.contains("more than the 10 allowed"), "{err}");
    }

    #[test]
    fn major_minor_is_the_key_segment() {
        assert_eq!(major_minor("0.1.0"), "0.1");
        assert_eq!(major_minor("3.10.2-rc1"), "3.10");
    }
}
