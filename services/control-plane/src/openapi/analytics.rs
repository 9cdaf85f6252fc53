//! `POST /v2/analytics/metrics`: Konnect explore's query over the organisation's telemetry.

use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::{RefOr, Schema};

use super::{add_schema, schema_ref, Op};
use crate::api::analytics::{
    DimensionName, GranularityName, MetricName, MetricsFilter, MetricsMeta, MetricsRequest,
    MetricsResponse, MetricsTimeRange,
};
use crate::telemetry::query::ExploreRecord;

pub(super) fn analytics_ops(ops: &mut Vec<Op>) {
    ops.push(
        Op::new(
            HttpMethod::Post,
            "/v2/analytics/metrics",
            "query_metrics",
            "Request counts, latencies, sizes and error rates of the organisation's control \
             planes in Konnect explore's vocabulary, by time bucket and dimensions (metrics \
             the telemetry store does not record are a 400 naming them)",
            "analytics",
        )
        .json_body(schema_ref("MetricsRequest"))
        .ok(
            "200",
            "One record per bucket and combination of dimension values that had requests",
            Some(schema_ref("MetricsResponse")),
        ),
    );
}

pub(super) fn add_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add_schema::<MetricName>(schemas);
    add_schema::<DimensionName>(schemas);
    add_schema::<GranularityName>(schemas);
    add_schema::<MetricsFilter>(schemas);
    add_schema::<MetricsTimeRange>(schemas);
    add_schema::<MetricsRequest>(schemas);
    add_schema::<ExploreRecord>(schemas);
    add_schema::<MetricsMeta>(schemas);
    add_schema::<MetricsResponse>(schemas);
}
