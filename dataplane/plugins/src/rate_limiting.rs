//! `rate-limiting` (Kong priority 910): fixed, clock-aligned windows per identifier,
//! following Kong's `kong/plugins/rate-limiting/handler.lua` with the `local` policy.

use std::sync::Arc;

use fleetgate_config::plugins::{LimitBy, RateLimitingConfig};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use uuid::Uuid;

use crate::counters::{Identifier, RateLimitCounters, WindowLimit};
use crate::response::{json_error, Refusal};
use crate::AccessRequest;

/// A rate-limit window length, shortest first (the derived order is used to break ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Period {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

impl Period {
    /// Nominal length in seconds (month and year only used by tests).
    #[cfg(test)]
    pub fn fixed_secs(self) -> i64 {
        match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3_600,
            Period::Day => 86_400,
            Period::Month => 2_592_000,
            Period::Year => 31_536_000,
        }
    }

    /// Kong's `X-RateLimit-Limit-<Window>` and `X-RateLimit-Remaining-<Window>` names.
    fn header_names(self) -> (HeaderName, HeaderName) {
        let (limit, remaining) = match self {
            Period::Second => ("x-ratelimit-limit-second", "x-ratelimit-remaining-second"),
            Period::Minute => ("x-ratelimit-limit-minute", "x-ratelimit-remaining-minute"),
            Period::Hour => ("x-ratelimit-limit-hour", "x-ratelimit-remaining-hour"),
            Period::Day => ("x-ratelimit-limit-day", "x-ratelimit-remaining-day"),
            Period::Month => ("x-ratelimit-limit-month", "x-ratelimit-remaining-month"),
            Period::Year => ("x-ratelimit-limit-year", "x-ratelimit-remaining-year"),
        };
        (
            HeaderName::from_static(limit),
            HeaderName::from_static(remaining),
        )
    }

    /// The window containing `now` (unix seconds, UTC): `[start, end)`. Like Kong's
    /// `timestamp.get_timestamps`, windows are aligned to the UTC calendar.
    pub fn window(self, now: i64) -> (i64, i64) {
        let fixed = |len: i64| {
            let start = now - now.rem_euclid(len);
            (start, start + len)
        };
        match self {
            Period::Second => (now, now + 1),
            Period::Minute => fixed(60),
            Period::Hour => fixed(3_600),
            Period::Day => fixed(86_400),
            Period::Month | Period::Year => {
                let (year, month, _) = civil_from_days(now.div_euclid(86_400));
                let (start, end) = if self == Period::Month {
                    let next = if month == 12 {
                        (year + 1, 1)
                    } else {
                        (year, month + 1)
                    };
                    ((year, month), next)
                } else {
                    ((year, 1), (year + 1, 1))
                };
                (
                    days_from_civil(start.0, start.1, 1) * 86_400,
                    days_from_civil(end.0, end.1, 1) * 86_400,
                )
            }
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Response headers computed in the access phase (Kong sets them in `header_filter`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimitHeaders {
    /// (period, limit, remaining) per configured window.
    windows: [(Period, u64, u64); 6],
    len: usize,
    /// `RateLimit-*` values: the window with the least remaining (ties: the longer one).
    limit: u64,
    remaining: u64,
    reset: i64,
}

impl RateLimitHeaders {
    /// Adds the headers to a response.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for &(period, limit, remaining) in &self.windows[..self.len] {
            let (limit_name, remaining_name) = period.header_names();
            headers.insert(limit_name, HeaderValue::from(limit));
            headers.insert(remaining_name, HeaderValue::from(remaining));
        }
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(self.reset));
    }
}

/// How the identifier is derived (Kong's `get_identifier`), with build-time values.
#[derive(Debug)]
enum By {
    Consumer,
    Credential,
    Ip,
    Service,
    Header(HeaderName),
    Path(String),
}

/// A compiled rate-limiting instance.
#[derive(Debug)]
pub(crate) struct RateLimitPlugin {
    id: Uuid,
    /// (period, limit), shortest period first.
    limits: Vec<(Period, u64)>,
    by: By,
    hide_client_headers: bool,
    error_status: StatusCode,
    error_message: String,
    counters: Arc<RateLimitCounters>,
}

/// Who the request is, for the identifier.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    pub consumer: Option<Uuid>,
    pub credential: Option<Uuid>,
}

