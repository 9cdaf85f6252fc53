//! Round-trip and hardening tests for the public wire API.

// A failing unwrap is a failing test, which is exactly what we want here.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use fleetgate_protocol::{
    decode_binary, decode_binary_with_limits, decode_text, encode_binary, encode_text, CpMessage,
    Direction, DpMessage, FrameLimits, Message, PluginInfo, ProtocolError, RequestRecord,
    MAX_DECOMPRESSED_BYTES, MAX_FRAME_BYTES,
};
use serde_json::json;
use uuid::Uuid;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn record() -> RequestRecord {
    RequestRecord {
        time_ms: 1_764_000_000_000,
        control_plane_id: id(1),
        service_id: Some(id(2)),
        route_id: None,
        consumer_id: Some(id(3)),
        node_id: id(4),
        status: 503,
        latency_total_us: 120,
        latency_upstream_us: 100,
        latency_gateway_us: 20,
        bytes_in: 512,
        bytes_out: 4096,
    }
}

fn dp_messages() -> Vec<DpMessage> {
    vec![
        DpMessage::Hello {
            node_id: id(4),
            hostname: "dp-1".into(),
            version: "1.2.3".into(),
            config_hash: "ab".repeat(32),
            plugins: vec![PluginInfo {
                name: "rate-limiting".into(),
                version: "1.0.0".into(),
            }],
            labels: BTreeMap::from([("region".into(), "eu-west-1".into())]),
        },
        DpMessage::Applied {
            config_hash: "h1".into(),
        },
        DpMessage::Rejected {
            config_hash: "h2".into(),
            errors: vec!["route r1: unknown plugin `foo`".into()],
        },
        DpMessage::Ping {
            config_hash: "h1".into(),
            telemetry_buffer_fill: Some(12),
        },
        DpMessage::Telemetry {
            node_id: id(4),
            seq: 7,
            records: vec![record(), record()],
            dropped: 3,
        },
    ]
}

fn cp_messages() -> Vec<CpMessage> {
    vec![
        CpMessage::Reconfigure {
            version: 42,
            config_hash: "cd".repeat(32),
            config: json!({"services": [{"id": id(2), "name": "s", "port": 80}], "routes": []}),
            control_plane_id: Some(id(3)),
        },
        CpMessage::Pong {
            cp_time_ms: 1_764_000_000_123,
        },
        CpMessage::Ack { seq: 7 },
        CpMessage::License {
            signed_blob: "eyJ...sig".into(),
        },
        CpMessage::Refused {
            reason: "data plane version 1.3.0 is newer".into(),
        },
        CpMessage::Error {
            message: "bad telemetry".into(),
        },
    ]
}

/// Every variant must be exercised, and its `type` tag must be the one
/// advertised in `Message::TYPES` (which drives unknown-type detection).
fn assert_covers_all_types<M: Message>(msgs: &[M]) {
    let seen: BTreeSet<_> = msgs.iter().map(Message::message_type).collect();
    let all: BTreeSet<_> = M::TYPES.iter().copied().collect();
    assert_eq!(seen, all);
    for m in msgs {
        let v = serde_json::to_value(m).unwrap();
        assert_eq!(v["type"], m.message_type());
    }
}

#[test]
fn dp_messages_round_trip_text() {
    let msgs = dp_messages();
    assert_covers_all_types(&msgs);
    for m in msgs {
        let text = encode_text(&m).unwrap();
        assert_eq!(decode_text::<DpMessage>(&text).unwrap(), m, "{text}");
    }
}

#[test]
fn cp_messages_round_trip_text_and_binary() {
    let msgs = cp_messages();
    assert_covers_all_types(&msgs);
    for m in msgs {
        let text = encode_text(&m).unwrap();
        assert_eq!(decode_text::<CpMessage>(&text).unwrap(), m, "{text}");
        let bin = encode_binary(&m).unwrap();
        assert_eq!(&bin[..2], &[0x1f, 0x8b], "binary frames are gzip");
        assert_eq!(decode_binary(&bin).unwrap(), m);
        assert_eq!(m.prefers_binary(), m.message_type() == "reconfigure");
    }
}

