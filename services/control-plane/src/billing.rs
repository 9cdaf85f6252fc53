//! Billing: what a month of usage counts, defined exactly so every number can be explained.
//!
//! # Counting rules (`GET /v2/billing/usage?period=YYYY-MM`)
//!
//! - **Period**: the calendar month in UTC, the half-open range of Unix seconds
//!   `[first day 00:00:00, first day of the next month 00:00:00)`.
//! - **Time resolution**: whole seconds. A service or published portal is an interval
//!   `[created, deleted)`: it counts from the second it was created (or published) and stops
//!   counting at the second it was deleted (or unpublished). One created and deleted within
//!   the same second never existed at any instant and counts nowhere.
//! - **Measured window**: the period, cut at the current second for the running month (the
//!   future is unknown); a month that has not started yet counts zero everywhere.
//! - **gateway_services**: the *peak* number of services that existed at the same instant
//!   anywhere in the measured window. Per control plane it is the peak of that control plane's
//!   services; for the organisation it is the peak of the organisation-wide total (which can
//!   be less than the sum of the control planes' peaks when those peaks happened at different
//!   times). A service existing for any part of the period counts at those instants; deleting
//!   a control plane ends all its services at that second; a declarative import ends the
//!   services it removes and starts the ones it adds, while services it keeps (same id) keep
//!   running.
//! - **active_portals**: the peak number of simultaneously *published* dev portals, by the
//!   same rule.
//! - **api_calls**: the sum of the API calls the data planes reported for the UTC days of the
//!   period (`billing_api_calls`, written by telemetry ingest).
//! - Each peak comes with `…_peak_at`: the first second at which it was reached (absent when
//!   the peak is zero), so a disputed count can be checked against the history at that time.

use std::cmp::Ordering;

/// One calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Year, 1970–9999.
    pub year: i32,
    /// Month, 1–12.
    pub month: u8,
}

/// Why a `period` parameter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a month as YYYY-MM (year 1970 to 9999, month 01 to 12), got {0:?}")]
pub struct InvalidPeriod(pub String);

impl Period {
    /// Parses `YYYY-MM` strictly: four digits, a dash, two digits, month 01–12.
    pub fn parse(raw: &str) -> Result<Self, InvalidPeriod> {
        let invalid = || InvalidPeriod(raw.to_string());
        let bytes = raw.as_bytes();
        if bytes.len() != 7
            || bytes[4] != b'-'
            || !bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit)
        {
            return Err(invalid());
        }
        let year: i32 = raw[..4].parse().map_err(|_| invalid())?;
        let month: u8 = raw[5..].parse().map_err(|_| invalid())?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(invalid());
        }
        Ok(Self { year, month })
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Unix seconds of the first instant of the month (UTC).
    pub fn start(self) -> i64 {
        // Computed by hand (days-from-civil) so the month after 9999-12 works too.
        days_from_civil(self.year, self.month, 1) * 86_400
    }

    /// Unix seconds of the first instant of the next month: the period's exclusive end.
    pub fn end(self) -> i64 {
        self.next().start()
    }

    /// The first and last `YYYY-MM-DD` keys of `billing_api_calls.day` in this month, for a
    /// string range (`YYYY-MM-31` sorts after every real day of the month).
    pub fn day_range(self) -> (String, String) {
        (format!("{self}-01"), format!("{self}-31"))
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A half-open interval of existence in Unix seconds; `end = None` means still existing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// First second it counts.
    pub start: i64,
    /// First second it no longer counts; `None` while it exists.
    pub end: Option<i64>,
}

/// The largest number of simultaneous lifetimes in a window, and when it was first reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peak {
    /// The peak count.
    pub count: i64,
    /// The first second at which `count` things existed together; `None` when `count` is 0.
    pub at: Option<i64>,
}

