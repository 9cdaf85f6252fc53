//! One telemetry batch into the store (docs/telemetry.md, "Ingest").
//!
//! The batch is aggregated in memory first — records grouped by 10 s bucket and dimensions,
//! usually a few hundred groups for 5,000 records — so the transaction writes each group once
//! instead of touching a row per record. Aggregation reads the decoded columns directly and
//! groups by the batch's id references (small integers), so a record costs no allocation and
//! no UUID handling; ids become text once per group.

use std::collections::{BTreeMap, HashMap};

use fleetgate_protocol::{IdRef, RequestRecord, TelemetryBatch};
use uuid::Uuid;

use super::{Granularity, DAY_SECS};
use crate::store::{
    AggregateKey, AggregateValues, NodeRowCache, Store, StoreResult, TelemetryBatchWrite,
};

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
pub fn refusal(origin: &BatchOrigin, batch: &TelemetryBatch) -> Option<String> {
    if batch.node_id() != origin.node_id {
        return Some(format!(
            "telemetry batch names node {} but this connection is node {}",
            batch.node_id(),
            origin.node_id
        ));
    }
    let columns = batch.columns();
    // The nil id means "not known yet" (a node that proxied from a local config before its
    // first config from this control plane): the certificate already proves which control
    // plane the node belongs to, so those records count for it.
    if let Some(cp) = columns
        .control_plane
        .iter()
        .map(|r| batch.id(*r).unwrap_or_default())
        .find(|id| *id != origin.control_plane_id && !id.is_nil())
    {
        return Some(format!(
            "telemetry batch holds records of control plane {cp} but this node belongs to {}; \
             the batch was not stored",
            origin.control_plane_id
        ));
    }
    if let Some(node) = columns
        .node
        .iter()
        .map(|r| batch.id(*r).unwrap_or_default())
        .find(|id| *id != origin.node_id)
    {
        return Some(format!(
            "telemetry batch holds records of node {node} but was sent by node {}; the batch \
             was not stored",
            origin.node_id
        ));
    }
    None
}

