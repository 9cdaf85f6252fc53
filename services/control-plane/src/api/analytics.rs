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
        rollup::roll_up(&state.store, query.granularity, now_unix())
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
