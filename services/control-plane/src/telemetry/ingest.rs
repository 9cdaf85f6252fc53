//! One telemetry batch into the store (docs/telemetry.md, "Ingest").
//!
//! The batch is aggregated in memory first — records grouped by 10 s bucket and dimensions,
//! usually a few hundred groups for 5,000 records — so the transaction writes each group once
//! instead of touching a row per record.

use std::collections::{BTreeMap, HashMap};

use std::io::Read;

use fleetgate_protocol::{DpMessage, ProtocolError, RequestRecord};
use serde::Deserialize;
use uuid::Uuid;

use super::{Granularity, DAY_SECS};
use crate::store::{
    AggregateKey, AggregateValues, NodeRowCache, Store, StoreResult, TelemetryBatchWrite,
};

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
    /// Not a message of the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// `telemetry` read straight into its fields. The protocol's `DpMessage` is an internally
/// tagged enum, which serde decodes by first buffering the whole object into a generic tree —
/// for 5,000 records that costs more than ingesting them. Same semantics: unknown fields are
/// ignored, `records` and `dropped` default to empty and 0.
#[derive(Deserialize)]
struct TelemetryFrame {
    #[serde(rename = "type")]
    kind: String,
    node_id: Uuid,
    seq: u64,
    #[serde(default)]
    records: Vec<RequestRecord>,
    #[serde(default)]
    dropped: u64,
}

/// Decodes a node's binary frame (gzip of a JSON message, at most `max_inflated` bytes once
/// inflated): telemetry through a direct path, anything else through the protocol crate.
pub fn decode_binary_frame(bytes: &[u8], max_inflated: usize) -> Result<DpMessage, FrameError> {
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
    if let Ok(frame) = serde_json::from_slice::<TelemetryFrame>(&json) {
        if frame.kind == "telemetry" {
            return Ok(DpMessage::Telemetry {
                node_id: frame.node_id,
                seq: frame.seq,
                records: frame.records,
                dropped: frame.dropped,
            });
        }
    }
    // Another message, or a malformed one: the protocol crate decodes it or names the error.
    let text = String::from_utf8_lossy(&json);
    let limits = fleetgate_protocol::FrameLimits {
        max_frame_bytes: max_inflated,
        max_decompressed_bytes: max_inflated,
    };
    Ok(fleetgate_protocol::decode_text_with_limits(&text, limits)?)
}

/// Who sent a batch, as decided by the session (not by the batch's own fields).
#[derive(Debug, Clone, Copy)]
pub struct BatchOrigin {
    /// Organisation of the control plane.
    pub organization_id: Uuid,
    /// The session's control plane.
    pub control_plane_id: Uuid,
    /// The session's node.
    pub node_id: Uuid,
}

/// What became of a batch. Every outcome is acknowledged: the node must not re-send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Committed.
    Stored {
        /// Records counted.
        records: usize,
    },
    /// `(node_id, seq)` was committed before; nothing changed.
    Duplicate,
    /// Not stored; the reason is sent to the node in an `error` message.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Why a batch is refused, if it is: it must come from the session's node and carry only
/// records of the session's control plane.
pub fn refusal(origin: &BatchOrigin, node_id: Uuid, records: &[RequestRecord]) -> Option<String> {
    if node_id != origin.node_id {
        return Some(format!(
            "telemetry batch names node {node_id} but this connection is node {}",
            origin.node_id
        ));
    }
    // The nil id means "not known yet" (a node that proxied from a local config before its
    // first config from this control plane): the certificate already proves which control
    // plane the node belongs to, so those records count for it.
    if let Some(r) = records
        .iter()
        .find(|r| r.control_plane_id != origin.control_plane_id && !r.control_plane_id.is_nil())
    {
        return Some(format!(
            "telemetry batch holds records of control plane {} but this node belongs to {}; \
             the batch was not stored",
            r.control_plane_id, origin.control_plane_id
        ));
    }
    if let Some(r) = records.iter().find(|r| r.node_id != origin.node_id) {
        return Some(format!(
            "telemetry batch holds records of node {} but was sent by node {}; the batch was \
             not stored",
            r.node_id, origin.node_id
        ));
    }
    None
}

/// Dimensions of a record within one batch (control plane and node are the batch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey {
    bucket_start: i64,
    service: Option<Uuid>,
    route: Option<Uuid>,
    consumer: Option<Uuid>,
    status: u16,
}

fn id_text(id: Option<Uuid>) -> String {
    id.map(|u| u.to_string()).unwrap_or_default()
}

/// `YYYY-MM-DD` of a UTC day number (days since 1970-01-01).
pub fn day_name(day: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(day * DAY_SECS) {
        Ok(t) => format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        // Out of the representable range: only a broken clock sends this.
        Err(_) => "0000-00-00".to_string(),
    }
}

