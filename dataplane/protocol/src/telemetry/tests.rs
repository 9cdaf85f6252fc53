#![allow(clippy::unwrap_used)]

use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::*;
use crate::error::ProtocolError;

fn record(i: u64, cp: Uuid, node: Uuid) -> RequestRecord {
    RequestRecord {
        time_ms: 1_764_000_000_000 + (i as i64) * 3,
        control_plane_id: cp,
        service_id: Some(Uuid::from_u128(100 + u128::from(i % 20))),
        route_id: (!i.is_multiple_of(7)).then(|| Uuid::from_u128(200 + u128::from(i % 50))),
        consumer_id: i
            .is_multiple_of(3)
            .then(|| Uuid::from_u128(300 + u128::from(i % 5))),
        node_id: node,
        status: [200, 201, 404, 429, 500][(i % 5) as usize],
        latency_total_us: (i * 7_919 % 1_000_000) as u32,
        latency_upstream_us: (i * 104_729 % 800_000) as u32,
        latency_gateway_us: (i % 200) as u32,
        bytes_in: i * 13 % 2_000,
        bytes_out: i * 31 % 20_000,
    }
}

fn records(n: u64) -> Vec<RequestRecord> {
    let (cp, node) = (Uuid::from_u128(1), Uuid::from_u128(2));
    (0..n).map(|i| record(i, cp, node)).collect()
}

fn round_trip(node: Uuid, seq: u64, records: &[RequestRecord], dropped: u64) -> TelemetryBatch {
    let frame = encode_telemetry(node, seq, records, dropped).unwrap();
    assert!(is_telemetry_frame(&frame));
    let batch = decode_telemetry(&frame).unwrap();
    assert_eq!(
        (batch.node_id(), batch.seq(), batch.dropped()),
        (node, seq, dropped)
    );
    assert_eq!(batch.records().collect::<Vec<_>>(), records);
    // The decoded batch and the one built from records are the same value.
    assert_eq!(
        batch,
        TelemetryBatch::from_records(node, seq, records, dropped)
    );
    batch
}

#[test]
fn every_field_round_trips_including_absent_ids_and_extreme_values() {
    let (cp, node) = (Uuid::new_v4(), Uuid::new_v4());
    let full = RequestRecord {
        time_ms: i64::MAX,
        control_plane_id: cp,
        service_id: Some(Uuid::new_v4()),
        route_id: Some(Uuid::new_v4()),
        consumer_id: Some(Uuid::new_v4()),
        node_id: node,
        status: u16::MAX,
        latency_total_us: u32::MAX,
        latency_upstream_us: u32::MAX - 1,
        latency_gateway_us: 1,
        bytes_in: u64::MAX,
        bytes_out: u64::MAX - 1,
    };
    let bare = RequestRecord {
        // Far back in time after i64::MAX: the delta wraps, and must wrap back.
        time_ms: i64::MIN,
        control_plane_id: Uuid::nil(),
        service_id: None,
        route_id: None,
        consumer_id: None,
        node_id: node,
        status: 0,
        latency_total_us: 0,
        latency_upstream_us: 0,
        latency_gateway_us: 0,
        bytes_in: 0,
        bytes_out: 0,
    };
    let out_of_order = RequestRecord {
        time_ms: -5,
        ..full.clone()
    };
    let batch = round_trip(
        node,
        u64::MAX,
        &[full.clone(), bare, out_of_order, full],
        u64::MAX,
    );
    // cp, node, service, route, consumer, and the nil control plane of `bare`.
    assert_eq!(batch.ids().len(), 6);
    assert_eq!(batch.columns().service[1], 0);
    assert_eq!(batch.id(0), None);
    assert_eq!(batch.id(99), None);
}

#[test]
fn an_empty_batch_carries_its_drop_count() {
    let node = Uuid::new_v4();
    let batch = round_trip(node, 7, &[], 12);
    assert!(batch.is_empty());
    assert!(batch.ids().is_empty());
    let frame = encode_telemetry(node, 7, &[], 12).unwrap();
    // magic, version, flags, node, seq, dropped, count, dictionary size.
    assert_eq!(frame.len(), 4 + 1 + 1 + 16 + 8 + 1 + 1 + 1);
    assert_eq!(
        batch.to_message(),
        DpMessage::Telemetry {
            node_id: node,
            seq: 7,
            records: Vec::new(),
            dropped: 12
        }
    );
}

