//! Fleetgate control-plane <-> data-plane wire protocol (docs/architecture.md).
//!
//! Pure types and codecs, no networking, so the CP and the DP share one
//! definition of the wire format:
//!
//! - [`OutletQuery`]: the `?node_id=…&node_hostname=…&node_version=…` of the
//!   `wss://<cp>/v1/outlet` dial.
//! - [`DpMessage`] (DP -> CP) and [`CpMessage`] (CP -> DP): JSON envelopes
//!   tagged by `type`.
//! - Framing: [`encode_text`]/[`decode_text`] for JSON text frames,
//!   [`encode_binary`]/[`decode_binary`] for gzip binary frames (used for
//!   `reconfigure`), both capped by [`MAX_FRAME_BYTES`] and
//!   [`MAX_DECOMPRESSED_BYTES`].
//! - Telemetry: [`encode_telemetry`]/[`decode_telemetry`] for the compact binary frame of
//!   `telemetry` batches (dictionary of ids + varint columns, magic `FGTB`; format in
//!   [`telemetry`]). Receivers tell it from gzip JSON by [`is_telemetry_frame`].
//! - Enrolment: [`EnrolRequest`]/[`EnrolAnswer`] on [`ENROL_PATH`], how a node with a join
//!   token obtains its cluster certificate.
//! - Versioning: [`PROTOCOL_VERSION`], [`Version`], [`compatibility`].

mod enrol;
mod error;
mod framing;
pub mod license;
mod messages;
mod outlet;
pub mod telemetry;
mod version;

pub use enrol::{EnrolAnswer, EnrolRequest, ENROL_PATH, MAX_ENROL_FRAME_BYTES};
pub use error::{ProtocolError, Result};
pub use framing::{
    decode_binary, decode_binary_message, decode_binary_message_with_limits,
    decode_binary_with_limits, decode_text, decode_text_with_limits, encode_binary,
    encode_binary_with_limits, encode_text, encode_text_with_limits, FrameLimits,
    MAX_DECOMPRESSED_BYTES, MAX_FRAME_BYTES,
};
pub use license::{
    verify_license, verify_license_with_key, LicenseClaims, LicenseError, LicenseSigner,
};
pub use messages::{CpMessage, Direction, DpMessage, Message, PluginInfo, RequestRecord};
pub use outlet::{OutletQuery, OUTLET_PATH};
pub use telemetry::{
    decode_telemetry, decode_telemetry_with_limits, encode_telemetry, encode_telemetry_with_limits,
    is_telemetry_frame, IdRef, TelemetryBatch, TelemetryColumns, TelemetryLimits,
};
pub use version::{compatibility, Compatibility, Version, PROTOCOL_VERSION};
