//! Upstream load balancing: weighted round-robin over an upstream's targets, with passive
//! health checks. Health survives config swaps: it is keyed by upstream name and target
//! address in a registry the node keeps for its lifetime.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetgate_config::{PassiveUnhealthy, Upstream};

/// How long a target that tripped a passive health check is skipped.
pub const PASSIVE_COOL_DOWN: Duration = Duration::from_secs(10);

/// Health of one target; shared by every config version naming it.
#[derive(Debug, Default)]
pub struct TargetHealth {
    http_failures: AtomicU32,
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
    /// Milliseconds since the registry's epoch until which the target is skipped; 0 = healthy.
    unhealthy_until_ms: AtomicU64,
}

/// Health of every target the node has proxied to.
#[derive(Debug)]
pub struct HealthRegistry {
    epoch: Instant,
    targets: Mutex<HashMap<(String, String), Arc<TargetHealth>>>,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            targets: Mutex::new(HashMap::new()),
        }
    }
}

impl HealthRegistry {
    fn entry(&self, upstream: &str, target: &str) -> Arc<TargetHealth> {
        let mut map = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((upstream.to_string(), target.to_string()))
            .or_default()
            .clone()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// What happened on one attempt, for passive health checks.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// Connecting failed.
    TcpFailure,
    /// No response in time.
    Timeout,
}

/// One target of a balancer.
#[derive(Debug)]
pub struct BalancerTarget {
    /// `host:port` to connect to.
    pub address: String,
    /// The `Host` sent to it: the upstream's `host_header`, else its own host (and port,
    /// unless 80 or 443).
    pub host_value: Option<http::HeaderValue>,
    /// Host part (for the Host header when the upstream gives none).
    pub host: String,
    /// Port part.
    pub port: u16,
    weight: u32,
    health: Arc<TargetHealth>,
}

/// The compiled balancer of one upstream.
#[derive(Debug)]
pub struct Balancer {
    /// Upstream name (the host services use to address it).
    pub name: String,
    /// `host_header` of the upstream, if set.
    pub host_header: Option<String>,
    targets: Vec<BalancerTarget>,
    /// Target indexes repeated by weight (weights reduced by their GCD), walked round-robin.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
    unhealthy: PassiveUnhealthy,
    registry: Arc<HealthRegistry>,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The `Host` value for `host:port`: `explicit` when set, else the host with its port
/// (left out for 80 and 443, as clients do).
pub fn host_value(explicit: Option<&str>, host: &str, port: u16) -> Option<http::HeaderValue> {
    let value = match explicit {
        Some(explicit) => explicit.to_string(),
        None if port == 80 || port == 443 => host.to_string(),
        None => format!("{host}:{port}"),
    };
    http::HeaderValue::from_str(&value).ok()
}

/// Splits `host:port` (default port 8000, Kong's target default).
pub fn split_host_port(target: &str) -> (String, u16) {
    if let Some(rest) = target.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:") {
            return (host.to_string(), port.parse().unwrap_or(8000));
        }
        return (rest.trim_end_matches(']').to_string(), 8000);
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            (host.to_string(), port.parse().unwrap_or(8000))
        }
        _ => (target.to_string(), 8000),
    }
}

