//! Compact binary telemetry frames: how a data plane sends `telemetry {node_id, seq, records,
//! dropped}` (docs/architecture.md) to the control plane.
//!
//! The logical message is [`crate::DpMessage::Telemetry`]; only its bytes differ from the
//! gzip-of-JSON binary frame ([`crate::encode_binary`]), which receivers keep accepting. The
//! two are told apart by their first bytes: gzip starts `1f 8b`, this format starts with the
//! ASCII magic `FGTB`.
//!
//! Why a format of its own: JSON spells every record's five UUIDs as 36-character strings,
//! and parsing them was most of the control plane's ingest time. A batch's records share a
//! handful of distinct ids (one control plane, one node, the services, routes and consumers of
//! one config), so each id is sent once in a dictionary and records refer to it by a small
//! number; numbers are LEB128 varints laid out column by column.
//!
//! # Wire format, version 1
//!
//! Integers are unsigned LEB128 varints ("varint", at most 10 bytes, value < 2^64) unless
//! stated otherwise; a UUID is its 16 bytes in RFC 4122 (big-endian) order.
//!
//! | field | encoding |
//! |---|---|
//! | magic | 4 bytes `46 47 54 42` (`FGTB`) |
//! | version | 1 byte, `1` |
//! | flags | 1 byte, `0` (no flags are defined; a receiver refuses any it does not know) |
//! | node_id | UUID |
//! | seq | 8 bytes, u64 little-endian |
//! | dropped | varint |
//! | record count `n` | varint |
//! | dictionary size `d` | varint |
//! | dictionary | `d` UUIDs, all distinct |
//! | 12 columns | each `n` varints, in the order below |
//!
//! Columns, record `i` of each column belonging to record `i` of the batch:
//!
//! 1. `time_ms`: zigzag-encoded difference to the previous record's `time_ms` (the first
//!    record's is taken relative to 0), wrapping in i64. Records are nearly in time order, so
//!    most differences take one or two bytes.
//! 2. `control_plane_id`, 3. `node_id`, 4. `service_id`, 5. `route_id`, 6. `consumer_id`: id
//!    references — `0` is "none", `k` is dictionary entry `k - 1`. `control_plane_id` and
//!    `node_id` are required (never `0`).
//! 7. `status` (at most 65535), 8. `latency_total_us`, 9. `latency_upstream_us`,
//!    10. `latency_gateway_us` (each at most 2^32 - 1), 11. `bytes_in`, 12. `bytes_out`.
//!
//! The frame ends after the last column: trailing bytes are an error.
//!
//! A 5,000-record batch takes ~20 bytes per record in the benches, less than the gzip of its
//! JSON (24-35), without compressing on either side; docs/telemetry.md has the figures and why
//! deflate does not pay.
//!
//! # Decoding is strict
//!
//! [`decode_telemetry`] bounds the frame size, record count and dictionary size
//! ([`TelemetryLimits`]), checks every declared count against the bytes that are left before
//! allocating for it, and answers every malformed input with
//! [`crate::ProtocolError::MalformedTelemetry`] naming the field, the record and the byte
//! offset — never a panic. Its result, [`TelemetryBatch`], keeps the columns as decoded, so a
//! receiver can aggregate by id reference without materialising a record per row.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use uuid::Uuid;

use crate::messages::{DpMessage, RequestRecord};

pub use decode::{decode_telemetry, decode_telemetry_with_limits};
pub use encode::{encode_telemetry, encode_telemetry_with_limits};

/// First bytes of a compact telemetry frame (`FGTB`). Never the start of a gzip stream
/// (`1f 8b`) or of a JSON text.
pub const TELEMETRY_MAGIC: [u8; 4] = *b"FGTB";

/// The format version this crate writes and reads.
pub const TELEMETRY_FORMAT_VERSION: u8 = 1;

/// Default cap on records per telemetry frame. Data planes send at most 5,000; the headroom
/// lets a later node send larger batches without a control-plane change.
pub const MAX_TELEMETRY_RECORDS: usize = 65_536;

/// Default cap on dictionary entries per telemetry frame.
pub const MAX_TELEMETRY_IDS: usize = 65_536;

/// Columns in a version 1 frame; every record takes at least one byte in each.
pub(crate) const COLUMNS: usize = 12;

/// Whether `bytes` is a compact telemetry frame (by its magic), rather than gzip of JSON.
pub fn is_telemetry_frame(bytes: &[u8]) -> bool {
    bytes.starts_with(&TELEMETRY_MAGIC)
}

/// Size caps of [`decode_telemetry_with_limits`] and [`encode_telemetry_with_limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelemetryLimits {
    /// Largest frame, bytes.
    pub max_frame_bytes: usize,
    /// Most records in one frame.
    pub max_records: usize,
    /// Most dictionary entries in one frame.
    pub max_ids: usize,
}

impl Default for TelemetryLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: crate::MAX_FRAME_BYTES,
            max_records: MAX_TELEMETRY_RECORDS,
            max_ids: MAX_TELEMETRY_IDS,
        }
    }
}

/// A reference into a batch's id dictionary: `0` is "none", `k` is [`TelemetryBatch::ids`]
/// entry `k - 1`. Within one batch, equal references mean equal ids and vice versa (the
/// dictionary holds no duplicates), so references can stand in for ids when grouping.
pub type IdRef = u32;