#[test]
fn envelope_shape_is_snake_case_tagged() {
    let text = encode_text(&CpMessage::Ack { seq: 9 }).unwrap();
    assert_eq!(text, r#"{"type":"ack","seq":9}"#);
    let m: DpMessage = decode_text(r#"{"type":"applied","config_hash":"x"}"#).unwrap();
    assert_eq!(
        m,
        DpMessage::Applied {
            config_hash: "x".into()
        }
    );
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let m: DpMessage =
        decode_text(r#"{"type":"ping","config_hash":"h","from_the_future":{"a":[1]}}"#).unwrap();
    assert_eq!(
        m,
        DpMessage::Ping {
            config_hash: "h".into(),
            telemetry_buffer_fill: None,
        }
    );
    // Optional collections may be omitted by older peers.
    let m: DpMessage = decode_text(&format!(
        r#"{{"type":"hello","node_id":"{}","hostname":"h","version":"1.0.0","config_hash":"","extra":1}}"#,
        id(4)
    ))
    .unwrap();
    assert!(
        matches!(m, DpMessage::Hello { plugins, labels, .. } if plugins.is_empty() && labels.is_empty())
    );
    let m: CpMessage = decode_text(r#"{"type":"pong"}"#).unwrap();
    assert_eq!(m, CpMessage::Pong { cp_time_ms: 0 });
}

#[test]
fn unknown_type_is_an_error_naming_it() {
    let err = decode_text::<CpMessage>(r#"{"type":"teleport","x":1}"#).unwrap_err();
    assert!(
        matches!(&err, ProtocolError::UnknownMessageType { type_name, direction: Direction::ControlPlaneToDataPlane } if type_name == "teleport"),
        "{err:?}"
    );
    assert!(err.to_string().contains("teleport"), "{err}");
    // A DP message sent in the wrong direction is unknown too.
    let err = decode_text::<CpMessage>(r#"{"type":"hello"}"#).unwrap_err();
    assert!(
        matches!(err, ProtocolError::UnknownMessageType { .. }),
        "{err:?}"
    );
    // Also through binary framing.
    let bin = gzip(br#"{"type":"teleport"}"#);
    let err = decode_binary(&bin).unwrap_err();
    assert!(err.to_string().contains("teleport"), "{err}");
    // Attacker-sized type names are truncated in the error.
    let huge = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
    let err = decode_text::<DpMessage>(&huge).unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn malformed_input_is_classified() {
    let err = decode_text::<DpMessage>(r#"{"config_hash":"h"}"#).unwrap_err();
    assert!(matches!(err, ProtocolError::MissingMessageType), "{err:?}");
    let err = decode_text::<DpMessage>(r#"{"type":"ack"#).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::Malformed {
                type_name: None,
                ..
            }
        ),
        "{err:?}"
    );
    let err = decode_text::<DpMessage>(r#"{"type":"telemetry","seq":1}"#).unwrap_err();
    assert!(
        matches!(&err, ProtocolError::Malformed { type_name: Some(t), .. } if t == "telemetry"),
        "{err:?}"
    );
    assert!(err.to_string().contains("node_id"), "{err}");
    let err = decode_binary(b"not gzip").unwrap_err();
    assert!(matches!(err, ProtocolError::Decompress(_)), "{err:?}");
    let mut truncated = encode_binary(&CpMessage::Ack { seq: 1 }).unwrap();
    truncated.truncate(truncated.len() - 4);
    assert!(decode_binary(&truncated).is_err());
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn oversize_frames_are_rejected() {
    let big = vec![0u8; MAX_FRAME_BYTES + 1];
    let err = decode_binary(&big).unwrap_err();
    assert!(
        matches!(err, ProtocolError::FrameTooLarge { size, limit } if size == MAX_FRAME_BYTES + 1 && limit == MAX_FRAME_BYTES),
        "{err:?}"
    );
    let text = format!(
        r#"{{"type":"ping","config_hash":"{}"}}"#,
        "a".repeat(MAX_FRAME_BYTES)
    );
    let err = decode_text::<DpMessage>(&text).unwrap_err();
    assert!(
        matches!(err, ProtocolError::FrameTooLarge { .. }),
        "{err:?}"
    );
    // Encoding refuses too, so a sender notices before the peer disconnects.
    let msg = DpMessage::Ping {
        config_hash: "a".repeat(MAX_FRAME_BYTES),
        telemetry_buffer_fill: None,
    };
    assert!(matches!(
        encode_text(&msg),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
}

#[test]
fn gzip_bomb_is_rejected_by_decompressed_cap() {
    // A valid message padded with whitespace: tiny compressed, huge inflated.
    let mut payload = br#"{"type":"ack","seq":1}"#.to_vec();
    payload.resize(payload.len() + 4096, b' ');
    let bomb = gzip(&payload);
    let limits = FrameLimits {
        max_frame_bytes: MAX_FRAME_BYTES,
        max_decompressed_bytes: 1024,
    };
    assert!(bomb.len() < 1024);
    let err = decode_binary_with_limits(&bomb, limits).unwrap_err();
    assert!(
        matches!(err, ProtocolError::DecompressedTooLarge { limit: 1024 }),
        "{err:?}"
    );
    // The same bytes are fine under the default cap.
    assert_eq!(decode_binary(&bomb).unwrap(), CpMessage::Ack { seq: 1 });
}

#[test]
fn gzip_bomb_is_rejected_at_default_cap() {
    // ~257 MiB of zeros compresses to well under MAX_FRAME_BYTES.
    let chunk = vec![0u8; 1024 * 1024];
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    for _ in 0..(MAX_DECOMPRESSED_BYTES / chunk.len() + 1) {
        enc.write_all(&chunk).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < MAX_FRAME_BYTES, "{}", bomb.len());
    let err = decode_binary(&bomb).unwrap_err();
    assert!(
        matches!(err, ProtocolError::DecompressedTooLarge { limit } if limit == MAX_DECOMPRESSED_BYTES),
        "{err:?}"
    );
}

#[test]
fn telemetry_record_keys_are_exactly_the_allow_list() {
    // Privacy contract: ids and numbers only. Adding a field here is a
    // deliberate, reviewed change — never paths, headers, bodies or IPs.
    const ALLOWED: &[&str] = &[
        "time_ms",
        "control_plane_id",
        "service_id",
        "route_id",
        "consumer_id",
        "node_id",
        "status",
        "latency_total_us",
        "latency_upstream_us",
        "latency_gateway_us",
        "bytes_in",
        "bytes_out",
    ];
    let value = serde_json::to_value(record()).unwrap();
    let keys: BTreeSet<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ALLOWED.iter().copied().collect::<BTreeSet<_>>());
    for (key, v) in value.as_object().unwrap() {
        assert!(
            v.is_number() || v.is_null() || v.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok()),
            "{key} must be a number or id, got {v}"
        );
    }
    // Smuggled fields from a peer are dropped, not stored.
    let mut with_path = value.clone();
    with_path["path"] = json!("/secret?token=x");
    with_path["client_ip"] = json!("10.0.0.1");
    let back: RequestRecord = serde_json::from_value(with_path).unwrap();
    assert_eq!(serde_json::to_value(back).unwrap(), value);
}
