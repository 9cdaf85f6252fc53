//! Encoding/decoding of WebSocket frame payloads.
//!
//! Text frames carry one JSON envelope. Binary frames carry gzip(JSON) and
//! are used for `reconfigure`, whose payload is large. Both directions are
//! size-capped on encode and decode: on decode to protect the receiver, on
//! encode so a sender learns about an oversize config locally instead of
//! having the peer drop the connection.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;

use crate::error::{truncate_for_log, ProtocolError, Result};
use crate::messages::{CpMessage, Message};

/// Largest frame accepted: a text frame, or a binary frame's *compressed*
/// payload. Matches Kong's 16 MiB cluster payload cap.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Largest decompressed binary payload. A gzip stream of zeros inflates
/// ~1000x, so without this a 16 MiB frame could demand 16 GiB of memory.
pub const MAX_DECOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// gzip magic bytes, checked first to give a clear error for non-gzip data.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Size caps applied by the `*_with_limits` functions. The plain functions
/// use [`FrameLimits::default`] (the protocol constants); tests and
/// memory-constrained deployments can tighten them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Max text frame / compressed binary frame size in bytes.
    pub max_frame_bytes: usize,
    /// Max decompressed binary payload size in bytes.
    pub max_decompressed_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_decompressed_bytes: MAX_DECOMPRESSED_BYTES,
        }
    }
}

fn check_frame(size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(ProtocolError::FrameTooLarge { size, limit });
    }
    Ok(())
}

/// Encodes a message as a JSON text frame.
pub fn encode_text<M: Message>(msg: &M) -> Result<String> {
    encode_text_with_limits(msg, FrameLimits::default())
}

/// [`encode_text`] with explicit limits.
pub fn encode_text_with_limits<M: Message>(msg: &M, limits: FrameLimits) -> Result<String> {
    let text = serde_json::to_string(msg).map_err(ProtocolError::Encode)?;
    check_frame(text.len(), limits.max_frame_bytes)?;
    Ok(text)
}

/// Decodes a JSON text frame into `M` ([`crate::DpMessage`] on the CP,
/// [`crate::CpMessage`] on the DP).
pub fn decode_text<M: Message>(text: &str) -> Result<M> {
    decode_text_with_limits(text, FrameLimits::default())
}

/// [`decode_text`] with explicit limits.
pub fn decode_text_with_limits<M: Message>(text: &str, limits: FrameLimits) -> Result<M> {
    check_frame(text.len(), limits.max_frame_bytes)?;
    decode_json(text.as_bytes())
}

/// Encodes a message as a binary frame: gzip of the message's JSON (`reconfigure` from the
/// CP, `telemetry` from the DP).
pub fn encode_binary<M: Message>(msg: &M) -> Result<Vec<u8>> {
    encode_binary_with_limits(msg, FrameLimits::default())
}

/// [`encode_binary`] with explicit limits.
pub fn encode_binary_with_limits<M: Message>(msg: &M, limits: FrameLimits) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(msg).map_err(ProtocolError::Encode)?;
    if json.len() > limits.max_decompressed_bytes {
        return Err(ProtocolError::DecompressedTooLarge {
            limit: limits.max_decompressed_bytes,
        });
    }
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&json).map_err(ProtocolError::Compress)?;
    let frame = encoder.finish().map_err(ProtocolError::Compress)?;
    check_frame(frame.len(), limits.max_frame_bytes)?;
    Ok(frame)
}

/// Decodes a binary frame (gzip of JSON) into a [`CpMessage`], enforcing
/// [`MAX_FRAME_BYTES`] on the input and [`MAX_DECOMPRESSED_BYTES`] on the
/// inflated payload.
pub fn decode_binary(bytes: &[u8]) -> Result<CpMessage> {
    decode_binary_with_limits(bytes, FrameLimits::default())
}

/// [`decode_binary`] with explicit limits.
pub fn decode_binary_with_limits(bytes: &[u8], limits: FrameLimits) -> Result<CpMessage> {
    decode_binary_message_with_limits(bytes, limits)
}

/// Decodes a binary frame (gzip of JSON) into `M`: [`crate::DpMessage`] on the CP (telemetry
/// batches), [`crate::CpMessage`] on the DP. Same limits as [`decode_binary`]; that function
/// stays CP-message-only so existing callers need no type annotation.
pub fn decode_binary_message<M: Message>(bytes: &[u8]) -> Result<M> {
    decode_binary_message_with_limits(bytes, FrameLimits::default())
}

/// [`decode_binary_message`] with explicit limits.
pub fn decode_binary_message_with_limits<M: Message>(
    bytes: &[u8],
    limits: FrameLimits,
) -> Result<M> {
    check_frame(bytes.len(), limits.max_frame_bytes)?;
    let json = gunzip_capped(bytes, limits.max_decompressed_bytes)?;
    decode_json(&json)
}

/// Inflates at most `limit` bytes. Reads through `take(limit + 1)` so an
/// over-limit stream is detected after allocating only `limit + 1` bytes,
/// and never trusts the gzip trailer's declared size for pre-allocation.
fn gunzip_capped(bytes: &[u8], limit: usize) -> Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Err(ProtocolError::Decompress(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "missing gzip header",
        )));
    }
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(ProtocolError::Decompress)?;
    if out.len() > limit {
        return Err(ProtocolError::DecompressedTooLarge { limit });
    }
    Ok(out)
}

/// Parses one envelope, turning serde's generic failure into a specific
/// error (unknown type / missing type / malformed known type).
fn decode_json<M: Message>(bytes: &[u8]) -> Result<M> {
    serde_json::from_slice::<M>(bytes).map_err(|err| classify::<M>(bytes, err))
}

/// Second, error-path-only parse that reads just the `type` field. It costs
/// a re-scan, but only for bad input, and keeps the happy path single-pass.
fn classify<M: Message>(bytes: &[u8], source: serde_json::Error) -> ProtocolError {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        ty: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(Envelope { ty: None }) => ProtocolError::MissingMessageType,
        Ok(Envelope { ty: Some(ty) }) if !M::TYPES.contains(&ty.as_str()) => {
            ProtocolError::UnknownMessageType {
                direction: M::DIRECTION,
                type_name: truncate_for_log(&ty),
            }
        }
        Ok(Envelope { ty: Some(ty) }) => ProtocolError::Malformed {
            type_name: Some(ty),
            source,
        },
        // Not even an object with a string `type`: report the original error.
        Err(_) => ProtocolError::Malformed {
            type_name: None,
            source,
        },
    }
}
