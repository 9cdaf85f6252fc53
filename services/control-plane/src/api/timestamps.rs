//! Konnect's timestamps: control planes and cloud gateways show RFC 3339 date-time strings,
//! while core entities keep Kong's Unix seconds. The store keeps Unix seconds throughout.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Unix seconds as an RFC 3339 UTC string (`2026-12-07T21:28:03Z`).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{unix} (Unix seconds)"))
}

/// An RFC 3339 / ISO 8601 date-time as Unix milliseconds.
pub fn parse_rfc3339_ms(raw: &str) -> Option<i64> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `#[serde(serialize_with = "timestamps::as_rfc3339")]` for Unix-seconds fields.
pub fn as_rfc3339<S: serde::Serializer>(unix: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*unix))
}

/// The same for optional fields.
pub fn as_rfc3339_opt<S: serde::Serializer>(
    unix: &Option<i64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match unix {
        Some(unix) => serializer.serialize_str(&rfc3339(*unix)),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339_ms("2026-12-07T22:00:00+01:00"),
            parse_rfc3339_ms("2026-12-07T21:00:00Z")
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
