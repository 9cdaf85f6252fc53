//! Binary frames from a node: compact telemetry frames, or gzip of a JSON message
//! (docs/telemetry.md, "Batches (wire)").

use std::io::Read;

use fleetgate_protocol::{
    decode_telemetry_with_limits, is_telemetry_frame, DpMessage, ProtocolError, RequestRecord,
    TelemetryBatch, TelemetryLimits,
};
use serde::Deserialize;
use uuid::Uuid;

/// A binary frame from a node could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not gzip, or corrupt.
    #[error("the frame is not valid gzip: {0}")]
    Decompress(#[from] std::io::Error),
    /// Inflates to more than allowed.
    #[error("the frame inflates to more than {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// Not a message of the protocol, or a malformed telemetry frame (the error says what is
    /// wrong and where).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// What a node's binary frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFrame {
    /// A telemetry batch, from a compact frame or a gzip JSON `telemetry` message (boxed: its
    /// twelve column vectors dwarf every other message).
    Telemetry(Box<TelemetryBatch>),
    /// Any other message.
    Message(DpMessage),
}

/// `telemetry` read straight into its fields. The protocol's `DpMessage` is an internally
/// tagged enum, which serde decodes by first buffering the whole object into a generic tree —
/// for 5,000 records that costs more than ingesting them. Same semantics: unknown fields are
/// ignored, `records` and `dropped` default to empty and 0.
#[derive(Deserialize)]
struct TelemetryJson {
    #[serde(rename = "type")]
    kind: String,
    node_id: Uuid,
    seq: u64,
    #[serde(default)]
    records: Vec<RequestRecord>,
    #[serde(default)]
    dropped: u64,
}

/// Decodes a node's binary frame. A compact telemetry frame (magic `FGTB`, what nodes send)
/// is decoded by the protocol crate into columns, capped by its default limits (at most
/// 65,536 records). Anything else must be gzip of a JSON message inflating to at most
/// `max_inflated` bytes (what nodes sent before the compact format, and what other clients may
/// still send): `telemetry` through a direct path, the rest through the protocol crate.
pub fn decode_binary_frame(bytes: &[u8], max_inflated: usize) -> Result<NodeFrame, FrameError> {
    if is_telemetry_frame(bytes) {
        let batch = decode_telemetry_with_limits(bytes, TelemetryLimits::default())?;
        return Ok(NodeFrame::Telemetry(Box::new(batch)));
    }
    let cap = u64::try_from(max_inflated)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut json = Vec::with_capacity(bytes.len().saturating_mul(8).min(max_inflated));
    flate2::read::GzDecoder::new(bytes)
        .take(cap)
        .read_to_end(&mut json)?;
    if json.len() > max_inflated {
        return Err(FrameError::TooLarge {
            limit: max_inflated,
        });
    }
    if let Ok(frame) = serde_json::from_slice::<TelemetryJson>(&json) {
        if frame.kind == "telemetry" {
            return Ok(NodeFrame::Telemetry(Box::new(
                TelemetryBatch::from_records(
                    frame.node_id,
                    frame.seq,
                    &frame.records,
                    frame.dropped,
                ),
            )));
        }
    }
    // Another message, or a malformed one: the protocol crate decodes it or names the error.
    let text = String::from_utf8_lossy(&json);
    let limits = fleetgate_protocol::FrameLimits {
        max_frame_bytes: max_inflated,
        max_decompressed_bytes: max_inflated,
    };
    Ok(NodeFrame::Message(
        fleetgate_protocol::decode_text_with_limits(&text, limits)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RequestRecord {
        RequestRecord {
            time_ms: 1_700_000_000_123,
            control_plane_id: Uuid::new_v4(),
            service_id: Some(Uuid::new_v4()),
            route_id: None,
            consumer_id: None,
            node_id: Uuid::new_v4(),
            status: 404,
            latency_total_us: 7,
            latency_upstream_us: 0,
            latency_gateway_us: 7,
            bytes_in: 0,
            bytes_out: 42,
        }
    }

    #[test]
    fn compact_and_gzip_json_telemetry_decode_to_the_same_batch() {
        let record = record();
        let records = vec![record.clone(); 3];
        let expected = TelemetryBatch::from_records(record.node_id, u64::MAX, &records, 9);
        let compact = fleetgate_protocol::encode_telemetry(record.node_id, u64::MAX, &records, 9)
            .expect("encode");
        let gzip_json = fleetgate_protocol::encode_binary(&DpMessage::Telemetry {
            node_id: record.node_id,
            seq: u64::MAX,
            records,
            dropped: 9,
        })
        .expect("encode");
        for frame in [compact, gzip_json] {
            assert_eq!(
                decode_binary_frame(&frame, 1 << 20).expect("decode"),
                NodeFrame::Telemetry(Box::new(expected.clone()))
            );
        }
    }

    #[test]
    fn other_messages_and_bad_frames() {
        let ping = DpMessage::Ping {
            config_hash: "h".into(),
            telemetry_buffer_fill: Some(3),
        };
        let frame = fleetgate_protocol::encode_binary(&ping).expect("encode");
        assert_eq!(
            decode_binary_frame(&frame, 1 << 20).expect("decode"),
            NodeFrame::Message(ping)
        );
        let big = fleetgate_protocol::encode_binary(&DpMessage::Ping {
            config_hash: "a".repeat(10_000),
            telemetry_buffer_fill: None,
        })
        .expect("encode");
        assert!(matches!(
            decode_binary_frame(&big, 1_000),
            Err(FrameError::TooLarge { limit: 1_000 })
        ));
        assert!(matches!(
            decode_binary_frame(b"not gzip", 1_000),
            Err(FrameError::Decompress(_))
        ));
        let mut compact =
            fleetgate_protocol::encode_telemetry(Uuid::nil(), 1, &[record()], 0).expect("encode");
        compact.push(0);
        let err = decode_binary_frame(&compact, 1_000).expect_err("trailing byte");
        assert!(
            err.to_string()
                .contains("1 unexpected byte(s) after the last column (bytes_out of record 0)"),
            "{err}"
        );
    }
}
