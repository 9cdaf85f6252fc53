//! The CP<->DP messages (docs/architecture.md).
//!
//! Every message is a JSON object whose `type` field selects the variant
//! (serde internally tagged, snake_case). Unknown extra fields are ignored on
//! purpose: an older peer must tolerate optional fields added by a newer one.
//! Fields added in later minor versions therefore MUST be `#[serde(default)]`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which side sends a message; used in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Data plane -> control plane ([`DpMessage`]).
    DataPlaneToControlPlane,
    /// Control plane -> data plane ([`CpMessage`]).
    ControlPlaneToDataPlane,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DataPlaneToControlPlane => "data-plane",
            Self::ControlPlaneToDataPlane => "control-plane",
        })
    }
}

/// A plugin available on a data-plane node, reported in `hello` so the CP
/// can refuse configs that use plugins the node lacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name, e.g. `rate-limiting`.
    pub name: String,
    /// Plugin version, e.g. `1.2.0`.
    pub version: String,
}

/// One proxied request, as shipped in telemetry.
///
/// Privacy: holds ids and numbers only — never paths, headers, bodies or
/// client IPs. Latencies are whole microseconds (`u32`, up to ~71 minutes):
/// loopback and in-region requests take well under a millisecond, so whole
/// milliseconds would make every percentile 0 or 1; integers keep the type `Eq`
/// and avoid NaN/inf on the wire. The analytics API reports milliseconds. Unknown fields sent by a peer are dropped at decode time, so even a
/// buggy/newer DP cannot smuggle extra data into CP storage through this type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Request start, Unix epoch milliseconds.
    pub time_ms: i64,
    /// Control plane (tenant cluster) the node belongs to.
    pub control_plane_id: Uuid,
    /// Matched service, if any.
    pub service_id: Option<Uuid>,
    /// Matched route, if any (404s have none).
    pub route_id: Option<Uuid>,
    /// Authenticated consumer, if any.
    pub consumer_id: Option<Uuid>,
    /// Node that proxied the request.
    pub node_id: Uuid,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Total request latency, µs.
    pub latency_total_us: u32,
    /// Time spent waiting on the upstream, µs.
    pub latency_upstream_us: u32,
    /// Time spent in the gateway itself (plugins, routing), µs.
    pub latency_gateway_us: u32,
    /// Request bytes received from the client.
    pub bytes_in: u64,
    /// Response bytes sent to the client.
    pub bytes_out: u64,
}

/// Data plane -> control plane messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DpMessage {
    /// First message after the WebSocket opens.
    Hello {
        /// The node's stable id (same as the outlet `node_id`).
        node_id: Uuid,
        /// The node's hostname.
        hostname: String,
        /// Node software version, `MAJOR.MINOR.PATCH`.
        version: String,
        /// Hash of the config the node currently runs (empty if none), so the
        /// CP can skip a reconfigure the node already has.
        config_hash: String,
        /// Plugins compiled into the node.
        #[serde(default)]
        plugins: Vec<PluginInfo>,
        /// Free-form node labels.
        #[serde(default)]
        labels: BTreeMap<String, String>,
    },
    /// The config with this hash was validated and is now live.
    Applied {
        /// Hash from the `reconfigure` that was applied.
        config_hash: String,
    },
    /// The config with this hash was refused; the node keeps its old config.
    Rejected {
        /// Hash from the `reconfigure` that was rejected.
        config_hash: String,
        /// Validation errors, for display in the CP.
        #[serde(default)]
        errors: Vec<String>,
    },
    /// Heartbeat, every `cluster_ping_interval`.
    Ping {
        /// Hash of the live config; lets the CP detect drift without a
        /// separate status call.
        config_hash: String,
        /// Telemetry records waiting on the node (buffered and unacked), shown on the
        /// control plane's `/nodes`. `None` from nodes that do not report it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        telemetry_buffer_fill: Option<u64>,
    },
    /// A batch of request records. `seq` increases per batch; the CP acks it.
    Telemetry {
        /// Sending node.
        node_id: Uuid,
        /// Batch sequence number, matched by [`CpMessage::Ack`].
        seq: u64,
        /// The records.
        #[serde(default)]
        records: Vec<RequestRecord>,
        /// Records dropped locally (buffer full) since the previous batch.
        #[serde(default)]
        dropped: u64,
    },
}