/// Aggregates a batch's records in memory. Records older than `horizon_10s` (Unix seconds) are
/// billed but not aggregated: their 10 s buckets are past retention, and rebuilding a minute
/// from a partly pruned set of 10 s buckets would lose data.
pub fn aggregate(
    origin: &BatchOrigin,
    seq: u64,
    records: &[RequestRecord],
    dropped: u64,
    received_at: i64,
    horizon_10s: i64,
) -> TelemetryBatchWrite {
    // foldhash: the key is hashed once per record, SipHash's DoS resistance buys nothing for
    // keys the node's own config bounds.
    let mut groups: HashMap<GroupKey, AggregateValues, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(256, foldhash::fast::RandomState::default());
    let mut days: BTreeMap<i64, i64> = BTreeMap::new();
    let mut current_day = (i64::MIN, 0i64);
    for r in records {
        let secs = r.time_ms.div_euclid(1000);
        // Records of one batch are nearly always from one day: count runs, not a map lookup
        // per record.
        let day = secs.div_euclid(DAY_SECS);
        if day == current_day.0 {
            current_day.1 += 1;
        } else {
            if current_day.1 > 0 {
                *days.entry(current_day.0).or_default() += current_day.1;
            }
            current_day = (day, 1);
        }
        let bucket_start = Granularity::TenSeconds.floor(secs);
        if bucket_start < horizon_10s {
            continue;
        }
        let values = groups
            .entry(GroupKey {
                bucket_start,
                service: r.service_id,
                route: r.route_id,
                consumer: r.consumer_id,
                status: r.status,
            })
            .or_default();
        values.request_count += 1;
        values.error_count += i64::from(r.status >= 400);
        values.bytes_in += i64::try_from(r.bytes_in).unwrap_or(i64::MAX);
        values.bytes_out += i64::try_from(r.bytes_out).unwrap_or(i64::MAX);
        values.latency.add(r.latency_total_us);
    }
    if current_day.1 > 0 {
        *days.entry(current_day.0).or_default() += current_day.1;
    }
    let cp = origin.control_plane_id.to_string();
    let node = origin.node_id.to_string();
    let groups = groups
        .into_iter()
        .map(|(k, v)| {
            (
                AggregateKey {
                    bucket_start: k.bucket_start,
                    control_plane_id: cp.clone(),
                    service_id: id_text(k.service),
                    route_id: id_text(k.route),
                    consumer_id: id_text(k.consumer),
                    node_id: node.clone(),
                    status: i64::from(k.status),
                },
                v,
            )
        })
        .collect();
    TelemetryBatchWrite {
        organization_id: origin.organization_id,
        control_plane_id: origin.control_plane_id,
        node_id: origin.node_id,
        seq,
        records: records.len() as u64,
        dropped,
        received_at,
        groups,
        api_calls_by_day: days.into_iter().map(|(d, n)| (day_name(d), n)).collect(),
    }
}

/// A `telemetry` message as received.
#[derive(Debug, Clone, Copy)]
pub struct IncomingBatch<'a> {
    /// The node the batch says it comes from.
    pub node_id: Uuid,
    /// Its sequence number.
    pub seq: u64,
    /// Its records.
    pub records: &'a [RequestRecord],
    /// Records the node dropped before forming it.
    pub dropped: u64,
}

/// Ingests one batch at `now` (Unix seconds): refuses it, or aggregates and commits it (a
/// duplicate changes nothing). `cache` is the session's (one per connected node).
pub async fn ingest_batch(
    store: &Store,
    cache: &mut NodeRowCache,
    origin: &BatchOrigin,
    batch: IncomingBatch<'_>,
    now: i64,
    horizon_10s: i64,
) -> StoreResult<IngestOutcome> {
    if let Some(reason) = refusal(origin, batch.node_id, batch.records) {
        return Ok(IngestOutcome::Refused { reason });
    }
    let write = aggregate(
        origin,
        batch.seq,
        batch.records,
        batch.dropped,
        now,
        horizon_10s,
    );
    if store.ingest_telemetry(write, cache).await? {
        Ok(IngestOutcome::Stored {
            records: batch.records.len(),
        })
    } else {
        Ok(IngestOutcome::Duplicate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_frames_decode_like_the_protocol_crate() {
        let record = RequestRecord {
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
        };
        let messages = [
            DpMessage::Telemetry {
                node_id: record.node_id,
                seq: u64::MAX,
                records: vec![record.clone(); 3],
                dropped: 9,
            },
            DpMessage::Ping {
                config_hash: "h".into(),
                telemetry_buffer_fill: Some(3),
            },
        ];
        for message in messages {
            let frame = fleetgate_protocol::encode_binary(&message).expect("encode");
            assert_eq!(
                decode_binary_frame(&frame, 1 << 20).expect("decode"),
                message
            );
        }
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
    }

    #[test]
    fn day_names_are_utc_dates() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(19_723), "2024-01-01");
        assert_eq!(day_name(-1), "1969-12-31");
    }
}
