//! Per-request telemetry (docs/telemetry.md): one [`RequestRecord`] per answered request,
//! ids and numbers only, buffered on the node and sent to the control plane in acknowledged
//! batches.
//!
//! Hot path: each thread appends to its own shard (a `Mutex<Vec>` only that thread and, once
//! per flush, the flusher touch, so the lock is uncontended); no lock or atomic is shared
//! between proxy workers. The flusher moves shard contents into the node-wide [`Queue`]
//! every `analytics_flush_interval`, or as soon as a shard holds [`SHARD_HANDOFF`] records;
//! the queue enforces `analytics_buffer_size_limit` and forms batches for the cluster
//! session, which sends them, re-sends unacked ones after a reconnect and forgets acked ones.

mod queue;
mod recorder;

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use fleetgate_protocol::RequestRecord;
use serde::Serialize;
use tokio::sync::Notify;
use uuid::Uuid;

pub use queue::{SentBatch, BATCH_RECORDS};
pub use recorder::{CountingBody, ResponseRecord, Tally, CLIENT_CLOSED_REQUEST};

use queue::Queue;

/// A shard hands its records over once it holds this many, so a burst never waits a whole
/// flush interval before the limit applies.
pub const SHARD_HANDOFF: usize = 1_000;

/// File in the prefix dir remembering the control plane of the cached config (the cache
/// format has no room for it, and the CP skips `reconfigure` when the hash matches).
pub const CONTROL_PLANE_FILE: &str = "control_plane_id";

/// How telemetry is bounded and paced.
#[derive(Debug, Clone, Copy)]
pub struct TelemetrySettings {
    /// `analytics_buffer_size_limit`: records held at most; 0 turns telemetry off.
    pub buffer_limit: usize,
    /// `analytics_flush_interval`.
    pub flush_interval: Duration,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            buffer_limit: 100_000,
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// What `/status` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TelemetryStatus {
    /// Records held: in thread shards, waiting, and in unacked batches.
    pub buffer_fill: usize,
    /// `analytics_buffer_size_limit`.
    pub buffer_limit: usize,
    /// Records dropped since start because the buffer was full.
    pub dropped: u64,
    /// Batches sent and not yet acknowledged.
    pub unacked_batches: usize,
}

/// One thread's records, plus the buffer the flusher swaps in next time. Reusing the
/// drained buffer means a busy worker never regrows (and page-faults) its buffer after a
/// flush, and memory is never freed on another thread than the one that allocated it.
#[derive(Debug, Default)]
struct Shard {
    records: Mutex<Vec<RequestRecord>>,
    spare: Mutex<Vec<RequestRecord>>,
}

/// A spare buffer larger than this is shrunk, so one burst does not pin its memory forever.
const SPARE_MAX: usize = 8 * SHARD_HANDOFF;

