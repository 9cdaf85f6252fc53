//! `POST /v2/analytics/metrics`: Konnect explore's query (`metrics`, `dimensions`, `filters`,
//! `time_range`, `granularity`) over the caller organisation's telemetry, answered as
//! `{data: [{version, timestamp, event}], meta: {start_ms, end_ms, granularity_ms, …}}`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::extract::JsonBody;
use super::timestamps::rfc3339;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::now_unix;
use crate::telemetry::query::{self, ExploreRecord};
use crate::telemetry::{rollup, Granularity};

/// Analytics routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/v2/analytics/metrics", post(metrics))
}

/// What the answer covers (Konnect's explore `meta`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsMeta {
    /// Start of the first bucket (the range's start floored to the granularity), RFC 3339.
    pub start: String,
    /// End of the range (exclusive), RFC 3339.
    pub end: String,
    /// `start` in Unix milliseconds.
    pub start_ms: i64,
    /// `end` in Unix milliseconds.
    pub end_ms: i64,
    /// Bucket width in milliseconds (with `time` among the dimensions; else the whole range).
    pub granularity_ms: i64,
    /// An id for this answer.
    pub query_id: Uuid,
    /// The metrics, in request order.
    pub metric_names: Vec<String>,
    /// Unit of each metric: `count`, `count/minute`, `ms`, `bytes` or `percent`.
    #[schema(value_type = Object)]
    pub metric_units: BTreeMap<String, String>,
    /// For each requested dimension, a display entry `{name}` for each value in `data`.
    #[schema(value_type = Object)]
    pub display: BTreeMap<String, Map<String, Value>>,
    /// Always false: every group is answered.
    pub truncated: bool,
    /// Always `api_usage`.
    pub datasource: &'static str,
}

/// The answer: one record per bucket (with `time`) and combination of dimension values that
/// had requests.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsResponse {
    /// Records ordered by timestamp, then dimension values.
    pub data: Vec<ExploreRecord>,
    /// What was answered.
    pub meta: MetricsMeta,
}

/// Answers a metrics query over the caller organisation's control planes.
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<MetricsResponse>> {
    let now = now_unix();
    let query = query::parse(&body, now).map_err(ApiError::fields)?;
    let granularity = query.granularity();
    if granularity != Granularity::TenSeconds {
        // Buckets changed since the last background pass are rebuilt now, so the coarser
        // tables include everything ingested so far.
        rollup::roll_up_within(&state.store, granularity, query.start, query.end, now)
            .await
            .map_err(|e| ApiError::Internal(e.context("roll up recent analytics")))?;
    }
    let rows = state
        .store
        .analytics_rows(
            caller.organization_id,
            granularity,
            query.start,
            query.end,
            &query.filter,
        )
        .await?;
    let data = query::answer(&query, rows);
    // Ids are shown by themselves: display names would need a lookup per entity kind.
    let mut display: BTreeMap<String, Map<String, Value>> = query
        .dimensions
        .iter()
        .map(|d| (d.name().to_string(), Map::new()))
        .collect();
    for record in &data {
        for (dimension, names) in display.iter_mut() {
            if let Some(Value::String(id)) = record.event.get(dimension) {
                names
                    .entry(id.clone())
                    .or_insert_with(|| serde_json::json!({ "name": id }));
            }
        }
    }
    let granularity_secs = if query.by_time {
        query.bucket.seconds()
    } else {
        query.end - query.start
    };
    Ok(Json(MetricsResponse {
        data,
        meta: MetricsMeta {
            start: rfc3339(query.start),
            end: rfc3339(query.end),
            start_ms: query.start * 1000,
            end_ms: query.end * 1000,
            granularity_ms: granularity_secs * 1000,
            query_id: Uuid::new_v4(),
            metric_names: query.metrics.iter().map(|m| m.name().to_string()).collect(),
            metric_units: query
                .metrics
                .iter()
                .map(|m| (m.name().to_string(), m.unit().to_string()))
                .collect(),
            display,
            truncated: false,
            datasource: "api_usage",
        },
    }))
}