/// The records of a batch, column by column (all columns have the batch's length).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryColumns {
    /// Request start, Unix epoch milliseconds.
    pub time_ms: Vec<i64>,
    /// Control plane (never `0`).
    pub control_plane: Vec<IdRef>,
    /// Node that proxied the request (never `0`).
    pub node: Vec<IdRef>,
    /// Matched service, `0` for none.
    pub service: Vec<IdRef>,
    /// Matched route, `0` for none.
    pub route: Vec<IdRef>,
    /// Authenticated consumer, `0` for none.
    pub consumer: Vec<IdRef>,
    /// HTTP status.
    pub status: Vec<u16>,
    /// Total latency, µs.
    pub latency_total_us: Vec<u32>,
    /// Upstream wait, µs.
    pub latency_upstream_us: Vec<u32>,
    /// Time in the gateway, µs.
    pub latency_gateway_us: Vec<u32>,
    /// Request bytes.
    pub bytes_in: Vec<u64>,
    /// Response bytes.
    pub bytes_out: Vec<u64>,
}

impl TelemetryColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            time_ms: Vec::with_capacity(n),
            control_plane: Vec::with_capacity(n),
            node: Vec::with_capacity(n),
            service: Vec::with_capacity(n),
            route: Vec::with_capacity(n),
            consumer: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            latency_total_us: Vec::with_capacity(n),
            latency_upstream_us: Vec::with_capacity(n),
            latency_gateway_us: Vec::with_capacity(n),
            bytes_in: Vec::with_capacity(n),
            bytes_out: Vec::with_capacity(n),
        }
    }
}

/// A decoded telemetry batch: the logical `telemetry` message with its records kept as
/// columns and their ids as [`IdRef`]s into one dictionary.
///
/// Built only by [`decode_telemetry`] or [`TelemetryBatch::from_records`], so its invariants
/// hold: every column has [`Self::len`] entries, every reference is within the dictionary,
/// control plane and node references are never `0`, and the dictionary has no duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryBatch {
    node_id: Uuid,
    seq: u64,
    dropped: u64,
    ids: Vec<Uuid>,
    columns: TelemetryColumns,
}

impl TelemetryBatch {
    /// The batch of a `telemetry` message given as records (a JSON frame, or a test). Equal to
    /// what decoding [`encode_telemetry`]'s frame of the same records gives: ids are interned
    /// column by column in wire order, so the dictionaries match too.
    pub fn from_records(node_id: Uuid, seq: u64, records: &[RequestRecord], dropped: u64) -> Self {
        let mut dictionary = encode::Dictionary::default();
        let mut intern = |id: fn(&RequestRecord) -> Option<Uuid>| -> Vec<IdRef> {
            records.iter().map(|r| dictionary.intern(id(r))).collect()
        };
        let control_plane = intern(|r| Some(r.control_plane_id));
        let node = intern(|r| Some(r.node_id));
        let service = intern(|r| r.service_id);
        let route = intern(|r| r.route_id);
        let consumer = intern(|r| r.consumer_id);
        let columns = TelemetryColumns {
            time_ms: records.iter().map(|r| r.time_ms).collect(),
            control_plane,
            node,
            service,
            route,
            consumer,
            status: records.iter().map(|r| r.status).collect(),
            latency_total_us: records.iter().map(|r| r.latency_total_us).collect(),
            latency_upstream_us: records.iter().map(|r| r.latency_upstream_us).collect(),
            latency_gateway_us: records.iter().map(|r| r.latency_gateway_us).collect(),
            bytes_in: records.iter().map(|r| r.bytes_in).collect(),
            bytes_out: records.iter().map(|r| r.bytes_out).collect(),
        };
        Self {
            node_id,
            seq,
            dropped,
            ids: dictionary.into_ids(),
            columns,
        }
    }

    /// The sending node, as the batch names it.
    pub fn node_id(&self) -> Uuid {
        self.node_id
    }

    /// The batch's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Records the node dropped (buffer full) before forming this batch.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.columns.time_ms.len()
    }

    /// Whether the batch holds no records (it may still carry a `dropped` count).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id dictionary: reference `k` is entry `k - 1`.
    pub fn ids(&self) -> &[Uuid] {
        &self.ids
    }

    /// The id a reference stands for (`None` for `0`, or a reference outside the dictionary).
    pub fn id(&self, reference: IdRef) -> Option<Uuid> {
        let index = usize::try_from(reference).ok()?.checked_sub(1)?;
        self.ids.get(index).copied()
    }

    /// The records, column by column.
    pub fn columns(&self) -> &TelemetryColumns {
        &self.columns
    }

    /// Record `i` as a [`RequestRecord`], `None` past the end.
    pub fn record(&self, i: usize) -> Option<RequestRecord> {
        let c = &self.columns;
        Some(RequestRecord {
            time_ms: *c.time_ms.get(i)?,
            control_plane_id: self.id(*c.control_plane.get(i)?).unwrap_or_default(),
            service_id: self.id(*c.service.get(i)?),
            route_id: self.id(*c.route.get(i)?),
            consumer_id: self.id(*c.consumer.get(i)?),
            node_id: self.id(*c.node.get(i)?).unwrap_or_default(),
            status: *c.status.get(i)?,
            latency_total_us: *c.latency_total_us.get(i)?,
            latency_upstream_us: *c.latency_upstream_us.get(i)?,
            latency_gateway_us: *c.latency_gateway_us.get(i)?,
            bytes_in: *c.bytes_in.get(i)?,
            bytes_out: *c.bytes_out.get(i)?,
        })
    }

    /// Every record, in batch order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RequestRecord> + '_ {
        (0..self.len()).map(|i| {
            // In range by construction: every column has `len()` entries.
            self.record(i)
                .unwrap_or_else(|| unreachable!("record {i} within the batch"))
        })
    }

    /// The batch as the logical message.
    pub fn to_message(&self) -> DpMessage {
        DpMessage::Telemetry {
            node_id: self.node_id,
            seq: self.seq,
            records: self.records().collect(),
            dropped: self.dropped,
        }
    }
}
