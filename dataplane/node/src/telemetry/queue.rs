//! The node-wide bounded queue: records waiting to be batched, plus batches sent but not yet
//! acknowledged. Both count against `analytics_buffer_size_limit`.

use std::collections::VecDeque;

use bytes::Bytes;
use fleetgate_protocol::{encode_telemetry, RequestRecord};
use uuid::Uuid;

/// Most records in one `telemetry` batch (docs/telemetry.md).
pub const BATCH_RECORDS: usize = 5_000;

/// A formed batch, kept as its encoded frame so a re-send is byte-for-byte the same.
#[derive(Debug, Clone)]
pub struct SentBatch {
    /// The batch's sequence number.
    pub seq: u64,
    /// Records it carries (counted against the limit).
    pub records: usize,
    /// The `dropped` count it carries.
    pub dropped: u64,
    /// The binary frame: the batch in the protocol's compact telemetry encoding
    /// ([`fleetgate_protocol::encode_telemetry`]: an id dictionary and varint columns).
    pub frame: Bytes,
}

/// Records waiting + unacked batches, bounded by `limit` records.
#[derive(Debug)]
pub struct Queue {
    limit: usize,
    boot_ms: u64,
    counter: u64,
    waiting: VecDeque<RequestRecord>,
    unacked: VecDeque<SentBatch>,
    unacked_records: usize,
    /// Drops since the last batch was formed; they belong to the next batch.
    dropped_pending: u64,
    dropped_total: u64,
}

impl Queue {
    /// An empty queue holding at most `limit` records; `boot_ms` seeds the sequence numbers.
    pub fn new(limit: usize, boot_ms: u64) -> Self {
        Self {
            limit,
            boot_ms,
            counter: 0,
            waiting: VecDeque::new(),
            unacked: VecDeque::new(),
            unacked_records: 0,
            dropped_pending: 0,
            dropped_total: 0,
        }
    }

    /// Records waiting to be batched.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Records held (waiting and in unacked batches).
    pub fn fill(&self) -> usize {
        self.waiting.len() + self.unacked_records
    }

    /// Records dropped since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Batches sent and not yet acknowledged.
    pub fn unacked_batches(&self) -> usize {
        self.unacked.len()
    }

    /// Appends records (oldest first), then drops the oldest records above the limit. Whole
    /// unacked batches go only when every record in them is among the excess (a batch must
    /// not change once formed); the rest comes off the front of the waiting records. So
    /// exactly the excess is dropped, never more.
    pub fn push(&mut self, mut records: Vec<RequestRecord>) {
        // Work out the excess first, so a flood far beyond the limit costs a skip instead of
        // queueing records only to drop them.
        let mut excess = (self.fill() + records.len()).saturating_sub(self.limit);
        while let Some(oldest) = self.unacked.front() {
            if oldest.records == 0 || oldest.records > excess {
                break;
            }
            let Some(batch) = self.unacked.pop_front() else {
                break;
            };
            excess -= batch.records;
            self.unacked_records -= batch.records;
            self.count_drops(batch.records as u64);
            // The batch's own drop count may never reach the CP now: carry it forward so
            // drops are never hidden.
            self.dropped_pending += batch.dropped;
        }
        let from_waiting = excess.min(self.waiting.len());
        self.waiting.drain(..from_waiting);
        let from_new = (excess - from_waiting).min(records.len());
        self.waiting.extend(records.drain(from_new..));
        self.count_drops((from_waiting + from_new) as u64);
    }

    fn count_drops(&mut self, n: u64) {
        self.dropped_pending += n;
        self.dropped_total += n;
    }

    /// The next sequence number. Unique per node forever: `(boot ms << 20) + counter`; a
    /// later boot starts at least 2^20 above any earlier one for every millisecond between
    /// them, and no node forms a million batches per millisecond of uptime.
    fn next_seq(&mut self) -> u64 {
        let seq = (self.boot_ms << 20).wrapping_add(self.counter);
        self.counter += 1;
        seq
    }

