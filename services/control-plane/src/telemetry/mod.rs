//! Telemetry from data planes into analytics (docs/telemetry.md, docs/architecture.md).
//!
//! - [`frame`]: a node's binary frames — compact telemetry frames (decoded into columns) or gzip
//!   of a JSON message.
//! - [`ingest`]: one telemetry batch -> one transaction (dedup on `(node_id, seq)`, 10 s
//!   aggregates, billing counts, the node's dropped total), acked after commit.
//! - [`rollup`]: 10 s buckets rolled into minute, hour and day buckets, and retention.
//! - [`query`]: `POST /v2/analytics/metrics` requests, validated and answered.
//! - [`sketch`]: the mergeable latency sketch stored in every aggregate row.

pub mod frame;
pub mod ingest;
pub mod query;
pub mod rollup;
pub mod sketch;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Seconds in a UTC day (Unix time has no leap seconds).
pub const DAY_SECS: i64 = 86_400;

/// Width of the time buckets analytics are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// 10 s buckets: what ingest writes.
    TenSeconds,
    /// 1 minute.
    Minute,
    /// 1 hour.
    Hour,
    /// 1 UTC day.
    Day,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 4] = [
        Granularity::TenSeconds,
        Granularity::Minute,
        Granularity::Hour,
        Granularity::Day,
    ];

    /// Bucket width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::TenSeconds => 10,
            Granularity::Minute => 60,
            Granularity::Hour => 3_600,
            Granularity::Day => DAY_SECS,
        }
    }

    /// The bucket start containing `unix_secs`.
    pub fn floor(self, unix_secs: i64) -> i64 {
        unix_secs.div_euclid(self.seconds()) * self.seconds()
    }

    /// The table holding buckets of this width.
    pub fn table(self) -> &'static str {
        match self {
            Granularity::TenSeconds => "analytics_10s",
            Granularity::Minute => "analytics_minute",
            Granularity::Hour => "analytics_hour",
            Granularity::Day => "analytics_day",
        }
    }

    /// Its name in the store and logs (`ten_seconds`, `minute`, `hour`, `day`); the API speaks
    /// Konnect's granularities (`telemetry::query::Bucket`).
    pub fn name(self) -> &'static str {
        match self {
            Granularity::TenSeconds => "ten_seconds",
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// Parses an API name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The finer granularity this one is rolled up from (`None` for 10 s).
    pub fn source(self) -> Option<Self> {
        match self {
            Granularity::TenSeconds => None,
            Granularity::Minute => Some(Granularity::TenSeconds),
            Granularity::Hour => Some(Granularity::Minute),
            Granularity::Day => Some(Granularity::Hour),
        }
    }

    /// The coarser granularity this one rolls up into (`None` for day).
    pub fn target(self) -> Option<Self> {
        match self {
            Granularity::TenSeconds => Some(Granularity::Minute),
            Granularity::Minute => Some(Granularity::Hour),
            Granularity::Hour => Some(Granularity::Day),
            Granularity::Day => None,
        }
    }
}

/// How long each granularity is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// 10 s buckets (and the dedup record of ingested batches).
    pub ten_seconds: Duration,
    /// Minute buckets.
    pub minute: Duration,
    /// Hour buckets.
    pub hour: Duration,
    /// Day buckets.
    pub day: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            ten_seconds: Duration::from_secs(DAY_SECS as u64),
            minute: Duration::from_secs(7 * DAY_SECS as u64),
            hour: Duration::from_secs(90 * DAY_SECS as u64),
            day: Duration::from_secs(730 * DAY_SECS as u64),
        }
    }
}

impl Retention {
    /// The retention of one granularity.
    pub fn of(&self, granularity: Granularity) -> Duration {
        match granularity {
            Granularity::TenSeconds => self.ten_seconds,
            Granularity::Minute => self.minute,
            Granularity::Hour => self.hour,
            Granularity::Day => self.day,
        }
    }

    /// Coarser buckets must be kept at least as long as the finer ones they are rebuilt from,
    /// or a late batch could rebuild an hour from minutes that are already gone.
    pub fn validate(&self) -> Result<(), String> {
        let pairs = [
            ("minute", self.minute, "10s", self.ten_seconds),
            ("hour", self.hour, "minute", self.minute),
            ("day", self.day, "hour", self.hour),
        ];
        for (coarse, c, fine, f) in pairs {
            if c < f {
                return Err(format!(
                    "--analytics-retention-{coarse} ({c:?}) must be at least \
                     --analytics-retention-{fine} ({f:?})"
                ));
            }
        }
        Ok(())
    }

    /// The oldest bucket start kept at `granularity`: `now - retention`, floored to a UTC day.
    ///
    /// Flooring every horizon to a day means a kept minute, hour or day bucket always has all
    /// of its finer sources still stored, so rebuilding it never loses data.
    pub fn horizon(&self, granularity: Granularity, now: i64) -> i64 {
        let keep = i64::try_from(self.of(granularity).as_secs()).unwrap_or(i64::MAX);
        Granularity::Day.floor(now.saturating_sub(keep))
    }
}

/// Analytics settings of a running control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyticsSettings {
    /// Retention per granularity.
    pub retention: Retention,
    /// How often the background task rolls up and prunes.
    pub rollup_interval: Duration,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            rollup_interval: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_are_whole_utc_days_and_retention_must_not_shrink() {
        let retention = Retention::default();
        assert!(retention.validate().is_ok());
        let now = 1_700_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(
            retention.horizon(Granularity::TenSeconds, now),
            1_699_833_600 // 2023-11-13T00:00:00Z
        );
        assert_eq!(
            retention.horizon(Granularity::TenSeconds, now) % DAY_SECS,
            0
        );
        let shrinking = Retention {
            minute: Duration::from_secs(3_600),
            ..Retention::default()
        };
        let err = shrinking.validate().expect_err("minute shorter than 10 s");
        assert!(err.contains("--analytics-retention-minute"), "{err}");
    }

    #[test]
    fn granularities_floor_and_chain() {
        assert_eq!(Granularity::TenSeconds.floor(-1), -10);
        assert_eq!(Granularity::Hour.floor(7_199), 3_600);
        assert_eq!(
            Granularity::parse("ten_seconds"),
            Some(Granularity::TenSeconds)
        );
        assert_eq!(Granularity::parse("week"), None);
        assert_eq!(Granularity::Minute.source(), Some(Granularity::TenSeconds));
        assert_eq!(Granularity::Hour.target(), Some(Granularity::Day));
    }
}