#[test]
fn a_full_batch_of_5000_records_round_trips_in_about_20_bytes_a_record() {
    let records = records(5_000);
    let batch = round_trip(Uuid::from_u128(2), 1 << 40, &records, 0);
    assert_eq!(batch.len(), 5_000);
    // 1 control plane + 1 node + 20 services + 50 routes + 5 consumers.
    assert_eq!(batch.ids().len(), 77);
    let frame = encode_telemetry(Uuid::from_u128(2), 1 << 40, &records, 0).unwrap();
    assert!(frame.len() < 5_000 * 22, "{} bytes", frame.len());
}

#[test]
fn limits_apply_on_both_sides() {
    let records = records(10);
    let tight = TelemetryLimits {
        max_records: 9,
        ..TelemetryLimits::default()
    };
    let node = Uuid::from_u128(2);
    let err = encode_telemetry_with_limits(node, 1, &records, 0, tight).unwrap_err();
    assert_eq!(
        err.to_string(),
        "telemetry batch has 10 records, above the limit of 9"
    );
    let frame = encode_telemetry(node, 1, &records, 0).unwrap();
    let err = decode_telemetry_with_limits(&frame, tight).unwrap_err();
    assert!(matches!(
        err,
        ProtocolError::TelemetryTooLarge {
            what: "records",
            size: 10,
            limit: 9
        }
    ));
    let few_ids = TelemetryLimits {
        max_ids: 3,
        ..TelemetryLimits::default()
    };
    let err = decode_telemetry_with_limits(&frame, few_ids).unwrap_err();
    assert!(
        err.to_string()
            .contains("dictionary entries, above the limit of 3"),
        "{err}"
    );
    let small = TelemetryLimits {
        max_frame_bytes: frame.len() - 1,
        ..TelemetryLimits::default()
    };
    assert!(matches!(
        decode_telemetry_with_limits(&frame, small),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
    assert!(matches!(
        encode_telemetry_with_limits(node, 1, &records, 0, small),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
}

/// A frame built by hand: header fields, then raw column bytes.
fn frame(version: u8, flags: u8, n: u64, ids: &[Uuid], columns: &[u8]) -> Vec<u8> {
    let mut out = TELEMETRY_MAGIC.to_vec();
    out.extend([version, flags]);
    out.extend(Uuid::from_u128(2).as_bytes());
    out.extend(5u64.to_le_bytes());
    out.push(0); // dropped
    encode::put_varint(&mut out, n);
    encode::put_varint(&mut out, ids.len() as u64);
    for id in ids {
        out.extend(id.as_bytes());
    }
    out.extend(columns);
    out
}

/// One record's columns: time 1, control plane 1, node 2, no service/route/consumer, then
/// the numbers given.
fn columns(refs: [u8; 5], numbers: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![2]; // zigzag(1)
    out.extend(refs);
    for n in numbers {
        out.extend(*n);
    }
    out
}

fn malformed(bytes: &[u8]) -> String {
    let err = decode_telemetry(bytes).unwrap_err();
    assert!(
        matches!(
            err,
            ProtocolError::MalformedTelemetry { .. } | ProtocolError::TelemetryTooLarge { .. }
        ),
        "{err:?}"
    );
    err.to_string()
}

#[test]
fn malformed_frames_name_what_is_wrong_and_where() {
    let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
    let ok_numbers: [&[u8]; 6] = [&[0xc8, 0x01], &[1], &[1], &[0], &[0], &[0]];
    let good = frame(1, 0, 1, &ids, &columns([1, 2, 0, 0, 0], &ok_numbers));
    assert_eq!(decode_telemetry(&good).unwrap().len(), 1);
    assert_eq!(
        decode_telemetry(&good).unwrap().record(0).unwrap().status,
        200
    );

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"FGTX".to_vec(), "not the telemetry magic"),
        (b"FG".to_vec(), "the frame ends inside the magic"),
        (
            frame(2, 0, 0, &[], &[]),
            "at byte 4: format version 2 is not supported",
        ),
        (frame(1, 4, 0, &[], &[]), "at byte 5: unknown flags 0x04"),
        (good[..20].to_vec(), "the frame ends inside node_id"),
        (
            good[..31].to_vec(),
            "the frame ends inside the record count",
        ),
        (
            frame(1, 0, 1, &[ids[0], ids[0]], &[]),
            "dictionary entry 1 (00000000-0000-0000-0000-000000000001) repeats entry 0",
        ),
        (
            frame(1, 0, 0, &ids, &[])[..50].to_vec(),
            "the dictionary of 2 ids needs 32 bytes, but 17 follow",
        ),
        (
            frame(1, 0, 3, &ids, &columns([1, 2, 0, 0, 0], &ok_numbers)),
            "3 records need at least 36 bytes of columns, but 13 follow",
        ),
        (
            frame(1, 0, 1, &ids, &columns([1, 2, 0, 3, 0], &ok_numbers)),
            "route_id of record 0 refers to dictionary entry 2, but the dictionary has 2 \
             entries",
        ),
        (
            frame(1, 0, 1, &ids, &columns([0, 2, 0, 0, 0], &ok_numbers)),
            "control_plane_id of record 0 is missing (0)",
        ),
        (
            frame(
                1,
                0,
                1,
                &ids,
                &columns(
                    [1, 2, 0, 0, 0],
                    &[&[0x80, 0x80, 0x04], &[1], &[1], &[0], &[0], &[0]],
                ),
            ),
            "status of record 0 is 65536, which does not fit in u16",
        ),
        (
            frame(
                1,
                0,
                1,
                &ids,
                &columns(
                    [1, 2, 0, 0, 0],
                    &[
                        &[1],
                        &[0x80, 0x80, 0x80, 0x80, 0x10],
                        &[1],
                        &[0],
                        &[0],
                        &[0],
                    ],
                ),
            ),
            "latency_total_us of record 0 is 4294967296, which does not fit in u32",
        ),
        (
            frame(
                1,
                0,
                1,
                &ids,
                &columns(
                    [1, 2, 0, 0, 0],
                    &[&[1], &[1], &[1], &[1], &[0xff; 9], &[2, 0, 0]],
                ),
            ),
            "bytes_in of record 0 is a varint of more than 64 bits",
        ),
        (
            frame(
                1,
                0,
                1,
                &ids,
                &columns([1, 2, 0, 0, 0], &[&[1], &[1], &[1], &[1], &[1], &[0x81]]),
            ),
            "the frame ends inside bytes_out of record 0",
        ),
        (
            [good.clone(), vec![0, 0]].concat(),
            "2 unexpected byte(s) after the last column",
        ),
    ];
    for (bytes, expected) in cases {
        let message = malformed(&bytes);
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

/// Decoding never panics: every prefix of a valid frame, and many random bit flips and byte
/// rewrites, give either an error or a batch that upholds its invariants.
#[test]
fn truncated_and_corrupted_frames_never_panic() {
    let node = Uuid::from_u128(2);
    let valid = encode_telemetry(node, 99, &records(60), 4).unwrap();
    for len in 0..valid.len() {
        assert!(
            decode_telemetry(&valid[..len]).is_err(),
            "a {len}-byte prefix decoded"
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..10_000 {
        let mut bytes = valid.clone();
        let edits = rng.gen_range(1..4);
        for _ in 0..edits {
            let at = rng.gen_range(0..bytes.len());
            if round % 2 == 0 {
                bytes[at] ^= 1 << rng.gen_range(0..8);
            } else {
                bytes[at] = rng.gen();
            }
        }
        if round % 5 == 0 {
            bytes.truncate(rng.gen_range(0..bytes.len()));
        }
        match decode_telemetry(&bytes) {
            Ok(batch) => {
                accepted += 1;
                // Every record is readable and every reference resolves.
                let records: Vec<RequestRecord> = batch.records().collect();
                assert_eq!(records.len(), batch.len());
                let again = encode_telemetry(batch.node_id(), batch.seq(), &records, 0).unwrap();
                assert_eq!(decode_telemetry(&again).unwrap().len(), batch.len());
            }
            Err(err) => {
                refused += 1;
                assert!(!err.to_string().is_empty());
            }
        }
    }
    // Flips in the numeric columns leave a valid (different) batch; flips in the header,
    // dictionary or references mostly do not.
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn gzip_json_frames_are_told_apart_by_their_first_bytes() {
    let message = DpMessage::Telemetry {
        node_id: Uuid::nil(),
        seq: 1,
        records: Vec::new(),
        dropped: 0,
    };
    let gzip = crate::encode_binary(&message).unwrap();
    assert!(!is_telemetry_frame(&gzip));
    let err = decode_telemetry(&gzip).unwrap_err();
    assert!(err.to_string().contains("not the telemetry magic"), "{err}");
    assert!(crate::decode_binary_message::<DpMessage>(
        &encode_telemetry(Uuid::nil(), 1, &[], 0).unwrap()
    )
    .is_err());
}
