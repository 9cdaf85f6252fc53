//! An upstream's `healthchecks` section, with Kong's defaults. Every struct declares its
//! fields in alphabetical order because the canonical JSON relies on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entity::FieldError;
use crate::validate::Errors;

/// Active and passive health checks of an upstream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Healthchecks {
    /// Probes sent to targets.
    pub active: ActiveHealthcheck,
    /// Observation of proxied traffic.
    pub passive: PassiveHealthcheck,
    /// Minimum percentage of healthy weight for the upstream to be healthy (default 0).
    pub threshold: f64,
}

/// Kong's active probe settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveHealthcheck {
    /// Parallel probes (default 10).
    pub concurrency: u32,
    /// Extra headers sent with probes.
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// When a target counts as healthy.
    pub healthy: ActiveHealthy,
    /// Path probed (default "/").
    pub http_path: String,
    /// SNI sent with HTTPS probes.
    pub https_sni: Option<String>,
    /// Whether the target's certificate is verified (default true).
    pub https_verify_certificate: bool,
    /// Probe timeout in seconds (default 1).
    pub timeout: f64,
    /// Probe type: tcp, http, https, grpc or grpcs (default http).
    #[serde(rename = "type")]
    pub kind: String,
    /// When a target counts as unhealthy.
    pub unhealthy: ActiveUnhealthy,
}

impl Default for ActiveHealthcheck {
    fn default() -> Self {
        Self {
            concurrency: 10,
            headers: None,
            healthy: ActiveHealthy::default(),
            http_path: "/".into(),
            https_sni: None,
            https_verify_certificate: true,
            timeout: 1.0,
            kind: "http".into(),
            unhealthy: ActiveUnhealthy::default(),
        }
    }
}

/// Active probe thresholds for "healthy".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveHealthy {
    /// Statuses counting as success (default 200, 302).
    pub http_statuses: Vec<u16>,
    /// Seconds between probes of healthy targets; 0 disables (default 0).
    pub interval: f64,
    /// Successes before a target is healthy (default 0).
    pub successes: u32,
}

impl Default for ActiveHealthy {
    fn default() -> Self {
        Self {
            http_statuses: vec![200, 302],
            interval: 0.0,
            successes: 0,
        }
    }
}

/// Active probe thresholds for "unhealthy".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveUnhealthy {
    /// HTTP failures before a target is unhealthy (default 0).
    pub http_failures: u32,
    /// Statuses counting as failure.
    pub http_statuses: Vec<u16>,
    /// Seconds between probes of unhealthy targets; 0 disables (default 0).
    pub interval: f64,
    /// TCP failures before a target is unhealthy (default 0).
    pub tcp_failures: u32,
    /// Timeouts before a target is unhealthy (default 0).
    pub timeouts: u32,
}

impl Default for ActiveUnhealthy {
    fn default() -> Self {
        Self {
            http_failures: 0,
            http_statuses: vec![429, 404, 500, 501, 502, 503, 504, 505],
            interval: 0.0,
            tcp_failures: 0,
            timeouts: 0,
        }
    }
}

/// Kong's passive (circuit-breaker) settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveHealthcheck {
    /// When a target counts as healthy again.
    pub healthy: PassiveHealthy,
    /// Traffic type observed: tcp, http, https, grpc or grpcs (default http).
    #[serde(rename = "type")]
    pub kind: String,
    /// When a target counts as unhealthy.
    pub unhealthy: PassiveUnhealthy,
}

impl Default for PassiveHealthcheck {
    fn default() -> Self {
        Self {
            healthy: PassiveHealthy::default(),
            kind: "http".into(),
            unhealthy: PassiveUnhealthy::default(),
        }
    }
}

/// Passive thresholds for "healthy".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveHealthy {
    /// Statuses counting as success (Kong's 2xx/3xx list).
    pub http_statuses: Vec<u16>,
    /// Successes before a target is healthy (default 0).
    pub successes: u32,
}

impl Default for PassiveHealthy {
    fn default() -> Self {
        Self {
            http_statuses: vec![
                200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305,
                306, 307, 308,
            ],
            successes: 0,
        }
    }
}