impl RateLimitPlugin {
    /// Compiles a config. `policy` is ignored: counting is always local (see crate docs).
    pub fn new(
        id: Uuid,
        conf: RateLimitingConfig,
        counters: Arc<RateLimitCounters>,
    ) -> Result<Self, String> {
        let limits: Vec<(Period, u64)> = [
            (Period::Second, conf.second),
            (Period::Minute, conf.minute),
            (Period::Hour, conf.hour),
            (Period::Day, conf.day),
            (Period::Month, conf.month),
            (Period::Year, conf.year),
        ]
        .into_iter()
        .filter_map(|(p, limit)| limit.map(|l| (p, l)))
        // Kong admits while `limit - usage > 0`, so a fractional limit rounds up.
        .map(|(p, l)| {
            (
                p,
                if l.is_finite() && l > 0.0 {
                    l.ceil() as u64
                } else {
                    0
                },
            )
        })
        .collect();
        if limits.is_empty() {
            return Err(
                "at least one of second, minute, hour, day, month, year is required".into(),
            );
        }
        let by = match conf.limit_by {
            LimitBy::Consumer => By::Consumer,
            LimitBy::Credential => By::Credential,
            LimitBy::Ip => By::Ip,
            LimitBy::Service => By::Service,
            LimitBy::Header => {
                let name = conf.header_name.unwrap_or_default();
                By::Header(
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("header_name {name:?} is not a header name"))?,
                )
            }
            LimitBy::Path => By::Path(conf.path.unwrap_or_default()),
        };
        Ok(Self {
            id,
            limits,
            by,
            hide_client_headers: conf.hide_client_headers,
            error_status: StatusCode::from_u16(conf.error_code)
                .map_err(|_| format!("error_code {} is not an HTTP status", conf.error_code))?,
            error_message: conf.error_message,
            counters,
        })
    }

    /// Kong's `get_identifier`: falls back to the client IP whenever the chosen source is
    /// missing (no consumer, no header, other path, ...).
    fn identifier(&self, req: &AccessRequest<'_>, client: Client) -> Identifier {
        let found = match &self.by {
            By::Consumer => client.consumer.or(client.credential).map(Identifier::Id),
            By::Credential => client.credential.map(Identifier::Id),
            By::Ip => None,
            By::Service => req.service_id.map(Identifier::Id),
            By::Header(name) => req
                .headers
                .get(name)
                .map(|v| Identifier::Text(String::from_utf8_lossy(v.as_bytes()).into())),
            By::Path(path) => (req.path == path).then(|| Identifier::Text(path.as_str().into())),
        };
        found.unwrap_or(Identifier::Ip(req.client_ip))
    }

    /// Counts the request: `Ok` with the headers for the response (none when hidden), or
    /// `Err` with the refusal (error status, `Retry-After`, and the headers unless hidden).
    pub fn access(
        &self,
        req: &AccessRequest<'_>,
        client: Client,
        now: i64,
    ) -> Result<Option<RateLimitHeaders>, Refusal> {
        let identifier = self.identifier(req, client);
        let mut windows = [WindowLimit {
            period: Period::Second,
            limit: 0,
            start: 0,
            end: 0,
        }; 6];
        let n = self.limits.len().min(6);
        for (slot, &(period, limit)) in windows.iter_mut().zip(&self.limits) {
            let (start, end) = period.window(now);
            *slot = WindowLimit {
                period,
                limit,
                start,
                end,
            };
        }
        let acquired = self
            .counters
            .acquire(self.id, &identifier, &windows[..n], now);
        let headers = summarize(&windows[..n], &acquired.usage, acquired.stopped, now);
        if acquired.stopped.is_none() {
            return Ok((!self.hide_client_headers).then_some(headers));
        }
        let mut response = json_error(self.error_status, &self.error_message);
        if !self.hide_client_headers {
            headers.apply(response.headers_mut());
        }
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(headers.reset));
        Err(Box::new(response))
    }
}

/// Kong's header computation: a window's remaining counts this request unless another
/// window refused it; `RateLimit-*` describe the window with the least remaining, the
/// longer window on ties; reset is at least one second.
fn summarize(
    windows: &[WindowLimit],
    usage: &[u64; 6],
    stopped: Option<usize>,
    now: i64,
) -> RateLimitHeaders {
    let mut out = RateLimitHeaders {
        windows: [(Period::Second, 0, 0); 6],
        len: windows.len(),
        limit: 0,
        remaining: 0,
        reset: 1,
    };
    let mut best: Option<(u64, Period)> = None;
    for (i, w) in windows.iter().enumerate() {
        let mut remaining = w.limit.saturating_sub(usage[i]);
        if stopped.is_none() || stopped == Some(i) {
            remaining = remaining.saturating_sub(1);
        }
        out.windows[i] = (w.period, w.limit, remaining);
        let better = match best {
            None => true,
            Some((r, p)) => remaining < r || (remaining == r && w.period > p),
        };
        if better {
            best = Some((remaining, w.period));
            out.limit = w.limit;
            out.remaining = remaining;
            out.reset = (w.end - now).max(1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_utc_calendar() {
        // 2024-02-29T13:45:30Z
        let now = 1_709_214_330;
        assert_eq!(Period::Second.window(now), (now, now + 1));
        assert_eq!(Period::Minute.window(now), (1_709_214_300, 1_709_214_360));
        assert_eq!(Period::Hour.window(now), (1_709_211_600, 1_709_215_200));
        assert_eq!(Period::Day.window(now), (1_709_164_800, 1_709_251_200));
        // February 2024 to March 2024.
        assert_eq!(Period::Month.window(now), (1_706_745_600, 1_709_251_200));
        // 2024 to 2025.
        assert_eq!(Period::Year.window(now), (1_704_067_200, 1_735_689_600));
        // December rolls over to the next year.
        let dec = 1_734_000_000; // 2024-12-12
        assert_eq!(Period::Month.window(dec), (1_733_011_200, 1_735_689_600));
    }

    #[test]
    fn civil_round_trips() {
        for days in [-1_000_000, -1, 0, 59, 365, 11_016, 19_782, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn summary_picks_least_remaining_then_longest() {
        let w = |period: Period, limit, start, end| WindowLimit {
            period,
            limit,
            start,
            end,
        };
        let windows = [
            w(Period::Second, 5, 100, 101),
            w(Period::Minute, 10, 60, 120),
        ];
        // Allowed: second has 5-3-1=1 left, minute 10-6-1=3.
        let h = summarize(&windows, &[3, 6, 0, 0, 0, 0], None, 100);
        assert_eq!((h.limit, h.remaining, h.reset), (5, 1, 1));
        // Tie at 0 remaining: the minute wins and Retry-After waits for it.
        let h = summarize(&windows, &[5, 10, 0, 0, 0, 0], Some(0), 100);
        assert_eq!((h.limit, h.remaining, h.reset), (10, 0, 20));
        assert_eq!(h.windows[1], (Period::Minute, 10, 0));
    }
}
