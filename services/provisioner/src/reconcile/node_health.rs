//! Whether a running gateway node is healthy enough to keep: the one decision behind
//! replacing nodes that never connected and nodes that went silent.
//!
//! Both cases use the same deadline. A node that never pinged is measured from its launch; a
//! node that did is measured from its last ping. Either way the instance still runs at the
//! provider (a stopped one is replaced for that reason alone), so only the control plane's
//! view of the node can tell that it is of no use: hung, cut off, or never booted right.

use std::time::{Duration, SystemTime};

/// What the control plane has seen of a launched node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeContact {
    /// No ping from it since its launch.
    Never,
    /// Its latest ping since launch.
    LastPing(SystemTime),
    /// The control plane could not tell (a store error): treated as healthy, because unknown
    /// is not "silent" and a hiccup must not get healthy nodes replaced.
    Unknown,
}

impl NodeContact {
    /// Whether the node has connected at all since launch (or might have).
    pub fn connected(self) -> bool {
        !matches!(self, Self::Never)
    }
}

/// Why a running node should be replaced, or `None` to keep it. `launched_at` is the provider's
/// launch time (`None`: unknown, so never overdue); the deadline applies from launch to a node
/// that never pinged, and from its last ping to one that did.
pub fn replacement_reason(
    now: SystemTime,
    launched_at: Option<SystemTime>,
    contact: NodeContact,
    deadline: Duration,
) -> Option<String> {
    match contact {
        NodeContact::Unknown => None,
        NodeContact::Never => {
            let age = now.duration_since(launched_at?).ok()?;
            (age >= deadline).then(|| {
                format!(
                    "never connected within {}s of launch",
                    deadline.as_secs_f64()
                )
            })
        }
        NodeContact::LastPing(at) => {
            // A ping stamped after `now` (clock skew between replicas) is fresh, not silent.
            // Strictly past the deadline: a ping at this very instant is contact, even with a
            // zero deadline.
            let silent = now.duration_since(at).unwrap_or_default();
            (silent > deadline).then(|| {
                format!(
                    "silent for {}s since its last ping (deadline {}s)",
                    silent.as_secs(),
                    deadline.as_secs_f64()
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(600);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn a_node_that_never_pinged_is_replaced_once_the_deadline_after_launch_passes() {
        let launched = Some(at(0));
        assert_eq!(
            replacement_reason(at(599), launched, NodeContact::Never, DEADLINE),
            None
        );
        assert_eq!(
            replacement_reason(at(600), launched, NodeContact::Never, DEADLINE).as_deref(),
            Some("never connected within 600s of launch")
        );
        // No launch time: nothing to measure from, so it is kept.
        assert_eq!(
            replacement_reason(at(10_000), None, NodeContact::Never, DEADLINE),
            None
        );
    }

    #[test]
    fn a_node_that_pinged_is_replaced_once_its_last_ping_is_older_than_the_deadline() {
        let launched = Some(at(0));
        // Launched long ago, but pinging: kept.
        let pinging = NodeContact::LastPing(at(9_990));
        assert_eq!(
            replacement_reason(at(10_000), launched, pinging, DEADLINE),
            None
        );
        // Last ping 599 s ago: still within the deadline.
        let quiet = NodeContact::LastPing(at(9_401));
        assert_eq!(
            replacement_reason(at(10_000), launched, quiet, DEADLINE),
            None
        );
        // 612 s of silence.
        let silent = NodeContact::LastPing(at(9_388));
        assert_eq!(
            replacement_reason(at(10_000), launched, silent, DEADLINE).as_deref(),
            Some("silent for 612s since its last ping (deadline 600s)")
        );
    }

    #[test]
    fn unknown_contact_and_pings_from_the_future_keep_the_node() {
        assert_eq!(
            replacement_reason(at(10_000), Some(at(0)), NodeContact::Unknown, DEADLINE),
            None
        );
        let ahead = NodeContact::LastPing(at(10_005));
        assert_eq!(
            replacement_reason(at(10_000), Some(at(0)), ahead, DEADLINE),
            None
        );
    }

    #[test]
    fn connected_means_any_contact_but_never() {
        assert!(!NodeContact::Never.connected());
        assert!(NodeContact::LastPing(at(0)).connected());
        assert!(NodeContact::Unknown.connected());
    }
}
