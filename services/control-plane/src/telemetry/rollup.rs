//! Rolling 10 s buckets up into minute, hour and day buckets, and retention.
//!
//! Ingest marks the minute of every 10 s bucket it changes as dirty; a rollup pass rebuilds
//! each dirty minute from *all* its 10 s rows (so a pass run twice, or a late batch, never
//! double counts), which marks its hour dirty, and so on up to the day. The same pass runs in
//! the background every `rollup_interval` and, synchronously, before a query reads a rolled-up
//! table — so recent data is visible at every granularity.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use super::{AnalyticsSettings, Granularity, Retention};
use crate::store::{now_unix, Store};

/// Dirty buckets fetched per round trip.
const DIRTY_PAGE: i64 = 200;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Buckets rebuilt (all levels).
    pub rebuilt: usize,
    /// Rows deleted by retention.
    pub pruned: u64,
}

/// Rebuilds every dirty bucket up to and including `up_to` (minute, then hour, then day).
pub async fn roll_up(store: &Store, up_to: Granularity, now: i64) -> anyhow::Result<usize> {
    roll_up_within(store, up_to, i64::MIN, i64::MAX, now).await
}

/// Like [`roll_up`], limited to the dirty buckets inside the `up_to` buckets overlapping
/// `[start, end)`: what a query over that range reads. Buckets elsewhere wait for the
/// background pass, so a query about last week does not pay for rebuilding today.
pub async fn roll_up_within(
    store: &Store,
    up_to: Granularity,
    start: i64,
    end: i64,
    now: i64,
) -> anyhow::Result<usize> {
    // A finer bucket belongs to the range when its enclosing `up_to` bucket overlaps it.
    let from = if start == i64::MIN {
        start
    } else {
        up_to.floor(start)
    };
    let until = if end == i64::MAX {
        end
    } else {
        up_to
            .floor(end.saturating_sub(1))
            .saturating_add(up_to.seconds())
    };
    let mut rebuilt = 0;
    for target in [Granularity::Minute, Granularity::Hour, Granularity::Day] {
        if target > up_to {
            break;
        }
        loop {
            let dirty = store
                .dirty_buckets(target, from, until, DIRTY_PAGE)
                .await
                .with_context(|| format!("list dirty {} buckets", target.name()))?;
            if dirty.is_empty() {
                break;
            }
            let mut progressed = false;
            for bucket in &dirty {
                store
                    .rebuild_bucket(target, bucket, now)
                    .await
                    .with_context(|| {
                        format!(
                            "roll up the {} bucket {} of control plane {}",
                            target.name(),
                            bucket.bucket_start,
                            bucket.control_plane_id
                        )
                    })?;
                rebuilt += 1;
                progressed = true;
            }
            // A page smaller than asked for was the last; a full page may have more behind
            // it (or the same buckets again if ingest keeps changing them: then stop, the next
            // pass picks them up).
            if !progressed || (dirty.len() as i64) < DIRTY_PAGE {
                break;
            }
        }
    }
    Ok(rebuilt)
}

/// Deletes what retention no longer keeps, at every granularity.
pub async fn prune(store: &Store, retention: &Retention, now: i64) -> anyhow::Result<u64> {
    let mut pruned = 0;
    for granularity in Granularity::ALL {
        pruned += store
            .prune_analytics(granularity, retention.horizon(granularity, now))
            .await
            .with_context(|| format!("prune {} analytics", granularity.name()))?;
    }
    Ok(pruned)
}

/// One full pass: roll everything up, then prune (in that order, so nothing is pruned before
/// it was rolled up).
pub async fn run_once(
    store: &Store,
    retention: &Retention,
    now: i64,
) -> anyhow::Result<RollupReport> {
    let rebuilt = roll_up(store, Granularity::Day, now).await?;
    let pruned = prune(store, retention, now).await?;
    Ok(RollupReport { rebuilt, pruned })
}

/// Runs [`run_once`] every `rollup_interval` until `stop` turns true.
pub fn spawn(
    store: Arc<Store>,
    settings: AnalyticsSettings,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.rollup_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            match run_once(&store, &settings.retention, now_unix()).await {
                Ok(report) if report.rebuilt > 0 || report.pruned > 0 => {
                    tracing::debug!(
                        rebuilt = report.rebuilt,
                        pruned = report.pruned,
                        "analytics rollup pass"
                    );
                }
                Ok(_) => {}
                // Transient (e.g. a lock timeout): the marks stay, the next pass retries.
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "analytics rollup pass failed");
                }
            }
        }
    })
}
