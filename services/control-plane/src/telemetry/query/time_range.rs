//! Konnect explore's `time_range`: relative to now (`{type: relative, time_range: 1h}`, the
//! default) or absolute (`{type: absolute, start, end}`, RFC 3339), always in UTC.

use fleetgate_config::FieldError;
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, Time};

use super::err;

/// The relative ranges Konnect knows.
pub const RELATIVE_RANGES: [&str; 11] = [
    "15m",
    "1h",
    "6h",
    "12h",
    "24h",
    "7d",
    "30d",
    "current_week",
    "previous_week",
    "current_month",
    "previous_month",
];

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 1970-01-05, the first Monday after the epoch: weeks start on Mondays, as in Konnect.
const FIRST_MONDAY: i64 = 4 * DAY;

/// The Monday 00:00 UTC starting the week of `unix`.
pub fn week_floor(unix: i64) -> i64 {
    (unix - FIRST_MONDAY).div_euclid(WEEK) * WEEK + FIRST_MONDAY
}

/// Midnight UTC of the first day of the month of `unix`, moved `months_back` months back.
fn month_start(unix: i64, months_back: u8) -> Option<i64> {
    let now = OffsetDateTime::from_unix_timestamp(unix).ok()?;
    let (mut year, mut month) = (now.year(), now.month());
    for _ in 0..months_back {
        if month == Month::January {
            year -= 1;
        }
        month = month.previous();
    }
    let date = Date::from_calendar_date(year, month, 1).ok()?;
    Some(date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp())
}

/// `[start, end)` of a relative range ending now.
fn relative(name: &str, now: i64) -> Option<(i64, i64)> {
    let back = |secs: i64| Some((now - secs, now));
    match name {
        "15m" => back(15 * 60),
        "1h" => back(3_600),
        "6h" => back(6 * 3_600),
        "12h" => back(12 * 3_600),
        "24h" => back(DAY),
        "7d" => back(7 * DAY),
        "30d" => back(30 * DAY),
        "current_week" => Some((week_floor(now), now)),
        "previous_week" => Some((week_floor(now) - WEEK, week_floor(now))),
        "current_month" => Some((month_start(now, 0)?, now)),
        "previous_month" => Some((month_start(now, 1)?, month_start(now, 0)?)),
        _ => None,
    }
}

/// Parses `time_range` into `[start, end)` in Unix seconds (absent: the last hour). Every
/// problem is pushed with its field.
pub fn parse(value: Option<&Value>, now: i64, errors: &mut Vec<FieldError>) -> Option<(i64, i64)> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return relative("1h", now);
    };
    let Some(obj) = value.as_object() else {
        err(
            errors,
            "time_range",
            "must be an object: {\"type\": \"relative\", \"time_range\": \"1h\"} or \
             {\"type\": \"absolute\", \"start\": …, \"end\": …}",
        );
        return None;
    };
    if let Some(tz) = obj.get("tz").filter(|v| !v.is_null()) {
        if !matches!(tz.as_str(), Some("Etc/UTC" | "UTC")) {
            err(
                errors,
                "time_range.tz",
                "only \"Etc/UTC\" is supported: buckets are UTC",
            );
        }
    }
    match obj.get("type").and_then(Value::as_str) {
        Some("relative") => {
            unknown_keys(obj, &["type", "tz", "time_range"], errors);
            let name = match obj.get("time_range") {
                None | Some(Value::Null) => "1h",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => {
                    err(errors, "time_range.time_range", "must be a string");
                    return None;
                }
            };
            relative(name, now).or_else(|| {
                err(
                    errors,
                    "time_range.time_range",
                    format!(
                        "unknown relative range {name:?}; expected one of {}",
                        RELATIVE_RANGES.join(", ")
                    ),
                );
                None
            })
        }
        Some("absolute") => {
            unknown_keys(obj, &["type", "tz", "start", "end"], errors);
            let mut get = |name: &str| match obj.get(name).and_then(Value::as_str) {
                Some(raw) => match crate::api::timestamps::parse_rfc3339_ms(raw) {
                    Some(ms) if ms >= 0 => Some(ms.div_euclid(1000)),
                    _ => {
                        err(
                            errors,
                            format!("time_range.{name}"),
                            "must be an RFC 3339 date-time after 1970, e.g. 2024-01-01T00:00:00Z",
                        );
                        None
                    }
                },
                None => {
                    err(
                        errors,
                        format!("time_range.{name}"),
                        "is required: an RFC 3339 date-time",
                    );
                    None
                }
            };
            let (start, end) = (get("start"), get("end"));
            let (start, end) = (start?, end?);
            if end <= start {
                err(errors, "time_range.end", "must be after time_range.start");
                return None;
            }
            Some((start, end))
        }
        other => {
            err(
                errors,
                "time_range.type",
                format!(
                    "{}; expected relative or absolute",
                    match other {
                        Some(t) => format!("unknown type {t:?}"),
                        None => "is required".to_string(),
                    }
                ),
            );
            None
        }
    }
}

fn unknown_keys(
    obj: &serde_json::Map<String, Value>,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            err(
                errors,
                format!("time_range.{key}"),
                format!("unknown field; expected {}", known.join(", ")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_ranges_start_on_mondays_and_first_days() {
        // 2024-03-14T12:00:00Z, a Thursday.
        let now = 1_710_417_600;
        assert_eq!(relative("current_week", now), Some((1_710_115_200, now)));
        assert_eq!(
            relative("previous_week", now),
            Some((1_710_115_200 - WEEK, 1_710_115_200))
        );
        // 2024-03-01 and 2024-02-01.
        assert_eq!(relative("current_month", now), Some((1_709_251_200, now)));
        assert_eq!(
            relative("previous_month", now),
            Some((1_706_745_600, 1_709_251_200))
        );
        // January goes back to the previous year's December.
        let jan = 1_704_931_200; // 2024-01-11
        assert_eq!(month_start(jan, 1), Some(1_701_388_800)); // 2023-12-01
    }
}
