//! Proxy metrics as lock-free counters, rendered as Prometheus text on the status port.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Why talking to an upstream failed.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    /// TCP connect failed or timed out.
    Connect,
    /// No response in time.
    Timeout,
    /// The connection broke or the response was invalid.
    Protocol,
    /// Every target of the upstream is unhealthy.
    NoHealthyTarget,
}

/// Counters shared by every connection.
#[derive(Debug, Default)]
pub struct Metrics {
    by_class: [AtomicU64; 6],
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    upstream_errors: [AtomicU64; 4],
    active_connections: AtomicI64,
    config_applies: AtomicU64,
    config_rejections: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).clamp(1, 5) as usize;
        self.by_class[class].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
                break;
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// A downstream connection opened (+1) or closed (-1).
    pub fn connection(&self, delta: i64) {
        self.active_connections.fetch_add(delta, Relaxed);
    }

    /// Open downstream connections right now (all workers).
    pub fn active_connections(&self) -> i64 {
        self.active_connections.load(Relaxed)
    }

    /// A config was applied or rejected.
    pub fn config_outcome(&self, applied: bool) {
        if applied {
            self.config_applies.fetch_add(1, Relaxed);
        } else {
            self.config_rejections.fetch_add(1, Relaxed);
        }
    }

    /// Requests answered so far, all classes.
    pub fn total_requests(&self) -> u64 {
        self.by_class.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP fleetgate_dp_requests_total Requests answered, by status class.\n");
        out.push_str("# TYPE fleetgate_dp_requests_total counter\n");
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "fleetgate_dp_requests_total{{status_class=\"{class}xx\"}} {}",
                self.by_class[class].load(Relaxed)
            );
        }
        out.push_str(
            "# HELP fleetgate_dp_request_duration_seconds Time from request to response headers.\n",
        );
        out.push_str("# TYPE fleetgate_dp_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "fleetgate_dp_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "fleetgate_dp_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "fleetgate_dp_request_duration_seconds_sum {}",
            self.latency_sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "fleetgate_dp_request_duration_seconds_count {count}");
        out.push_str("# HELP fleetgate_dp_upstream_errors_total Failures talking to upstreams.\n");
        out.push_str("# TYPE fleetgate_dp_upstream_errors_total counter\n");
        for (i, kind) in ["connect", "timeout", "protocol", "no_healthy_target"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "fleetgate_dp_upstream_errors_total{{kind=\"{kind}\"}} {}",
                self.upstream_errors[i].load(Relaxed)
            );
        }
        out.push_str("# HELP fleetgate_dp_active_connections Open downstream connections.\n");
        out.push_str("# TYPE fleetgate_dp_active_connections gauge\n");
        let _ = writeln!(
            out,
            "fleetgate_dp_active_connections {}",
            self.active_connections.load(Relaxed)
        );
        out.push_str("# HELP fleetgate_dp_config_applies_total Configs applied or rejected.\n");
        out.push_str("# TYPE fleetgate_dp_config_applies_total counter\n");
        let _ = writeln!(
            out,
            "fleetgate_dp_config_applies_total{{outcome=\"applied\"}} {}",
            self.config_applies.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "fleetgate_dp_config_applies_total{{outcome=\"rejected\"}} {}",
            self.config_rejections.load(Relaxed)
        );
        out
    }
}
