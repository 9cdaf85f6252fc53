//! Reading compact telemetry frames (the control plane's side; format in the module above).
//!
//! Every check names what is wrong and where, because the text goes back to the node in an
//! `error` message and into the control plane's log: "malformed telemetry frame at byte 93:
//! route_id of record 12 refers to dictionary entry 41, but the dictionary has 7 entries".

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    IdRef, TelemetryBatch, TelemetryColumns, TelemetryLimits, COLUMNS, TELEMETRY_FORMAT_VERSION,
    TELEMETRY_MAGIC,
};
use crate::error::{ProtocolError, Result};

/// Decodes a compact telemetry frame with the default [`TelemetryLimits`].
pub fn decode_telemetry(bytes: &[u8]) -> Result<TelemetryBatch> {
    decode_telemetry_with_limits(bytes, TelemetryLimits::default())
}

/// [`decode_telemetry`] with explicit limits.
pub fn decode_telemetry_with_limits(
    bytes: &[u8],
    limits: TelemetryLimits,
) -> Result<TelemetryBatch> {
    if bytes.len() > limits.max_frame_bytes {
        return Err(ProtocolError::FrameTooLarge {
            size: bytes.len(),
            limit: limits.max_frame_bytes,
        });
    }
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.take(TELEMETRY_MAGIC.len(), "the magic")?;
    if magic != TELEMETRY_MAGIC {
        return Err(r.malformed_at(
            0,
            format!("starts with {magic:02x?}, not the telemetry magic \"FGTB\""),
        ));
    }
    let version = r.byte("the format version")?;
    if version != TELEMETRY_FORMAT_VERSION {
        return Err(r.malformed_at(
            4,
            format!(
                "format version {version} is not supported (this side reads version \
                 {TELEMETRY_FORMAT_VERSION})"
            ),
        ));
    }
    let flags = r.byte("the flags")?;
    if flags != 0 {
        return Err(r.malformed_at(
            5,
            format!("unknown flags {flags:#04x} (version {TELEMETRY_FORMAT_VERSION} defines none)"),
        ));
    }
    let node_id = r.uuid("node_id")?;
    let seq_bytes: [u8; 8] = r
        .take(8, "seq")?
        .try_into()
        .map_err(|_| r.malformed("seq is not 8 bytes".into()))?;
    let seq = u64::from_le_bytes(seq_bytes);
    let dropped = r.varint_field("dropped")?;

    let count_at = r.pos;
    let n = r.varint_field("the record count")?;
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= limits.max_records)
        .ok_or(ProtocolError::TelemetryTooLarge {
            what: "records",
            size: usize::try_from(n).unwrap_or(usize::MAX),
            limit: limits.max_records,
        })?;
    let d_at = r.pos;
    let d = r.varint_field("the dictionary size")?;
    let d = usize::try_from(d)
        .ok()
        .filter(|d| *d <= limits.max_ids)
        .ok_or(ProtocolError::TelemetryTooLarge {
            what: "dictionary entries",
            size: usize::try_from(d).unwrap_or(usize::MAX),
            limit: limits.max_ids,
        })?;
    // Counts are checked against the bytes that follow before anything is allocated for
    // them, so a frame cannot make the receiver allocate more than its own size allows.
    if d * 16 > r.remaining() {
        return Err(r.malformed_at(
            d_at,
            format!(
                "the dictionary of {d} ids needs {} bytes, but {} follow",
                d * 16,
                r.remaining()
            ),
        ));
    }
    let mut ids = Vec::with_capacity(d);
    let mut seen: HashMap<Uuid, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(d, Default::default());
    for k in 0..d {
        let at = r.pos;
        let id = r.uuid("a dictionary entry")?;
        if let Some(first) = seen.insert(id, k) {
            return Err(r.malformed_at(
                at,
                format!("dictionary entry {k} ({id}) repeats entry {first}"),
            ));
        }
        ids.push(id);
    }
    if n.saturating_mul(COLUMNS) > r.remaining() {
        return Err(r.malformed_at(
            count_at,
            format!(
                "{n} records need at least {} bytes of columns, but {} follow",
                n * COLUMNS,
                r.remaining()
            ),
        ));
    }

    let mut columns = TelemetryColumns::with_capacity(n);
    let mut previous = 0i64;
    for i in 0..n {
        let delta = unzigzag(r.value("time_ms", i)?);
        previous = previous.wrapping_add(delta);
        columns.time_ms.push(previous);
    }
    r.id_column(&mut columns.control_plane, n, d, "control_plane_id", true)?;
    r.id_column(&mut columns.node, n, d, "node_id", true)?;
    r.id_column(&mut columns.service, n, d, "service_id", false)?;
    r.id_column(&mut columns.route, n, d, "route_id", false)?;
    r.id_column(&mut columns.consumer, n, d, "consumer_id", false)?;
    r.bounded_column(&mut columns.status, n, "status")?;
    r.bounded_column(&mut columns.latency_total_us, n, "latency_total_us")?;
    r.bounded_column(&mut columns.latency_upstream_us, n, "latency_upstream_us")?;
    r.bounded_column(&mut columns.latency_gateway_us, n, "latency_gateway_us")?;
    for i in 0..n {
        columns.bytes_in.push(r.value("bytes_in", i)?);
    }
    for i in 0..n {
        columns.bytes_out.push(r.value("bytes_out", i)?);
    }
    if r.remaining() > 0 {
        return Err(r.malformed(format!(
            "{} unexpected byte(s) after the last column (bytes_out of record {})",
            r.remaining(),
            n.saturating_sub(1)
        )));
    }
    Ok(TelemetryBatch {
        node_id,
        seq,
        dropped,
        ids,
        columns,
    })
}