    /// Forms one batch of at most [`BATCH_RECORDS`] waiting records (stamped with `node_id`),
    /// moves it to the unacked list and returns it; `None` when nothing (not even a drop
    /// count) is waiting.
    pub fn form_batch(&mut self, node_id: Uuid) -> Option<SentBatch> {
        if self.waiting.is_empty() && self.dropped_pending == 0 {
            return None;
        }
        let n = self.waiting.len().min(BATCH_RECORDS);
        let mut records: Vec<RequestRecord> = self.waiting.drain(..n).collect();
        for record in &mut records {
            record.node_id = node_id;
        }
        let seq = self.next_seq();
        let dropped = std::mem::take(&mut self.dropped_pending);
        match encode_telemetry(node_id, seq, &records, dropped) {
            Ok(frame) => {
                let batch = SentBatch {
                    seq,
                    records: n,
                    dropped,
                    frame: Bytes::from(frame),
                };
                self.unacked.push_back(batch.clone());
                self.unacked_records += n;
                Some(batch)
            }
            Err(e) => {
                // 5,000 small records never approach the frame caps; should it happen, the
                // records are lost and counted rather than retried forever.
                tracing::error!(error = %e, seq, records = n, "could not encode a telemetry batch; counting its records as dropped");
                self.count_drops(n as u64);
                self.dropped_pending += dropped;
                None
            }
        }
    }

    /// Every unacked batch, in `seq` order (for the re-send after a reconnect).
    pub fn unacked(&self) -> Vec<SentBatch> {
        self.unacked.iter().cloned().collect()
    }

    /// Forgets batch `seq` (the CP committed it). Returns whether it was unacked.
    pub fn ack(&mut self, seq: u64) -> bool {
        let Some(i) = self.unacked.iter().position(|b| b.seq == seq) else {
            return false;
        };
        if let Some(batch) = self.unacked.remove(i) {
            self.unacked_records -= batch.records;
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(status: u16) -> RequestRecord {
        RequestRecord {
            time_ms: 1,
            control_plane_id: Uuid::nil(),
            service_id: None,
            route_id: None,
            consumer_id: None,
            node_id: Uuid::nil(),
            status,
            latency_total_us: 0,
            latency_upstream_us: 0,
            latency_gateway_us: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    #[test]
    fn keeps_the_newest_records_and_counts_the_rest() {
        let mut q = Queue::new(3, 1);
        q.push((0..5).map(record).collect());
        assert_eq!(q.fill(), 3);
        assert_eq!(q.dropped_total(), 2);
        let node = Uuid::new_v4();
        let batch = q.form_batch(node).unwrap();
        assert_eq!((batch.records, batch.dropped), (3, 2));
        let decoded = fleetgate_protocol::decode_telemetry(&batch.frame).unwrap();
        assert_eq!(
            (decoded.node_id(), decoded.seq(), decoded.dropped()),
            (node, batch.seq, 2)
        );
        let records: Vec<RequestRecord> = decoded.records().collect();
        let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [2, 3, 4]);
        assert!(records.iter().all(|r| r.node_id == node));
    }

    #[test]
    fn unacked_batches_count_and_go_whole_only_when_all_excess() {
        let mut q = Queue::new(4, 1);
        q.push((0..3).map(record).collect());
        let first = q.form_batch(Uuid::nil()).unwrap();
        q.push((3..5).map(record).collect());
        // 5 > 4: one excess record, the 3-record batch stays, the oldest waiting goes.
        assert_eq!(
            (q.fill(), q.unacked_batches(), q.dropped_total()),
            (4, 1, 1)
        );
        q.push((5..8).map(record).collect());
        // Excess 3: the whole batch is among the oldest 3, so it goes.
        assert_eq!(
            (q.fill(), q.unacked_batches(), q.dropped_total()),
            (4, 0, 4)
        );
        assert!(!q.ack(first.seq));
        let next = q.form_batch(Uuid::nil()).unwrap();
        assert!(next.seq > first.seq);
        assert_eq!(next.dropped, 4);
    }

    #[test]
    fn ack_frees_the_batch_and_seq_is_unique_across_boots() {
        let mut q = Queue::new(10, 5);
        q.push((0..2).map(record).collect());
        let b = q.form_batch(Uuid::nil()).unwrap();
        assert_eq!(q.fill(), 2);
        assert!(q.ack(b.seq));
        assert_eq!((q.fill(), q.unacked_batches()), (0, 0));
        assert!(q.form_batch(Uuid::nil()).is_none());
        let later_boot = Queue::new(10, 6).next_seq();
        assert!(later_boot > b.seq);
    }
}
