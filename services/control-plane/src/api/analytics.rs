//! `POST /v2/analytics/metrics`: request counts, error rates, latency percentiles and bytes of
//! the caller's organisation, by time bucket and any dimensions.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::extract::JsonBody;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::now_unix;
use crate::telemetry::query::{self, DataPoint};
use crate::telemetry::{rollup, Granularity};

/// Analytics routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/v2/analytics/metrics", post(metrics))
}

/// What the answer covers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsMeta {
    /// The granularity used.
    pub granularity: String,
    /// First bucket start (the requested start floored to the granularity), Unix seconds.
    pub start: i64,
    /// End of the range (exclusive), Unix seconds.
    pub end: i64,
    /// The metrics, in request order.
    pub metrics: Vec<String>,
    /// The dimensions grouped by, in request order.
    pub dimensions: Vec<String>,
}

/// The answer: one point per bucket and combination of dimension values that had requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsResponse {
    /// Points ordered by timestamp, then dimension values.
    pub data: Vec<DataPoint>,
    /// What was answered.
    pub meta: MetricsMeta,
}

/// Answers a metrics query over the caller organisation's control planes.
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<MetricsResponse>> {
    let query = query::parse(&body).map_err(ApiError::fields)?;
    if query.granularity != Granularity::TenSeconds {
        // Buckets changed since the last background pass are rebuilt now, so the coarser
        // tables include everything ingested so far.
        rollup::roll_up_within(
            &state.store,
            query.granularity,
            query.start,
            query.end,
            now_unix(),
        )
        .await
        .map_err(|e| ApiError::Internal(e.context("roll up recent analytics")))?;
    }
    let rows = state
        .store
        .analytics_rows(
            caller.organization_id,
            query.granularity,
            query.start,
            query.end,
            &query.filter,
        )
        .await?;
    let data = query::answer(&query, rows);
    Ok(Json(MetricsResponse {
        data,
        meta: MetricsMeta {
            granularity: query.granularity.name().to_string(),
            start: query.start,
            end: query.end,
            metrics: query.metrics.iter().map(|m| m.name().to_string()).collect(),
            dimensions: query
                .dimensions
                .iter()
                .map(|d| d.name().to_string())
                .collect(),
        },
    }))
}

/// A metric name (documentation of the request body).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// Requests.
    RequestCount,
    /// Percentage (0–100) of requests answered with a status >= 400.
    ErrorRate,
    /// Median total latency, milliseconds (within 1 % relative error).
    LatencyP50,
    /// 95th percentile total latency, milliseconds (within 1 % relative error).
    LatencyP95,
    /// 99th percentile total latency, milliseconds (within 1 % relative error).
    LatencyP99,
    /// Request bytes.
    BytesIn,
    /// Response bytes.
    BytesOut,
}

/// A dimension name (documentation of the request body).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DimensionName {
    /// Control plane id.
    ControlPlane,
    /// Service id; `null` when no service matched.
    Service,
    /// Route id; `null` when no route matched.
    Route,
    /// Consumer id; `null` for anonymous requests.
    Consumer,
    /// Data-plane node id.
    Node,
    /// HTTP status code.
    StatusCode,
}

/// Bucket width.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GranularityName {
    /// 10 seconds.
    TenSeconds,
    /// 1 minute (the default).
    Minute,
    /// 1 hour.
    Hour,
    /// 1 UTC day.
    Day,
}

/// Keeps points whose dimension value is (`in`) or is not (`not_in`) one of `values`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsFilter {
    /// The dimension filtered on.
    pub dimension: DimensionName,
    /// `in` (default) or `not_in`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// UUIDs (`null` matches "none", e.g. anonymous), or status codes for `status_code`.
    pub values: Vec<serde_json::Value>,
}

/// Time range, Unix seconds: buckets starting in `[start, end)`; `start` is floored to the
/// granularity.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsTimeRange {
    /// Start, Unix seconds.
    pub start: i64,
    /// End (exclusive, after `start`), Unix seconds.
    pub end: i64,
}

/// A metrics query. A range may span at most 10,080 buckets of its granularity. Each invalid
/// field is named in the 400 answer's `invalid_parameters`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsRequest {
    /// What to measure (at least one).
    pub metrics: Vec<MetricName>,
    /// What to group by (none: one point per bucket).
    pub dimensions: Option<Vec<DimensionName>>,
    /// Filters, all of which must hold.
    pub filters: Option<Vec<MetricsFilter>>,
    /// The time range.
    pub time_range: MetricsTimeRange,
    /// Bucket width (default `minute`).
    pub granularity: Option<GranularityName>,
}