/// A metric name: Konnect explore's, and Fleetgate's `error_rate`. Konnect's
/// `upstream_latency_*`, `kong_latency_*` and `*_size_p*` are refused (400): the telemetry store
/// does not record them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// Requests (the default when `metrics` is absent or empty).
    RequestCount,
    /// Requests per minute of the bucket.
    RequestPerMinute,
    /// Mean total latency, milliseconds (within 1 % relative error).
    ResponseLatencyAverage,
    /// Median total latency, milliseconds (within 1 % relative error).
    ResponseLatencyP50,
    /// 95th percentile total latency, milliseconds (within 1 % relative error).
    ResponseLatencyP95,
    /// 99th percentile total latency, milliseconds (within 1 % relative error).
    ResponseLatencyP99,
    /// Request bytes, summed.
    RequestSizeSum,
    /// Request bytes per request.
    RequestSizeAverage,
    /// Response bytes, summed.
    ResponseSizeSum,
    /// Response bytes per request.
    ResponseSizeAverage,
    /// Percentage (0–100) of requests answered with a status >= 400 (Fleetgate's).
    ErrorRate,
}

/// A dimension name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DimensionName {
    /// Control plane id.
    ControlPlane,
    /// Gateway service id; `null` when no service matched.
    GatewayService,
    /// Route id; `null` when no route matched.
    Route,
    /// Consumer id; `null` for anonymous requests.
    Consumer,
    /// Data-plane node id.
    DataPlaneNode,
    /// HTTP status code, as a string.
    StatusCode,
    /// HTTP status class: `1XX` … `5XX`.
    StatusCodeGrouped,
    /// Time buckets of `granularity` (dimensions only, not filters).
    Time,
}

/// Bucket width; only used with the `time` dimension. Default: by the range's length
/// (≤ 1 h minutely, ≤ 6 h fiveMinutely, ≤ 24 h thirtyMinutely, ≤ 7 d twoHourly, else daily).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum GranularityName {
    /// 10 seconds.
    TenSecondly,
    /// 30 seconds.
    ThirtySecondly,
    /// 1 minute.
    Minutely,
    /// 5 minutes.
    FiveMinutely,
    /// 10 minutes.
    TenMinutely,
    /// 30 minutes.
    ThirtyMinutely,
    /// 1 hour.
    Hourly,
    /// 2 hours.
    TwoHourly,
    /// 12 hours.
    TwelveHourly,
    /// 1 UTC day.
    Daily,
    /// 1 UTC week, from Monday.
    Weekly,
}

/// Keeps records whose `field` is (`in`) or is not (`not_in`) one of `value`, or is absent
/// (`empty`) or present (`not_empty`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsFilter {
    /// The dimension filtered on (not `time`).
    pub field: DimensionName,
    /// `in`, `not_in`, `empty` or `not_empty`.
    pub operator: String,
    /// For `in`/`not_in`: UUIDs, status codes for `status_code`, classes (`4XX`) for
    /// `status_code_grouped`.
    pub value: Option<Vec<serde_json::Value>>,
}

/// `{type: relative, time_range: 15m|1h|6h|12h|24h|7d|30d|current_week|previous_week|
/// current_month|previous_month}` (default: relative 1h) or `{type: absolute, start, end}`
/// (RFC 3339). `tz`, if given, must be `Etc/UTC`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsTimeRange {
    /// `relative` or `absolute`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The relative range.
    pub time_range: Option<String>,
    /// Absolute start, RFC 3339.
    pub start: Option<String>,
    /// Absolute end (exclusive, after `start`), RFC 3339.
    pub end: Option<String>,
    /// Time zone: only `Etc/UTC`.
    pub tz: Option<String>,
}

/// A metrics query in Konnect explore's vocabulary. A range may span at most 10,080 buckets
/// of its granularity. Each invalid field is named in the 400 answer's `invalid_parameters`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsRequest {
    /// `api_usage`, the only datasource (optional).
    pub datasource: Option<String>,
    /// What to measure (default `[request_count]`).
    pub metrics: Option<Vec<MetricName>>,
    /// What to group by, `time` among them for time buckets (none: one record for the whole
    /// range).
    pub dimensions: Option<Vec<DimensionName>>,
    /// Filters, all of which must hold.
    pub filters: Option<Vec<MetricsFilter>>,
    /// The time range (default: the last hour).
    pub time_range: Option<MetricsTimeRange>,
    /// Bucket width with the `time` dimension.
    pub granularity: Option<GranularityName>,
}