/// Why a varint could not be read.
enum VarintError {
    Truncated,
    Overflow,
}

/// A cursor over the frame. Errors carry the offset where the offending field starts.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn malformed_at(&self, offset: usize, reason: String) -> ProtocolError {
        ProtocolError::MalformedTelemetry { offset, reason }
    }

    fn malformed(&self, reason: String) -> ProtocolError {
        self.malformed_at(self.pos, reason)
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(self.malformed(format!(
                "the frame ends inside {what} ({len} bytes needed, {} left)",
                self.remaining()
            )));
        }
        let slice = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn uuid(&mut self, what: &str) -> Result<Uuid> {
        let bytes = self.take(16, what)?;
        Uuid::from_slice(bytes).map_err(|_| self.malformed(format!("{what} is not 16 bytes")))
    }

    /// One LEB128 varint; the position moves only on success.
    #[inline]
    fn varint(&mut self) -> Result<u64, VarintError> {
        let mut pos = self.pos;
        let first = *self.bytes.get(pos).ok_or(VarintError::Truncated)?;
        pos += 1;
        if first < 0x80 {
            self.pos = pos;
            return Ok(u64::from(first));
        }
        let mut value = u64::from(first & 0x7f);
        let mut shift = 7;
        loop {
            let byte = *self.bytes.get(pos).ok_or(VarintError::Truncated)?;
            pos += 1;
            // The 10th byte holds bit 63 only: anything more does not fit in 64 bits (and a
            // continuation bit there would make the varint longer than 10 bytes).
            if shift == 63 && byte > 1 {
                return Err(VarintError::Overflow);
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                self.pos = pos;
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn varint_error(&self, error: VarintError, what: &str) -> ProtocolError {
        self.malformed(match error {
            VarintError::Truncated => format!("the frame ends inside {what}"),
            VarintError::Overflow => format!("{what} is a varint of more than 64 bits"),
        })
    }

    /// A header varint.
    fn varint_field(&mut self, what: &str) -> Result<u64> {
        self.varint().map_err(|e| self.varint_error(e, what))
    }

    /// Record `i`'s varint of column `column`.
    #[inline]
    fn value(&mut self, column: &str, i: usize) -> Result<u64> {
        self.varint()
            .map_err(|e| self.varint_error(e, &format!("{column} of record {i}")))
    }

    /// An id column: references within the dictionary of `d` entries, `0` only if optional.
    fn id_column(
        &mut self,
        out: &mut Vec<IdRef>,
        n: usize,
        d: usize,
        column: &str,
        required: bool,
    ) -> Result<()> {
        for i in 0..n {
            let at = self.pos;
            let reference = self.value(column, i)?;
            if reference > d as u64 {
                return Err(self.malformed_at(
                    at,
                    format!(
                        "{column} of record {i} refers to dictionary entry {}, but the dictionary \
                         has {d} entries",
                        reference - 1
                    ),
                ));
            }
            if reference == 0 && required {
                return Err(self.malformed_at(at, format!("{column} of record {i} is missing (0)")));
            }
            // Within the dictionary, whose size is capped far below `IdRef::MAX`.
            out.push(reference as IdRef);
        }
        Ok(())
    }

    /// A numeric column whose values must fit `T`.
    fn bounded_column<T: TryFrom<u64>>(
        &mut self,
        out: &mut Vec<T>,
        n: usize,
        column: &str,
    ) -> Result<()> {
        for i in 0..n {
            let at = self.pos;
            let value = self.value(column, i)?;
            match T::try_from(value) {
                Ok(v) => out.push(v),
                Err(_) => {
                    return Err(self.malformed_at(
                        at,
                        format!(
                            "{column} of record {i} is {value}, which does not fit in {}",
                            std::any::type_name::<T>()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

#[inline]
fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}
