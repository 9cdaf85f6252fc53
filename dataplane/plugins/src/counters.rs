//! Rate-limit counters shared by every [`crate::PluginSet`] of the process.
//!
//! Keyed by (plugin id, identifier, period, window start). The map is split into shards,
//! each behind its own read-write lock, and each counter is an atomic: the common request
//! takes one shard read lock per window and does a compare-and-swap, so requests contend
//! only when they hit the same counter. Old windows are swept lazily when a shard inserts.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use uuid::Uuid;

use crate::rate_limiting::Period;

/// Number of shards: enough that 2-64 cores rarely meet on one lock.
const SHARDS: usize = 64;
/// Seconds a counter is kept after its window ended, so a request that computed its window
/// just before the boundary still finds (and counts on) the same counter.
const GRACE_SECS: i64 = 2;
/// Least seconds between two sweeps of one shard.
const SWEEP_EVERY_SECS: i64 = 1;

/// What requests are counted by (Kong's rate-limiting identifier).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Identifier {
    /// A consumer, credential or service id.
    Id(Uuid),
    /// The client address.
    Ip(IpAddr),
    /// A header value or path.
    Text(Box<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CounterKey {
    plugin: Uuid,
    identifier: Identifier,
    period: Period,
    window_start: i64,
}

#[derive(Debug)]
struct Counter {
    count: AtomicU64,
    /// End of the window (unix seconds), for the sweep.
    window_end: i64,
}

/// A key with its SipHash computed once: it picks the shard and is reused by the shard's
/// map, so each window costs one hash of the key rather than two.
#[derive(Debug, Clone)]
struct Prehashed {
    hash: u64,
    key: CounterKey,
}

impl PartialEq for Prehashed {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl Eq for Prehashed {}

impl Hash for Prehashed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hasher for [`Prehashed`]: passes the precomputed hash through.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Prehashed`; fold anything else in for safety.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct BuildPassThrough;

impl BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: RwLock<HashMap<Prehashed, Arc<Counter>, BuildPassThrough>>,
    next_sweep: AtomicI64,
}

/// One window a request is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowLimit {
    pub period: Period,
    pub limit: u64,
    pub start: i64,
    pub end: i64,
}

/// The result of [`RateLimitCounters::acquire`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acquired {
    /// Per window (same order as asked): requests counted before this one.
    pub usage: [u64; 6],
    /// Index of the first window whose limit is reached; the request was not counted.
    pub stopped: Option<usize>,
}

/// Rate-limit counters: survive config swaps (keep one per process and pass it to every
/// [`crate::PluginSet::build`]). Cheap under contention: sharded, with atomic counters.
#[derive(Debug)]
pub struct RateLimitCounters {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Default for RateLimitCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimitCounters {
    /// Empty counters.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Number of counters held (live windows plus not yet swept ones).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.map.read().len()).sum()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops counters whose window has ended. Optional: expired windows are also swept
    /// lazily as new ones are created.
    pub fn purge_expired(&self) {
        let now = unix_secs(SystemTime::now());
        for shard in self.shards.iter() {
            shard
                .map
                .write()
                .retain(|_, c| c.window_end + GRACE_SECS > now);
        }
    }

    fn prehash(&self, key: CounterKey) -> Prehashed {
        Prehashed {
            hash: self.hasher.hash_one(&key),
            key,
        }
    }

    fn shard(&self, key: &Prehashed) -> &Shard {
        // Middle bits pick the shard: the map itself uses the low bits for the bucket and
        // the top 7 bits as tags, so those must still vary within a shard.
        let index = (key.hash >> 32) as usize % self.shards.len();
        &self.shards[index]
    }

    /// Atomically admits a request in every window or in none: each window's counter is
    /// incremented only while below its limit, and a refusal in a later window rolls the
    /// earlier increments back. So a limit is never exceeded, and refused requests are not
    /// counted (Kong increments only for admitted requests). While a rollback is in flight
    /// a concurrent request may be refused spuriously; that errs on the safe side.
    pub(crate) fn acquire(
        &self,
        plugin: Uuid,
        identifier: &Identifier,
        windows: &[WindowLimit],
        now: i64,
    ) -> Acquired {
        let mut usage = [0u64; 6];
        let mut taken: [Option<Arc<Counter>>; 6] = Default::default();
        let mut stopped = None;
        for (i, w) in windows.iter().enumerate().take(6) {
            let key = self.prehash(CounterKey {
                plugin,
                identifier: identifier.clone(),
                period: w.period,
                window_start: w.start,
            });
            if stopped.is_some() {
                // Only for the headers: read without creating a counter.
                usage[i] = self.peek(&key);
                continue;
            }
            let counter = self.counter(key, w.end, now);
            let limit = w.limit;
            match counter
                .count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    (c < limit).then_some(c + 1)
                }) {
                Ok(before) => {
                    usage[i] = before;
                    taken[i] = Some(counter);
                }
                Err(current) => {
                    usage[i] = current;
                    stopped = Some(i);
                }
            }
        }
        if stopped.is_some() {
            for counter in taken.iter().flatten() {
                counter.count.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Acquired { usage, stopped }
    }

    fn peek(&self, key: &Prehashed) -> u64 {
        self.shard(key)
            .map
            .read()
            .get(key)
            .map_or(0, |c| c.count.load(Ordering::Acquire))
    }

    /// The counter for `key`, created when missing (which may sweep the shard).
    fn counter(&self, key: Prehashed, window_end: i64, now: i64) -> Arc<Counter> {
        let shard = self.shard(&key);
        if let Some(counter) = shard.map.read().get(&key) {
            return counter.clone();
        }
        let mut map = shard.map.write();
        if now >= shard.next_sweep.load(Ordering::Relaxed) {
            map.retain(|_, c| c.window_end + GRACE_SECS > now);
            shard
                .next_sweep
                .store(now + SWEEP_EVERY_SECS, Ordering::Relaxed);
        }
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Counter {
                    count: AtomicU64::new(0),
                    window_end,
                })
            })
            .clone()
    }
}

/// Unix time in whole seconds (0 before the epoch).
pub(crate) fn unix_secs(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn window(period: Period, limit: u64, start: i64) -> WindowLimit {
        WindowLimit {
            period,
            limit,
            start,
            end: start + period.fixed_secs(),
        }
    }

    #[test]
    fn admits_exactly_the_limit_across_threads() {
        let counters = Arc::new(RateLimitCounters::new());
        let allowed = Arc::new(AtomicUsize::new(0));
        let ident = Identifier::Ip(IpAddr::from([10, 0, 0, 1]));
        let plugin = Uuid::from_u128(7);
        // Two windows so the rollback path is exercised too: the hour allows more.
        let windows = [
            window(Period::Minute, 100, 60),
            window(Period::Hour, 1_000, 0),
        ];
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (counters, allowed, ident) = (counters.clone(), allowed.clone(), ident.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        if counters
                            .acquire(plugin, &ident, &windows, 61)
                            .stopped
                            .is_none()
                        {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(allowed.load(Ordering::Relaxed), 100);
        // Refused requests were not counted in the hour window.
        let hour = counters.acquire(plugin, &ident, &[windows[1]], 61);
        assert_eq!(hour.usage[0], 100);
    }

    #[test]
    fn refusal_rolls_back_earlier_windows() {
        let counters = RateLimitCounters::new();
        let ident = Identifier::Id(Uuid::from_u128(1));
        let p = Uuid::from_u128(2);
        let windows = [window(Period::Second, 10, 5), window(Period::Minute, 1, 0)];
        assert!(counters.acquire(p, &ident, &windows, 5).stopped.is_none());
        let refused = counters.acquire(p, &ident, &windows, 5);
        assert_eq!(refused.stopped, Some(1));
        assert_eq!(refused.usage[..2], [1, 1]);
        // The second window's counter went back to 1.
        let again = counters.acquire(p, &ident, &windows[..1], 5);
        assert_eq!(again.usage[0], 1);
    }

    #[test]
    fn old_windows_are_swept_lazily() {
        let counters = RateLimitCounters::new();
        let ident = Identifier::Text("k".into());
        let p = Uuid::from_u128(3);
        for second in 0..1_000 {
            let w = [window(Period::Second, 1, second)];
            assert!(counters.acquire(p, &ident, &w, second).stopped.is_none());
        }
        // Each shard dropped its ended windows when it last inserted: only a few per
        // shard remain, not one per second.
        assert!(
            counters.len() < 4 * SHARDS,
            "{} counters left",
            counters.len()
        );
        counters.purge_expired();
        assert!(counters.is_empty());
    }
}
