//! The single error type of the protocol crate.

use crate::messages::Direction;

/// Everything that can go wrong while building, encoding or decoding
/// protocol data. Variants are specific so that callers can map them to the
/// right reaction (HTTP 400 naming a parameter, closing the socket, skipping
/// an unknown message from a newer peer, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame (text, or compressed binary) is larger than the allowed cap.
    #[error("frame of {size} bytes exceeds the {limit} byte limit")]
    FrameTooLarge {
        /// Size of the offending frame in bytes.
        size: usize,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A binary frame inflates past the decompressed cap (zip bomb guard).
    #[error("decompressed payload exceeds the {limit} byte limit")]
    DecompressedTooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A binary frame is not a valid gzip stream.
    #[error("invalid gzip payload: {0}")]
    Decompress(#[source] std::io::Error),
    /// Compressing an outgoing binary frame failed.
    #[error("gzip compression failed: {0}")]
    Compress(#[source] std::io::Error),
    /// The envelope names a `type` this side does not know. Callers talking
    /// to a newer peer may choose to log and skip instead of disconnecting.
    #[error("unknown {direction} message type `{type_name}`")]
    UnknownMessageType {
        /// Which enum we tried to decode into.
        direction: Direction,
        /// The offending `type` value (truncated to keep logs bounded).
        type_name: String,
    },
    /// The JSON object has no string `type` field.
    #[error("message has no `type` field")]
    MissingMessageType,
    /// The JSON is invalid, or a known message has missing/mistyped fields.
    #[error("malformed {} message: {source}", type_name.as_deref().unwrap_or("protocol"))]
    Malformed {
        /// The envelope `type`, when it could be read.
        type_name: Option<String>,
        /// The underlying parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A compact telemetry frame is malformed: what is wrong, and the byte offset where the
    /// offending field starts.
    #[error("malformed telemetry frame at byte {offset}: {reason}")]
    MalformedTelemetry {
        /// Offset of the offending field in the frame.
        offset: usize,
        /// What is wrong, naming the field (and record).
        reason: String,
    },
    /// A telemetry batch has more records or dictionary entries than allowed.
    #[error("telemetry batch has {size} {what}, above the limit of {limit}")]
    TelemetryTooLarge {
        /// `records` or `dictionary entries`.
        what: &'static str,
        /// How many it has (saturated at `usize::MAX`).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Serializing an outgoing message failed.
    #[error("failed to encode message: {0}")]
    Encode(#[source] serde_json::Error),
    /// A required outlet query parameter is absent.
    #[error("missing query parameter `{name}`")]
    MissingParameter {
        /// The parameter name, e.g. `node_id`.
        name: &'static str,
    },
    /// An outlet query parameter is present but unusable.
    #[error("invalid query parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter name, e.g. `node_version`.
        name: &'static str,
        /// Human-readable explanation, safe to return in a 400 body.
        reason: String,
    },
    /// A version string is not `MAJOR.MINOR.PATCH`.
    #[error("invalid version `{input}`: {reason}")]
    InvalidVersion {
        /// The rejected input (truncated).
        input: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl ProtocolError {
    /// For handshake errors, the query parameter at fault, so the CP can
    /// answer `400` naming it (as Kong does).
    pub fn parameter(&self) -> Option<&'static str> {
        match self {
            Self::MissingParameter { name } | Self::InvalidParameter { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Convenience alias used throughout the crate.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

/// Cuts attacker-controlled strings before they land in errors/logs, so a
/// hostile peer cannot make us log megabytes.
pub(crate) fn truncate_for_log(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