/// Passive thresholds for "unhealthy".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PassiveUnhealthy {
    /// HTTP failures before a target is unhealthy (default 0).
    pub http_failures: u32,
    /// Statuses counting as failure (default 429, 500, 503).
    pub http_statuses: Vec<u16>,
    /// TCP failures before a target is unhealthy (default 0).
    pub tcp_failures: u32,
    /// Timeouts before a target is unhealthy (default 0).
    pub timeouts: u32,
}

impl Default for PassiveUnhealthy {
    fn default() -> Self {
        Self {
            http_failures: 0,
            http_statuses: vec![429, 500, 503],
            tcp_failures: 0,
            timeouts: 0,
        }
    }
}

const CHECK_TYPES: [&str; 5] = ["tcp", "http", "https", "grpc", "grpcs"];
/// Kong stores counters in a byte.
const MAX_COUNTER: u32 = 255;

fn check_statuses(errors: &mut Errors, field: &str, statuses: &[u16]) {
    for (i, s) in statuses.iter().enumerate() {
        if !(100..=999).contains(s) {
            errors.add(
                format!("{field}[{i}]"),
                "value should be between 100 and 999",
            );
        }
    }
}

fn check_counters(errors: &mut Errors, counters: &[(&str, u32)]) {
    for (field, value) in counters {
        if *value > MAX_COUNTER {
            errors.add(
                *field,
                format!("value should be between 0 and {MAX_COUNTER}"),
            );
        }
    }
}

fn check_seconds(errors: &mut Errors, field: &str, value: f64) {
    if !(0.0..=65_535.0).contains(&value) {
        errors.add(field, "value should be between 0 and 65535");
    }
}

impl Healthchecks {
    /// Range checks of every setting; paths are relative to `healthchecks`.
    pub(crate) fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        let a = &self.active;
        let p = &self.passive;
        if !(0.0..=100.0).contains(&self.threshold) {
            errors.add("threshold", "value should be between 0 and 100");
        }
        for (field, kind) in [("active.type", &a.kind), ("passive.type", &p.kind)] {
            if !CHECK_TYPES.contains(&kind.as_str()) {
                errors.add(
                    field,
                    format!("expected one of: {}", CHECK_TYPES.join(", ")),
                );
            }
        }
        if !(1..=2_147_483_648).contains(&a.concurrency) {
            errors.add(
                "active.concurrency",
                "value should be between 1 and 2147483648",
            );
        }
        if !a.http_path.starts_with('/') {
            errors.add("active.http_path", "should start with: /");
        }
        check_seconds(&mut errors, "active.timeout", a.timeout);
        check_seconds(&mut errors, "active.healthy.interval", a.healthy.interval);
        check_seconds(
            &mut errors,
            "active.unhealthy.interval",
            a.unhealthy.interval,
        );
        check_statuses(
            &mut errors,
            "active.healthy.http_statuses",
            &a.healthy.http_statuses,
        );
        check_statuses(
            &mut errors,
            "active.unhealthy.http_statuses",
            &a.unhealthy.http_statuses,
        );
        check_statuses(
            &mut errors,
            "passive.healthy.http_statuses",
            &p.healthy.http_statuses,
        );
        check_statuses(
            &mut errors,
            "passive.unhealthy.http_statuses",
            &p.unhealthy.http_statuses,
        );
        check_counters(
            &mut errors,
            &[
                ("active.healthy.successes", a.healthy.successes),
                ("active.unhealthy.http_failures", a.unhealthy.http_failures),
                ("active.unhealthy.tcp_failures", a.unhealthy.tcp_failures),
                ("active.unhealthy.timeouts", a.unhealthy.timeouts),
                ("passive.healthy.successes", p.healthy.successes),
                ("passive.unhealthy.http_failures", p.unhealthy.http_failures),
                ("passive.unhealthy.tcp_failures", p.unhealthy.tcp_failures),
                ("passive.unhealthy.timeouts", p.unhealthy.timeouts),
            ],
        );
        errors.finish()
    }
}