impl Balancer {
    /// Builds the balancer of `upstream` over its targets (`(target, weight)`).
    pub fn new(
        upstream: &Upstream,
        targets: &[(&str, u16)],
        registry: Arc<HealthRegistry>,
    ) -> Self {
        let targets: Vec<BalancerTarget> = targets
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(t, w)| {
                let (host, port) = split_host_port(t);
                BalancerTarget {
                    address: format!("{host}:{port}"),
                    host_value: host_value(upstream.host_header.as_deref(), &host, port),
                    host,
                    port,
                    weight: u32::from(*w),
                    health: registry.entry(&upstream.name, t),
                }
            })
            .collect();
        let divisor = targets.iter().fold(0, |g, t| gcd(g, t.weight)).max(1);
        // Interleave rather than repeat in blocks, so a 2:1 split reads A B A, not A A B.
        let mut schedule = Vec::new();
        let rounds = targets
            .iter()
            .map(|t| t.weight / divisor)
            .max()
            .unwrap_or(0);
        for round in 0..rounds {
            for (i, t) in targets.iter().enumerate() {
                if round < t.weight / divisor {
                    schedule.push(i);
                }
            }
        }
        Self {
            name: upstream.name.clone(),
            host_header: upstream.host_header.clone(),
            targets,
            schedule,
            cursor: AtomicUsize::new(0),
            unhealthy: upstream.healthchecks.passive.unhealthy.clone(),
            registry,
        }
    }

    /// The next healthy target, round-robin by weight; `None` when every target is down.
    pub fn pick(&self) -> Option<&BalancerTarget> {
        if self.schedule.is_empty() {
            return None;
        }
        let now = self.registry.now_ms();
        let start = self.cursor.fetch_add(1, Relaxed);
        (0..self.schedule.len())
            .map(|i| &self.targets[self.schedule[(start + i) % self.schedule.len()]])
            .find(|t| t.health.unhealthy_until_ms.load(Relaxed) <= now)
    }

    /// Feeds an attempt's outcome into the passive health check of `target`.
    pub fn report(&self, target: &BalancerTarget, outcome: Outcome) {
        let h = &target.health;
        let u = &self.unhealthy;
        let tripped = match outcome {
            Outcome::Status(status) if u.http_statuses.contains(&status) => {
                u.http_failures > 0 && h.http_failures.fetch_add(1, Relaxed) + 1 >= u.http_failures
            }
            Outcome::Status(_) => {
                // A good answer clears the failure streaks.
                h.http_failures.store(0, Relaxed);
                h.tcp_failures.store(0, Relaxed);
                h.timeouts.store(0, Relaxed);
                false
            }
            Outcome::TcpFailure => {
                u.tcp_failures > 0 && h.tcp_failures.fetch_add(1, Relaxed) + 1 >= u.tcp_failures
            }
            Outcome::Timeout => {
                u.timeouts > 0 && h.timeouts.fetch_add(1, Relaxed) + 1 >= u.timeouts
            }
        };
        if tripped {
            h.http_failures.store(0, Relaxed);
            h.tcp_failures.store(0, Relaxed);
            h.timeouts.store(0, Relaxed);
            let until = self.registry.now_ms() + PASSIVE_COOL_DOWN.as_millis() as u64;
            h.unhealthy_until_ms.store(until, Relaxed);
            tracing::warn!(
                upstream = %self.name,
                target = %target.address,
                cool_down_s = PASSIVE_COOL_DOWN.as_secs(),
                "target marked unhealthy by passive health check"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(http_failures: u32) -> Upstream {
        let mut u: Upstream =
            fleetgate_config::parse_entity(&serde_json::json!({"name": "up"})).expect("upstream");
        u.healthchecks.passive.unhealthy.http_failures = http_failures;
        u.healthchecks.passive.unhealthy.tcp_failures = 1;
        u
    }

    #[test]
    fn weighted_round_robin_follows_weights() {
        let b = Balancer::new(&upstream(0), &[("a:1", 200), ("b:2", 100)], Arc::default());
        let picks: Vec<String> = (0..6)
            .map(|_| b.pick().expect("target").address.clone())
            .collect();
        assert_eq!(picks.iter().filter(|p| p.as_str() == "a:1").count(), 4);
        assert_eq!(picks.iter().filter(|p| p.as_str() == "b:2").count(), 2);
    }

    #[test]
    fn failing_targets_are_skipped_and_none_healthy_is_none() {
        let b = Balancer::new(&upstream(2), &[("a:1", 100), ("b:2", 100)], Arc::default());
        let a = b.targets.iter().find(|t| t.address == "a:1").expect("a");
        b.report(a, Outcome::Status(500));
        assert!((0..4).any(|_| b.pick().map(|t| t.address.as_str()) == Some("a:1")));
        b.report(a, Outcome::Status(500));
        assert!((0..4).all(|_| b.pick().map(|t| t.address.as_str()) == Some("b:2")));
        let bt = b.targets.iter().find(|t| t.address == "b:2").expect("b");
        b.report(bt, Outcome::TcpFailure);
        assert!(b.pick().is_none());
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("h:81"), ("h".into(), 81));
        assert_eq!(split_host_port("h"), ("h".into(), 8000));
        assert_eq!(split_host_port("[::1]:9"), ("::1".into(), 9));
    }
}