/// Dimensions of a record within one batch (control plane and node are the batch's). Ids are
/// the batch's references: equal references are equal ids within a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GroupKey {
    bucket_start: i64,
    service: IdRef,
    route: IdRef,
    consumer: IdRef,
    status: u16,
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
    batch: &TelemetryBatch,
    received_at: i64,
    horizon_10s: i64,
) -> TelemetryBatchWrite {
    let c = batch.columns();
    let n = batch.len();
    // Every column has `n` entries; slicing them to `n` up front lets the compiler drop the
    // bounds checks in the loop.
    let (time_ms, service, route, consumer, status, latency, bytes_in, bytes_out) = (
        &c.time_ms[..n],
        &c.service[..n],
        &c.route[..n],
        &c.consumer[..n],
        &c.status[..n],
        &c.latency_total_us[..n],
        &c.bytes_in[..n],
        &c.bytes_out[..n],
    );
    // foldhash: the key is hashed once per record, SipHash's DoS resistance buys nothing for
    // keys the node's own config bounds.
    let mut groups: HashMap<GroupKey, AggregateValues, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(256, foldhash::fast::RandomState::default());
    let mut days: BTreeMap<i64, i64> = BTreeMap::new();
    let mut current_day = (i64::MIN, 0i64);
    for i in 0..n {
        let secs = time_ms[i].div_euclid(1000);
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
                service: service[i],
                route: route[i],
                consumer: consumer[i],
                status: status[i],
            })
            .or_default();
        values.request_count += 1;
        values.error_count += i64::from(status[i] >= 400);
        values.bytes_in += i64::try_from(bytes_in[i]).unwrap_or(i64::MAX);
        values.bytes_out += i64::try_from(bytes_out[i]).unwrap_or(i64::MAX);
        values.latency.add(latency[i]);
    }
    if current_day.1 > 0 {
        *days.entry(current_day.0).or_default() += current_day.1;
    }
    // Each dictionary id as text once, not once per group.
    let texts: Vec<String> = batch.ids().iter().map(Uuid::to_string).collect();
    let text = |reference: IdRef| -> String {
        (reference as usize)
            .checked_sub(1)
            .and_then(|i| texts.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let cp = origin.control_plane_id.to_string();
    let node = origin.node_id.to_string();
    let groups = groups
        .into_iter()
        .map(|(k, v)| {
            (
                AggregateKey {
                    bucket_start: k.bucket_start,
                    control_plane_id: cp.clone(),
                    service_id: text(k.service),
                    route_id: text(k.route),
                    consumer_id: text(k.consumer),
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
        seq: batch.seq(),
        records: n as u64,
        dropped: batch.dropped(),
        received_at,
        groups,
        api_calls_by_day: days.into_iter().map(|(d, n)| (day_name(d), n)).collect(),
    }
}

/// A `telemetry` message given as records (the text-frame form, and tests).
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

/// [`ingest_telemetry_batch`] for a batch given as records.
pub async fn ingest_batch(
    store: &Store,
    cache: &mut NodeRowCache,
    origin: &BatchOrigin,
    batch: IncomingBatch<'_>,
    now: i64,
    horizon_10s: i64,
) -> StoreResult<IngestOutcome> {
    let batch =
        TelemetryBatch::from_records(batch.node_id, batch.seq, batch.records, batch.dropped);
    ingest_telemetry_batch(store, cache, origin, &batch, now, horizon_10s).await
}

/// Ingests one batch at `now` (Unix seconds): refuses it, or aggregates and commits it (a
/// duplicate changes nothing). `cache` is the session's (one per connected node).
pub async fn ingest_telemetry_batch(
    store: &Store,
    cache: &mut NodeRowCache,
    origin: &BatchOrigin,
    batch: &TelemetryBatch,
    now: i64,
    horizon_10s: i64,
) -> StoreResult<IngestOutcome> {
    if let Some(reason) = refusal(origin, batch) {
        return Ok(IngestOutcome::Refused { reason });
    }
    let write = aggregate(origin, batch, now, horizon_10s);
    if store.ingest_telemetry(write, cache).await? {
        Ok(IngestOutcome::Stored {
            records: batch.len(),
        })
    } else {
        Ok(IngestOutcome::Duplicate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_group_by_their_ids_and_every_record_is_billed() {
        let origin = BatchOrigin {
            organization_id: Uuid::new_v4(),
            control_plane_id: Uuid::new_v4(),
            node_id: Uuid::new_v4(),
        };
        let (service, route) = (Uuid::new_v4(), Uuid::new_v4());
        let at = |time_ms: i64, service_id: Option<Uuid>, status: u16| RequestRecord {
            time_ms,
            control_plane_id: origin.control_plane_id,
            service_id,
            route_id: service_id.map(|_| route),
            consumer_id: None,
            node_id: origin.node_id,
            status,
            latency_total_us: 1_000,
            latency_upstream_us: 900,
            latency_gateway_us: 100,
            bytes_in: 10,
            bytes_out: 20,
        };
        let day = 19_723 * DAY_SECS * 1000; // 2024-01-01
        let records = [
            at(day + 1_000, Some(service), 200),
            at(day + 2_000, Some(service), 200),
            at(day + 3_000, Some(service), 500),
            at(day + 4_000, None, 404),
            // 2023-12-31, before the horizon: billed, not aggregated.
            at(day - 1_000, Some(service), 200),
        ];
        let batch = TelemetryBatch::from_records(origin.node_id, 3, &records, 2);
        assert_eq!(refusal(&origin, &batch), None);
        let write = aggregate(&origin, &batch, 0, day / 1000);
        assert_eq!((write.seq, write.records, write.dropped), (3, 5, 2));
        assert_eq!(
            write.api_calls_by_day,
            [("2023-12-31".to_string(), 1), ("2024-01-01".to_string(), 4)]
        );
        let mut groups: Vec<(String, String, i64, i64, i64)> = write
            .groups
            .iter()
            .map(|(k, v)| {
                assert_eq!(k.bucket_start, day / 1000);
                assert_eq!(k.control_plane_id, origin.control_plane_id.to_string());
                assert_eq!(k.node_id, origin.node_id.to_string());
                assert_eq!(k.consumer_id, "");
                (
                    k.service_id.clone(),
                    k.route_id.clone(),
                    k.status,
                    v.request_count,
                    v.error_count,
                )
            })
            .collect();
        groups.sort();
        let (s, r) = (service.to_string(), route.to_string());
        assert_eq!(
            groups,
            [
                (String::new(), String::new(), 404, 1, 1),
                (s.clone(), r.clone(), 200, 2, 0),
                (s, r, 500, 1, 1),
            ]
        );

        let stranger = Uuid::new_v4();
        let foreign = TelemetryBatch::from_records(
            origin.node_id,
            4,
            &[RequestRecord {
                control_plane_id: stranger,
                ..records[0].clone()
            }],
            0,
        );
        let reason = refusal(&origin, &foreign).expect("refused");
        assert!(
            reason.contains(&format!("records of control plane {stranger}")),
            "{reason}"
        );
    }

    #[test]
    fn day_names_are_utc_dates() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(19_723), "2024-01-01");
        assert_eq!(day_name(-1), "1969-12-31");
    }
}
