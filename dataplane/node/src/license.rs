//! License enforcement on the data plane (docs/architecture.md): the control plane pushes a signed
//! license; once its `expires_at` has passed the proxy answers 503 until a renewed one
//! arrives. A node that never received a license (standalone) proxies normally.
//!
//! The proxy checks every request, so the check is one atomic load in the common case
//! (no license) and one atomic load plus a vDSO clock read when a license is present.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use fleetgate_protocol::LicenseClaims;
use serde_json::json;

/// Sentinel in [`LicenseState::expires_at`]: no license, nothing to enforce.
const NO_LICENSE: i64 = i64::MAX;

/// The license the node currently holds, if any.
#[derive(Debug)]
pub struct LicenseState {
    /// Expiry in Unix seconds, or [`NO_LICENSE`]; read on every request.
    expires_at: AtomicI64,
    /// The full claims, for `/status`.
    claims: ArcSwapOption<LicenseClaims>,
}

impl Default for LicenseState {
    fn default() -> Self {
        Self {
            expires_at: AtomicI64::new(NO_LICENSE),
            claims: ArcSwapOption::empty(),
        }
    }
}

/// Current Unix time in seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl LicenseState {
    /// Installs `claims` (a verified license); takes effect for the next request.
    pub fn set(&self, claims: LicenseClaims) {
        let expires_at = claims.expires_at;
        self.claims.store(Some(std::sync::Arc::new(claims)));
        self.expires_at.store(expires_at, Ordering::Release);
        if expires_at <= now_unix() {
            tracing::warn!(
                expires_at = %rfc3339(expires_at),
                "the installed license has already expired; the proxy answers 503"
            );
        } else {
            tracing::info!(expires_at = %rfc3339(expires_at), "license installed");
        }
    }

    /// The held license, if any.
    pub fn claims(&self) -> Option<std::sync::Arc<LicenseClaims>> {
        self.claims.load_full()
    }

    /// `Some(expiry)` when a license is held and has expired: the request must be refused.
    #[inline]
    pub fn expired_at(&self) -> Option<i64> {
        let expires_at = self.expires_at.load(Ordering::Acquire);
        if expires_at == NO_LICENSE {
            return None;
        }
        (now_unix() >= expires_at).then_some(expires_at)
    }

    /// The 503 body's message for a license that expired at `expires_at`.
    pub fn expired_message(expires_at: i64) -> String {
        format!(
            "the Fleetgate license expired at {}; renew it in the control plane",
            rfc3339(expires_at)
        )
    }

    /// The `/status` `license` object.
    pub fn status_json(&self) -> serde_json::Value {
        match self.claims() {
            None => json!({
                "license_id": null,
                "expires_at": null,
                "expired": false,
                "reason": null,
            }),
            Some(claims) => {
                let expired = claims.is_expired(now_unix());
                json!({
                    "license_id": claims.license_id,
                    "expires_at": rfc3339(claims.expires_at),
                    "expired": expired,
                    "reason": expired.then(|| Self::expired_message(claims.expires_at)),
                })
            }
        }
    }
}

/// The proxy's answer once the license has expired: 503 with a body saying when and what to do.
pub fn expired_response(expires_at: i64) -> http::Response<crate::proxy::ProxyBody> {
    crate::proxy::json_error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        &LicenseState::expired_message(expires_at),
    )
}

/// Formats Unix seconds as RFC 3339 UTC (`2030-01-02T03:04:05Z`).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian), to avoid a date crate
/// for one timestamp format.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn no_license_never_blocks_and_expiry_is_enforced() {
        let state = LicenseState::default();
        assert_eq!(state.expired_at(), None);
        let claims = |expires_at| LicenseClaims {
            license_id: uuid::Uuid::new_v4(),
            organization_id: uuid::Uuid::new_v4(),
            issued_at: 0,
            expires_at,
        };
        state.set(claims(now_unix() - 5));
        assert!(state.expired_at().is_some());
        assert_eq!(state.status_json()["expired"], true);
        state.set(claims(now_unix() + 3600));
        assert_eq!(state.expired_at(), None);
        assert_eq!(state.status_json()["expired"], false);
    }
}