/// Tells [`Telemetry`] instances apart in the per-thread shard table.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shard per telemetry instance (normally exactly one).
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// The node's telemetry buffer.
#[derive(Debug)]
pub struct Telemetry {
    id: u64,
    settings: TelemetrySettings,
    shards: Mutex<Vec<Arc<Shard>>>,
    queue: Mutex<Queue>,
    /// A shard reached [`SHARD_HANDOFF`].
    handoff: Notify,
    /// A full batch is waiting: the session sends without waiting for its tick.
    batch_ready: Notify,
    flusher_started: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unix milliseconds now.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Telemetry {
    /// A buffer with these settings.
    pub fn new(settings: TelemetrySettings) -> Arc<Self> {
        let boot_ms = u64::try_from(now_unix_ms()).unwrap_or(0);
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            settings,
            shards: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::new(settings.buffer_limit, boot_ms)),
            handoff: Notify::new(),
            batch_ready: Notify::new(),
            flusher_started: AtomicBool::new(false),
        })
    }

    /// Whether records are kept at all (`analytics_buffer_size_limit > 0`).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.settings.buffer_limit > 0
    }

    /// The settings.
    pub fn settings(&self) -> TelemetrySettings {
        self.settings
    }

    /// Appends one record to this thread's shard. Cheap: a thread-local lookup and an
    /// uncontended lock; the shared registry is locked only on a thread's first record.
    pub fn record(&self, record: RequestRecord) {
        if !self.enabled() {
            return;
        }
        let handoff = SHARDS.with(|cell| {
            let mut table = cell.borrow_mut();
            let shard = match table.iter().position(|(id, _)| *id == self.id) {
                Some(i) => &table[i].1,
                None => {
                    // Forget shards of telemetry instances that are gone (tests start many
                    // nodes in one process) before adding this one.
                    table.retain(|(_, shard)| Arc::strong_count(shard) > 1);
                    let shard = Arc::new(Shard::default());
                    lock(&self.shards).push(shard.clone());
                    table.push((self.id, shard));
                    &table[table.len() - 1].1
                }
            };
            let mut records = lock(&shard.records);
            records.push(record);
            records.len() == SHARD_HANDOFF
        });
        if handoff {
            self.handoff.notify_one();
        }
    }

    /// Moves every shard's records into the queue (applying the limit). Returns whether a
    /// full batch is now waiting.
    pub fn collect(&self) -> bool {
        let shards: Vec<Arc<Shard>> = lock(&self.shards).clone();
        let mut collected = Vec::new();
        for shard in shards {
            let mut spare = lock(&shard.spare);
            spare.clear();
            spare.reserve(SHARD_HANDOFF);
            // Only a pointer swap happens under the worker's lock, never a copy.
            std::mem::swap(&mut *lock(&shard.records), &mut *spare);
            collected.append(&mut spare);
            spare.shrink_to(SPARE_MAX);
        }
        // Each shard is in order; merging by start time keeps "drop the oldest" true across
        // threads (stable, so same-millisecond records keep their shard order).
        collected.sort_by_key(|r| r.time_ms);
        let mut queue = lock(&self.queue);
        queue.push(collected);
        let full = queue.waiting() >= BATCH_RECORDS;
        drop(queue);
        if full {
            self.batch_ready.notify_one();
        }
        full
    }

    /// Starts the background flusher on the current runtime (once per buffer; later calls do
    /// nothing). It keeps the limit applied while no session drains the buffer, and ends when
    /// the buffer is dropped.
    pub fn start_flusher(self: &Arc<Self>) {
        if !self.enabled() || self.flusher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.settings.flush_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Holds the buffer only for one wait: once the node drops it, the next
                // upgrade fails and the task ends.
                let Some(this) = weak.upgrade() else { return };
                tokio::select! {
                    _ = tick.tick() => {}
                    () = this.handoff.notified() => {}
                }
                this.collect();
            }
        });
    }

    /// Resolves when a full batch is waiting (see [`Self::collect`]).
    pub async fn batch_ready(&self) {
        self.batch_ready.notified().await;
    }

    /// Collects the shards and forms every batch the waiting records (and drop count) make,
    /// oldest first. The caller sends them; they stay unacked until [`Self::ack`].
    pub fn form_batches(&self, node_id: Uuid) -> Vec<SentBatch> {
        self.collect();
        let mut queue = lock(&self.queue);
        std::iter::from_fn(|| queue.form_batch(node_id)).collect()
    }

    /// Every unacked batch in `seq` order: what a new session sends first.
    pub fn unacked(&self) -> Vec<SentBatch> {
        lock(&self.queue).unacked()
    }

    /// The CP committed batch `seq`.
    pub fn ack(&self, seq: u64) -> bool {
        lock(&self.queue).ack(seq)
    }

    /// Buffer fill, limit, drops and unacked batches.
    pub fn status(&self) -> TelemetryStatus {
        let in_shards: usize = lock(&self.shards)
            .iter()
            .map(|s| lock(&s.records).len())
            .sum();
        let queue = lock(&self.queue);
        TelemetryStatus {
            buffer_fill: in_shards + queue.fill(),
            buffer_limit: self.settings.buffer_limit,
            dropped: queue.dropped_total(),
            unacked_batches: queue.unacked_batches(),
        }
    }
}

/// The control plane remembered with the cache, if any (absent or unreadable: `None`).
pub fn load_control_plane_id(prefix: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(prefix.join(CONTROL_PLANE_FILE)).ok()?;
    Uuid::parse_str(text.trim()).ok()
}

/// Remembers the control plane of the running config for the next start from the cache.
pub fn store_control_plane_id(prefix: &Path, id: Uuid) -> anyhow::Result<()> {
    let path = prefix.join(CONTROL_PLANE_FILE);
    if load_control_plane_id(prefix) == Some(id) {
        return Ok(());
    }
    let tmp = prefix.join(format!("{CONTROL_PLANE_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, id.to_string()).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("rename to {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_control_plane_id_survives_a_restart_beside_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_control_plane_id(dir.path()), None);
        let id = Uuid::new_v4();
        store_control_plane_id(dir.path(), id).unwrap();
        assert_eq!(load_control_plane_id(dir.path()), Some(id));
        std::fs::write(dir.path().join(CONTROL_PLANE_FILE), "garbage").unwrap();
        assert_eq!(load_control_plane_id(dir.path()), None);
    }

    #[test]
    fn records_of_several_threads_reach_one_batch_and_off_records_nothing() {
        let telemetry = Telemetry::new(TelemetrySettings::default());
        let record = |status| RequestRecord {
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
        };
        std::thread::scope(|s| {
            for status in [200, 201] {
                let telemetry = &telemetry;
                s.spawn(move || (0..10).for_each(|_| telemetry.record(record(status))));
            }
        });
        assert_eq!(telemetry.status().buffer_fill, 20);
        let batches = telemetry.form_batches(Uuid::new_v4());
        assert_eq!((batches.len(), batches[0].records), (1, 20));
        assert_eq!(telemetry.status().unacked_batches, 1);
        assert!(telemetry.ack(batches[0].seq));
        assert_eq!(
            telemetry.status(),
            TelemetryStatus {
                buffer_limit: 100_000,
                ..Default::default()
            }
        );

        let off = Telemetry::new(TelemetrySettings {
            buffer_limit: 0,
            ..Default::default()
        });
        off.record(record(200));
        assert_eq!(off.status().buffer_fill, 0);
        assert!(off.form_batches(Uuid::nil()).is_empty());
    }
}
