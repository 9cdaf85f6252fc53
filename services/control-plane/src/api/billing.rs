//! `GET /v2/billing/usage?period=YYYY-MM`: an organisation's usage in one month. The counting
//! rules are in [`crate::billing`] and in the operation's OpenAPI description.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use uuid::Uuid;

use super::extract::QueryParams;
use crate::auth::Caller;
use crate::billing::Period;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Role, Usage};

/// The usage path.
pub const USAGE: &str = "/v2/billing/usage";

/// What the OpenAPI document says about the numbers: the same rules as [`crate::billing`].
pub const USAGE_DESCRIPTION: &str = "Usage of the caller's organization in one calendar month \
(UTC), or of `organization_id` for operator tokens.\n\n\
- The period is `[YYYY-MM-01T00:00:00Z, first day of the next month)`, resolved to whole \
seconds. A service or published portal counts from the second it was created (published) and \
stops counting at the second it was deleted (unpublished); one created and deleted within the \
same second counts nowhere.\n\
- The running month is measured up to and including the current second (`measured_until`, \
`complete: false`); a month that has not started counts zero.\n\
- `gateway_services` is the peak number of services existing at the same instant during the \
period. Per control plane it is that control plane's peak; for the organization it is the peak \
of the organization-wide total, not the sum of the control planes' peaks. Deleting a control \
plane ends its services at that second; a declarative import ends the services it removes and \
starts those it adds, while services it keeps (same id) run on.\n\
- `active_portals` is the peak number of simultaneously published dev portals.\n\
- `api_calls` is the sum of the API calls data planes reported for the UTC days of the period.\n\
- Every peak comes with `…_peak_at`, the first second it was reached (absent when zero); \
`include=peak_services` also lists the services counted at the organization's peak.";

/// Billing routes.
pub fn router() -> Router<AppState> {
    Router::new().route(USAGE, get(usage))
}

/// The organisation's usage in `period`.
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<Usage>> {
    let raw = query
        .0
        .get("period")
        .ok_or_else(|| ApiError::field("period", "is required, as YYYY-MM"))?;
    let period = Period::parse(raw).map_err(|e| ApiError::field("period", e.to_string()))?;
    let org = match query.0.get("organization_id") {
        None => caller.organization_id,
        Some(raw) => {
            let org = Uuid::parse_str(raw)
                .map_err(|_| ApiError::field("organization_id", "must be a UUID"))?;
            // Another organisation is "not found" unless the caller is an operator, as
            // everywhere else.
            if org != caller.organization_id && caller.role != Role::Operator {
                return Err(ApiError::NotFound(format!(
                    "organization {org} was not found"
                )));
            }
            state.store.organization(org).await?;
            org
        }
    };
    let list_peak_services = match query.0.get("include").map(String::as_str) {
        None | Some("") => false,
        Some("peak_services") => true,
        Some(other) => {
            return Err(ApiError::field(
                "include",
                format!("the only value is peak_services, got {other:?}"),
            ))
        }
    };
    Ok(Json(
        state
            .store
            .billing_usage(org, period, list_peak_services)
            .await?,
    ))
}