/// The exact peak of simultaneous `lifetimes` within `[from, until)`: a sweep over the
/// interval endpoints. At equal times ends are applied before starts, which is what the
/// half-open rule means: something ending at `t` and something starting at `t` never coexist.
pub fn peak(lifetimes: impl IntoIterator<Item = Lifetime>, from: i64, until: i64) -> Peak {
    let mut events: Vec<(i64, i64)> = Vec::new();
    for life in lifetimes {
        let start = life.start.max(from);
        let end = life.end.unwrap_or(i64::MAX).min(until);
        if start < end {
            events.push((start, 1));
            events.push((end, -1));
        }
    }
    // -1 sorts before +1 at the same time.
    events.sort_unstable_by(|a, b| match a.0.cmp(&b.0) {
        Ordering::Equal => a.1.cmp(&b.1),
        other => other,
    });
    let mut best = Peak::default();
    let mut current = 0;
    for (time, delta) in events {
        current += delta;
        if current > best.count {
            best = Peak {
                count: current,
                at: Some(time),
            };
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(start: i64, end: Option<i64>) -> Lifetime {
        Lifetime { start, end }
    }

    #[test]
    fn periods_parse_strictly() {
        assert_eq!(
            Period::parse("2024-02"),
            Ok(Period {
                year: 2024,
                month: 2
            })
        );
        for bad in [
            "2024-13",
            "2024-00",
            "2024-2",
            "24-02",
            "2024/02",
            "2024-02-01",
            "",
            "abcd-ef",
            "1969-12",
            "+202-01",
            "2024-+1",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn period_bounds_are_utc_month_edges() {
        let feb = Period::parse("2024-02").expect("valid period");
        assert_eq!(feb.start(), 1_706_745_600); // 2024-02-01T00:00:00Z
        assert_eq!(feb.end(), 1_709_251_200); // 2024-03-01T00:00:00Z (leap year)
        let dec = Period::parse("2023-12").expect("valid period");
        assert_eq!(dec.end(), 1_704_067_200); // 2024-01-01T00:00:00Z
        assert_eq!(Period::parse("1970-01").expect("valid period").start(), 0);
        assert_eq!(
            Period::parse("9999-12").expect("valid period").end(),
            253_402_300_800
        );
        assert_eq!(
            feb.day_range(),
            ("2024-02-01".to_string(), "2024-02-31".to_string())
        );
    }

    #[test]
    fn peak_uses_half_open_intervals() {
        // b starts the second a ends: never together.
        let p = peak([life(10, Some(20)), life(20, Some(30))], 0, 100);
        assert_eq!(
            p,
            Peak {
                count: 1,
                at: Some(10)
            }
        );
        // Overlap by one second.
        let p = peak([life(10, Some(21)), life(20, Some(30))], 0, 100);
        assert_eq!(
            p,
            Peak {
                count: 2,
                at: Some(20)
            }
        );
        // Zero-length lifetimes never count.
        assert_eq!(peak([life(5, Some(5))], 0, 100), Peak::default());
    }

    #[test]
    fn peak_is_clipped_to_the_window() {
        let lives = [
            life(0, Some(50)),    // ends at the window start
            life(40, None),       // still open
            life(60, Some(70)),   // inside
            life(100, Some(200)), // starts at the window end
        ];
        let p = peak(lives, 50, 100);
        assert_eq!(
            p,
            Peak {
                count: 2,
                at: Some(60)
            }
        );
        // A lifetime that began before the window counts from the window start.
        assert_eq!(
            peak([life(0, None)], 50, 100),
            Peak {
                count: 1,
                at: Some(50)
            }
        );
        assert_eq!(peak([life(0, None)], 100, 100), Peak::default());
    }

    #[test]
    fn peak_of_total_is_not_sum_of_peaks() {
        // Two services that never overlap: the total peaks at 1.
        let p = peak([life(0, Some(10)), life(10, Some(20))], 0, 20);
        assert_eq!(p.count, 1);
    }
}
