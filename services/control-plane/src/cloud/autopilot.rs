//! Autopilot sizing: a dataplane group with `autoscale {kind: autopilot, base_rps, max_rps}`
//! runs as many nodes as its measured requests per second need, never fewer than `base_rps`
//! needs nor more than `max_rps` allows. A pure function of its inputs, so the rules are
//! tested without a clock or a database; the reconcile pass feeds it telemetry.
//!
//! Cooldowns keep the count from flapping with bursty traffic: growing waits
//! [`SCALE_UP_COOLDOWN_SECS`] after the last change (a node needs about that long to boot and
//! take traffic), shrinking waits the longer [`SCALE_DOWN_COOLDOWN_SECS`] (removing capacity too
//! early costs errors, keeping it a little longer only costs money).

use super::catalogue::{instance_size, MAX_INSTANCES};
use crate::store::{
    AggregateFilter, AutopilotDecision, Autoscale, DataplaneGroupRecord, Store, StoreResult,
    AUTOPILOT_SIZE,
};
use crate::telemetry::Granularity;

/// The telemetry window a decision measures: the last six complete 10-second buckets.
pub const WINDOW_SECS: i64 = 60;

/// Seconds after the last change before autopilot adds nodes.
pub const SCALE_UP_COOLDOWN_SECS: i64 = 60;
/// Seconds after the last change before autopilot removes nodes.
pub const SCALE_DOWN_COOLDOWN_SECS: i64 = 300;

/// Requests per second one autopilot node is sized for.
pub fn rps_per_node() -> u64 {
    instance_size(AUTOPILOT_SIZE).map_or(1_000, |s| s.rps_per_node)
}

/// Nodes needed to carry `rps` (at least one).
fn nodes_for(rps: f64) -> u32 {
    let needed = (rps.max(0.0) / rps_per_node() as f64).ceil();
    // Beyond MAX_INSTANCES the value is clamped anyway; the cast cannot overflow.
    (needed.min(f64::from(MAX_INSTANCES)) as u32).max(1)
}

/// The fewest and most nodes a group may run: enough for `base_rps`, at most enough for
/// `max_rps`, within 1 to [`MAX_INSTANCES`].
pub fn bounds(base_rps: u32, max_rps: u32) -> (u32, u32) {
    let low = nodes_for(f64::from(base_rps));
    let high = nodes_for(f64::from(max_rps)).max(low);
    (low, high)
}

