//! Enrolment: how a node holding a join token obtains its cluster certificate
//! (docs/clustering.md, "Joining with a token").
//!
//! The node opens a WebSocket on [`ENROL_PATH`] over TLS 1.3 without a client certificate,
//! sends one [`EnrolRequest`] text frame, and the control plane answers one [`EnrolAnswer`]
//! and closes. The node's private key never leaves it: it sends a CSR, and the control plane
//! decides the certificate's subject, usage and lifetime.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Path of the control plane's enrolment WebSocket; the `v1` is [`crate::PROTOCOL_VERSION`].
pub const ENROL_PATH: &str = "/v1/enrol";

/// Upper bound on one enrolment frame either way: a CSR or a certificate is a few KiB.
pub const MAX_ENROL_FRAME_BYTES: usize = 64 * 1024;

/// Node -> control plane: the one message of an enrolment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnrolRequest {
    /// Redeem `join_token` for a certificate of the key behind `csr`.
    Enrol {
        /// The single-use join token (`fgjt_…`).
        join_token: String,
        /// PKCS#10 certificate signing request, PEM.
        csr: String,
        /// The node's host name, for the control plane's log.
        #[serde(default)]
        node_hostname: String,
    },
}

impl fmt::Debug for EnrolRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The join token is a credential: never printed.
        match self {
            Self::Enrol { node_hostname, .. } => f
                .debug_struct("Enrol")
                .field("node_hostname", node_hostname)
                .finish_non_exhaustive(),
        }
    }
}

/// Control plane -> node: the answer to an [`EnrolRequest`]; the connection closes after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnrolAnswer {
    /// The node's cluster certificate (PEM), to present on `/v1/outlet`.
    Enrolled {
        /// The signed certificate, PEM.
        cert: String,
    },
    /// The token or the CSR was refused; retrying with the same token will not help.
    EnrolRefused {
        /// One line, e.g. `join token already used`.
        reason: String,
    },
}

impl EnrolRequest {
    /// The JSON text frame.
    pub fn to_text(&self) -> String {
        // Serialising strings into a JSON object cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a text frame; the error names what is wrong (never echoing the token).
    pub fn from_text(text: &str) -> Result<Self, String> {
        if text.len() > MAX_ENROL_FRAME_BYTES {
            return Err(format!(
                "the enrol message is {} bytes, over the {MAX_ENROL_FRAME_BYTES}-byte limit",
                text.len()
            ));
        }
        serde_json::from_str(text).map_err(|e| {
            // serde's message can quote a field value (the token); keep only messages that
            // name a field or a type, and the position otherwise.
            let message = e.to_string();
            let detail = if message.starts_with("missing field")
                || message.starts_with("unknown variant")
            {
                message
            } else {
                format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
            };
            format!(
                "the enrol message is not {{\"type\":\"enrol\",\"join_token\",\"csr\",\"node_hostname\"}} JSON: {detail}"
            )
        })
    }
}

impl EnrolAnswer {
    /// The JSON text frame.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a text frame.
    pub fn from_text(text: &str) -> Result<Self, String> {
        if text.len() > MAX_ENROL_FRAME_BYTES {
            return Err(format!(
                "the enrol answer is {} bytes, over the {MAX_ENROL_FRAME_BYTES}-byte limit",
                text.len()
            ));
        }
        serde_json::from_str(text).map_err(|e| format!("the enrol answer is malformed: {e}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let request = EnrolRequest::Enrol {
            join_token: "fgjt_secret".into(),
            csr: "-----BEGIN CERTIFICATE REQUEST-----".into(),
            node_hostname: "dp-1".into(),
        };
        let text = request.to_text();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], "enrol");
        assert_eq!(json["join_token"], "fgjt_secret");
        assert_eq!(EnrolRequest::from_text(&text).unwrap(), request);
        assert!(!format!("{request:?}").contains("fgjt_secret"));

        let refused = EnrolAnswer::EnrolRefused {
            reason: "join token already used".into(),
        };
        assert_eq!(
            refused.to_text(),
            r#"{"type":"enrol_refused","reason":"join token already used"}"#
        );
        let enrolled = EnrolAnswer::from_text(r#"{"type":"enrolled","cert":"PEM"}"#).unwrap();
        assert_eq!(enrolled, EnrolAnswer::Enrolled { cert: "PEM".into() });
        assert_eq!(ENROL_PATH, format!("/v{}/enrol", crate::PROTOCOL_VERSION));
    }

    #[test]
    fn bad_messages_are_named_without_echoing_values() {
        let err = EnrolRequest::from_text(r#"{"type":"enrol","join_token":"fgjt_x"}"#)
            .expect_err("no csr");
        assert!(err.contains("missing field `csr`"), "{err}");
        assert!(!err.contains("fgjt_x"), "{err}");
        assert!(EnrolRequest::from_text(&"x".repeat(MAX_ENROL_FRAME_BYTES + 1)).is_err());
    }
}