/// Control plane -> data plane messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CpMessage {
    /// The full, latest gateway config (never a delta, so a node that missed
    /// updates converges with one message). Sent as a binary frame, see
    /// [`crate::encode_binary`].
    Reconfigure {
        /// Monotonic config version.
        version: i64,
        /// Hash of the canonical config. The DP recomputes it with
        /// `fleetgate-config`'s canonical form rather than hashing these
        /// bytes, so JSON key order on the wire does not matter.
        config_hash: String,
        /// The gateway config document.
        config: serde_json::Value,
        /// The control plane this config belongs to. The DP stamps it on every telemetry
        /// record (so the CP can refuse records of another control plane) and keeps it with
        /// its cache. `None` from an older CP; the DP then records the nil UUID.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        control_plane_id: Option<Uuid>,
    },
    /// Answer to [`DpMessage::Ping`].
    Pong {
        /// CP wall clock, Unix epoch ms; lets the DP spot clock skew, which
        /// matters for license expiry and telemetry timestamps. `0` if the
        /// CP did not send it.
        #[serde(default)]
        cp_time_ms: i64,
    },
    /// Acknowledges telemetry batch `seq`; the DP may drop it from its buffer.
    Ack {
        /// The acknowledged [`DpMessage::Telemetry`] `seq`.
        seq: u64,
    },
    /// A signed license; opaque to the protocol.
    License {
        /// The signed license blob.
        signed_blob: String,
    },
    /// The CP will not serve this node (version skew, unknown node, ...) and
    /// closes the connection after sending this.
    Refused {
        /// Human-readable reason, shown in DP logs.
        reason: String,
    },
    /// A non-fatal problem with something the DP sent (e.g. a malformed
    /// telemetry batch); the connection stays open.
    Error {
        /// Human-readable description.
        message: String,
    },
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::DpMessage {}
    impl Sealed for super::CpMessage {}
}

/// Implemented by the two message enums so that framing functions can be
/// shared. Sealed: the wire vocabulary is defined here only.
pub trait Message: Serialize + DeserializeOwned + sealed::Sealed {
    /// Direction this enum travels in.
    const DIRECTION: Direction;
    /// Every `type` value this enum accepts.
    const TYPES: &'static [&'static str];
    /// The `type` value this message serializes with.
    fn message_type(&self) -> &'static str;
}

impl Message for DpMessage {
    const DIRECTION: Direction = Direction::DataPlaneToControlPlane;
    const TYPES: &'static [&'static str] = &["hello", "applied", "rejected", "ping", "telemetry"];

    fn message_type(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Applied { .. } => "applied",
            Self::Rejected { .. } => "rejected",
            Self::Ping { .. } => "ping",
            Self::Telemetry { .. } => "telemetry",
        }
    }
}

impl Message for CpMessage {
    const DIRECTION: Direction = Direction::ControlPlaneToDataPlane;
    const TYPES: &'static [&'static str] =
        &["reconfigure", "pong", "ack", "license", "refused", "error"];

    fn message_type(&self) -> &'static str {
        match self {
            Self::Reconfigure { .. } => "reconfigure",
            Self::Pong { .. } => "pong",
            Self::Ack { .. } => "ack",
            Self::License { .. } => "license",
            Self::Refused { .. } => "refused",
            Self::Error { .. } => "error",
        }
    }
}

impl CpMessage {
    /// Whether this message should travel as a binary (gzip) frame. Only
    /// `reconfigure` does: configs are large and compress ~10x, while the
    /// small control messages stay readable as text frames.
    pub fn prefers_binary(&self) -> bool {
        matches!(self, Self::Reconfigure { .. })
    }
}
