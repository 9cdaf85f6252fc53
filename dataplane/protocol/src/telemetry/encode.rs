//! Writing compact telemetry frames (the data plane's side; format in the module above).

use std::collections::HashMap;

use uuid::Uuid;

use super::{IdRef, TelemetryLimits, COLUMNS, TELEMETRY_FORMAT_VERSION, TELEMETRY_MAGIC};
use crate::error::{ProtocolError, Result};
use crate::messages::RequestRecord;

/// Builds a batch's id dictionary: each distinct id gets the next reference (from 1).
#[derive(Debug, Default)]
pub(super) struct Dictionary {
    ids: Vec<Uuid>,
    /// foldhash: ids come from the node's own config, so SipHash's flooding resistance buys
    /// nothing, and this runs five times per record.
    index: HashMap<Uuid, IdRef, foldhash::fast::RandomState>,
}

impl Dictionary {
    /// The reference of `id` (`0` for none), adding it on first sight.
    #[inline]
    pub(super) fn intern(&mut self, id: Option<Uuid>) -> IdRef {
        let Some(id) = id else { return 0 };
        let next = self.ids.len();
        *self.index.entry(id).or_insert_with(|| {
            self.ids.push(id);
            // Saturates only past 4 billion distinct ids, far beyond any limit.
            IdRef::try_from(next + 1).unwrap_or(IdRef::MAX)
        })
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn into_ids(self) -> Vec<Uuid> {
        self.ids
    }
}

/// Appends `value` as an unsigned LEB128 varint.
#[inline]
pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Zigzag: small magnitudes of either sign become small unsigned numbers.
#[inline]
pub(super) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Encodes a `telemetry` message as a compact binary frame, with the default
/// [`TelemetryLimits`].
pub fn encode_telemetry(
    node_id: Uuid,
    seq: u64,
    records: &[RequestRecord],
    dropped: u64,
) -> Result<Vec<u8>> {
    encode_telemetry_with_limits(node_id, seq, records, dropped, TelemetryLimits::default())
}

/// [`encode_telemetry`] with explicit limits: a batch the receiver would refuse fails here,
/// so the sender learns it locally.
pub fn encode_telemetry_with_limits(
    node_id: Uuid,
    seq: u64,
    records: &[RequestRecord],
    dropped: u64,
    limits: TelemetryLimits,
) -> Result<Vec<u8>> {
    let n = records.len();
    if n > limits.max_records {
        return Err(ProtocolError::TelemetryTooLarge {
            what: "records",
            size: n,
            limit: limits.max_records,
        });
    }
    // The columns go first into their own buffer, interning ids on the way: the dictionary
    // precedes them on the wire but is complete only after the last record.
    let mut dictionary = Dictionary::default();
    let mut columns = Vec::with_capacity(n * (COLUMNS + 10));
    let mut previous = 0i64;
    for r in records {
        put_varint(&mut columns, zigzag(r.time_ms.wrapping_sub(previous)));
        previous = r.time_ms;
    }
    for r in records {
        put_varint(
            &mut columns,
            u64::from(dictionary.intern(Some(r.control_plane_id))),
        );
    }
    for r in records {
        put_varint(&mut columns, u64::from(dictionary.intern(Some(r.node_id))));
    }
    for r in records {
        put_varint(&mut columns, u64::from(dictionary.intern(r.service_id)));
    }
    for r in records {
        put_varint(&mut columns, u64::from(dictionary.intern(r.route_id)));
    }
    for r in records {
        put_varint(&mut columns, u64::from(dictionary.intern(r.consumer_id)));
    }
    for r in records {
        put_varint(&mut columns, u64::from(r.status));
    }
    for r in records {
        put_varint(&mut columns, u64::from(r.latency_total_us));
    }
    for r in records {
        put_varint(&mut columns, u64::from(r.latency_upstream_us));
    }
    for r in records {
        put_varint(&mut columns, u64::from(r.latency_gateway_us));
    }
    for r in records {
        put_varint(&mut columns, r.bytes_in);
    }
    for r in records {
        put_varint(&mut columns, r.bytes_out);
    }
    if dictionary.len() > limits.max_ids {
        return Err(ProtocolError::TelemetryTooLarge {
            what: "dictionary entries",
            size: dictionary.len(),
            limit: limits.max_ids,
        });
    }

    let ids = dictionary.into_ids();
    let mut frame = Vec::with_capacity(64 + ids.len() * 16 + columns.len());
    frame.extend_from_slice(&TELEMETRY_MAGIC);
    frame.push(TELEMETRY_FORMAT_VERSION);
    frame.push(0); // flags: none defined
    frame.extend_from_slice(node_id.as_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    put_varint(&mut frame, dropped);
    put_varint(&mut frame, n as u64);
    put_varint(&mut frame, ids.len() as u64);
    for id in &ids {
        frame.extend_from_slice(id.as_bytes());
    }
    frame.extend_from_slice(&columns);
    if frame.len() > limits.max_frame_bytes {
        return Err(ProtocolError::FrameTooLarge {
            size: frame.len(),
            limit: limits.max_frame_bytes,
        });
    }
    Ok(frame)
}