/// What autopilot knows when it decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutopilotInputs {
    /// The group's `base_rps`.
    pub base_rps: u32,
    /// The group's `max_rps`.
    pub max_rps: u32,
    /// Requests per second measured over the last window; `None` when no telemetry arrived.
    pub measured_rps: Option<f64>,
    /// The node count the group asks for now.
    pub current: u32,
    /// When autopilot last changed the count (Unix seconds), if ever.
    pub last_change_at: Option<i64>,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The node count the group should ask for. Without telemetry it holds its count (within the
/// bounds): no traffic seen is not the same as no traffic.
pub fn desired_instances(inputs: AutopilotInputs) -> u32 {
    let (low, high) = bounds(inputs.base_rps, inputs.max_rps);
    let current = inputs.current;
    // Outside the bounds (the user just changed them): move inside at once.
    if current < low || current > high {
        return current.clamp(low, high);
    }
    let Some(rps) = inputs.measured_rps else {
        return current;
    };
    let target = nodes_for(rps).clamp(low, high);
    let since_change = inputs
        .last_change_at
        .map_or(i64::MAX, |at| inputs.now.saturating_sub(at));
    let cooled = if target > current {
        since_change >= SCALE_UP_COOLDOWN_SECS
    } else {
        since_change >= SCALE_DOWN_COOLDOWN_SECS
    };
    if cooled {
        target
    } else {
        current
    }
}

/// Requests per second the group's control plane served over the last complete window;
/// `None` when no telemetry arrived in it. Telemetry is per control plane, not per group: a
/// control plane with groups in several networks sizes each for its whole traffic
/// (conservative: more nodes, never fewer).
async fn measured_rps(
    store: &Store,
    group: &DataplaneGroupRecord,
    now: i64,
) -> StoreResult<Option<f64>> {
    let end = now - now.rem_euclid(10);
    let filter = AggregateFilter {
        text_filters: vec![(
            "control_plane_id",
            vec![group.control_plane_id.to_string()],
            false,
        )],
        status_filters: Vec::new(),
    };
    let rows = store
        .analytics_rows(
            group.organization_id,
            Granularity::TenSeconds,
            end - WINDOW_SECS,
            end,
            &filter,
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let total: i64 = rows.iter().map(|(_, v)| v.request_count).sum();
    Ok(Some(total as f64 / WINDOW_SECS as f64))
}

/// One autopilot step for a group in the reconcile pass: measures, decides, records the
/// decision and the node count, and updates `group` so this pass converges to it. Static and
/// terminating groups are left alone; a failure is logged and the group keeps its count.
pub async fn apply(store: &Store, group: &mut DataplaneGroupRecord) {
    let Autoscale::Autopilot { base_rps, max_rps } = group.autoscale else {
        return;
    };
    if matches!(group.state.as_str(), "terminating" | "terminated") {
        return;
    }
    let now = store.clock().now();
    let measured = match measured_rps(store, group, now).await {
        Ok(measured) => measured,
        Err(e) => {
            tracing::warn!(group_id = %group.id, error = %e, "autopilot: read telemetry");
            return;
        }
    };
    let previous = group.autopilot.as_ref();
    let current = group.requested_instances;
    let desired = desired_instances(AutopilotInputs {
        base_rps,
        max_rps,
        measured_rps: measured,
        current,
        last_change_at: previous.and_then(|p| p.changed_at),
        now,
    });
    let decision = AutopilotDecision {
        measured_rps: measured.unwrap_or(0.0),
        desired_instances: desired,
        decided_at: now,
        changed_at: if desired != current {
            Some(now)
        } else {
            previous.and_then(|p| p.changed_at)
        },
    };
    match store.record_autopilot_decision(group.id, &decision).await {
        Ok(true) => {
            if desired != current {
                tracing::info!(group_id = %group.id, measured_rps = decision.measured_rps, from = current, to = desired, "autopilot resized a dataplane group");
            }
            group.requested_instances = desired;
            group.autopilot = Some(decision);
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(group_id = %group.id, error = %e, "autopilot: record decision"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(measured: Option<f64>, current: u32, last_change_at: Option<i64>) -> AutopilotInputs {
        AutopilotInputs {
            base_rps: 1_000,
            max_rps: 10_000,
            measured_rps: measured,
            current,
            last_change_at,
            now: 10_000,
        }
    }

    #[test]
    fn bounds_follow_the_rates_per_node() {
        let per = rps_per_node() as u32;
        assert_eq!(bounds(1, 1), (1, 1));
        assert_eq!(bounds(per, per * 3), (1, 3));
        assert_eq!(bounds(per + 1, per * 3 + 1), (2, 4));
        assert_eq!(bounds(u32::MAX, u32::MAX), (MAX_INSTANCES, MAX_INSTANCES));
        // A max below the base never lowers the floor.
        assert_eq!(bounds(per * 4, per), (4, 4));
    }

    #[test]
    fn the_count_follows_measured_traffic_within_the_bounds() {
        let per = rps_per_node() as f64;
        let (low, high) = bounds(1_000, 10_000);
        assert_eq!(
            desired_instances(inputs(Some(per * 3.5), low, None)),
            4.max(low).min(high)
        );
        assert_eq!(
            desired_instances(inputs(Some(per * 1_000.0), low, None)),
            high
        );
        assert_eq!(desired_instances(inputs(Some(0.0), high, None)), low);
    }

    #[test]
    fn cooldowns_hold_the_count_after_a_change() {
        let per = rps_per_node() as f64;
        let (low, high) = bounds(1_000, 10_000);
        assert!(high > low + 1, "the test needs room to move");
        // Up: held within 60 s of the last change, then taken.
        let up = |last| desired_instances(inputs(Some(per * f64::from(high)), low, Some(last)));
        assert_eq!(up(10_000 - SCALE_UP_COOLDOWN_SECS + 1), low);
        assert_eq!(up(10_000 - SCALE_UP_COOLDOWN_SECS), high);
        // Down: held within 300 s, then taken.
        let down = |last| desired_instances(inputs(Some(0.0), high, Some(last)));
        assert_eq!(down(10_000 - SCALE_DOWN_COOLDOWN_SECS + 1), high);
        assert_eq!(down(10_000 - SCALE_DOWN_COOLDOWN_SECS), low);
    }

    #[test]
    fn no_telemetry_holds_and_new_bounds_apply_at_once() {
        let (low, high) = bounds(1_000, 10_000);
        assert_eq!(
            desired_instances(inputs(None, low + 1, Some(10_000))),
            low + 1
        );
        assert_eq!(desired_instances(inputs(None, 0, Some(10_000))), low);
        assert_eq!(
            desired_instances(inputs(None, high + 5, Some(10_000))),
            high
        );
    }
}
