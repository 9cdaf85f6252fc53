//! `POST /v2/analytics/metrics` in Konnect explore's vocabulary: the request, its validation,
//! and the answer.
//!
//! Validation collects every problem at once, each naming its field (`metrics[2]`,
//! `filters[0].value[1]`, `time_range.end`, …), so a caller fixes a query in one round. A name
//! Konnect knows but the telemetry store cannot compute (`upstream_latency_p99`, `api_product`)
//! is refused by name with the supported ones listed, rather than answered with zeros.

mod time_range;

use std::collections::BTreeMap;

use fleetgate_config::FieldError;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Granularity;
use crate::store::{AggregateFilter, AggregateKey, AggregateValues};

pub use time_range::RELATIVE_RANGES;

/// Most buckets one query may span (a week of minutes); coarser granularities cover more time.
pub const MAX_BUCKETS: i64 = 10_080;

/// Konnect explore's metrics that Fleetgate's telemetry store cannot compute (it keeps total
/// latency and byte sums per bucket, not upstream or proxy latency, nor size distributions).
const UNSUPPORTED_METRICS: [&str; 14] = [
    "upstream_latency_average",
    "upstream_latency_p50",
    "upstream_latency_p95",
    "upstream_latency_p99",
    "kong_latency_average",
    "kong_latency_p50",
    "kong_latency_p95",
    "kong_latency_p99",
    "request_size_p50",
    "request_size_p95",
    "request_size_p99",
    "response_size_p50",
    "response_size_p95",
    "response_size_p99",
];

/// Konnect explore's dimensions Fleetgate has no data for.
const UNSUPPORTED_DIMENSIONS: [&str; 12] = [
    "api",
    "api_package",
    "api_product",
    "api_product_version",
    "application",
    "control_plane_group",
    "country_code",
    "data_plane_node_version",
    "portal",
    "realm",
    "response_source",
    "upstream_status_code",
];

/// A queryable measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests.
    RequestCount,
    /// Requests per minute of the bucket.
    RequestPerMinute,
    /// Mean total latency, ms.
    ResponseLatencyAverage,
    /// Median total latency, ms.
    ResponseLatencyP50,
    /// 95th percentile total latency, ms.
    ResponseLatencyP95,
    /// 99th percentile total latency, ms.
    ResponseLatencyP99,
    /// Request bytes, summed.
    RequestSizeSum,
    /// Request bytes per request.
    RequestSizeAverage,
    /// Response bytes, summed.
    ResponseSizeSum,
    /// Response bytes per request.
    ResponseSizeAverage,
    /// Fleetgate's: percentage (0–100) of requests answered with status >= 400.
    ErrorRate,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 11] = [
        Metric::RequestCount,
        Metric::RequestPerMinute,
        Metric::ResponseLatencyAverage,
        Metric::ResponseLatencyP50,
        Metric::ResponseLatencyP95,
        Metric::ResponseLatencyP99,
        Metric::RequestSizeSum,
        Metric::RequestSizeAverage,
        Metric::ResponseSizeSum,
        Metric::ResponseSizeAverage,
        Metric::ErrorRate,
    ];

    /// API name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestCount => "request_count",
            Metric::RequestPerMinute => "request_per_minute",
            Metric::ResponseLatencyAverage => "response_latency_average",
            Metric::ResponseLatencyP50 => "response_latency_p50",
            Metric::ResponseLatencyP95 => "response_latency_p95",
            Metric::ResponseLatencyP99 => "response_latency_p99",
            Metric::RequestSizeSum => "request_size_sum",
            Metric::RequestSizeAverage => "request_size_average",
            Metric::ResponseSizeSum => "response_size_sum",
            Metric::ResponseSizeAverage => "response_size_average",
            Metric::ErrorRate => "error_rate",
        }
    }

    /// Unit, for `meta.metric_units`.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::RequestCount => "count",
            Metric::RequestPerMinute => "count/minute",
            Metric::ResponseLatencyAverage
            | Metric::ResponseLatencyP50
            | Metric::ResponseLatencyP95
            | Metric::ResponseLatencyP99 => "ms",
            Metric::RequestSizeSum
            | Metric::RequestSizeAverage
            | Metric::ResponseSizeSum
            | Metric::ResponseSizeAverage => "bytes",
            Metric::ErrorRate => "percent",
        }
    }

    /// The value over a bucket `width` seconds wide.
    fn value(self, v: &AggregateValues, width: i64) -> Value {
        let ms = |us: Option<f64>| us.map(|us| Value::from(us / 1000.0)).unwrap_or(Value::Null);
        let per_request = |total: i64| {
            if v.request_count == 0 {
                Value::Null
            } else {
                Value::from(total as f64 / v.request_count as f64)
            }
        };
        match self {
            Metric::RequestCount => v.request_count.into(),
            Metric::RequestPerMinute => (v.request_count as f64 * 60.0 / width as f64).into(),
            Metric::ResponseLatencyAverage => ms(v.latency.mean()),
            Metric::ResponseLatencyP50 => ms(v.latency.quantile(0.50)),
            Metric::ResponseLatencyP95 => ms(v.latency.quantile(0.95)),
            Metric::ResponseLatencyP99 => ms(v.latency.quantile(0.99)),
            Metric::RequestSizeSum => v.bytes_in.into(),
            Metric::RequestSizeAverage => per_request(v.bytes_in),
            Metric::ResponseSizeSum => v.bytes_out.into(),
            Metric::ResponseSizeAverage => per_request(v.bytes_out),
            Metric::ErrorRate if v.request_count == 0 => Value::Null,
            Metric::ErrorRate => (v.error_count as f64 * 100.0 / v.request_count as f64).into(),
        }
    }
}

/// A dimension results can be grouped and filtered by (besides `time`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    /// Control plane id.
    ControlPlane,
    /// Gateway service id (`null`: no service matched).
    GatewayService,
    /// Route id (`null`: no route matched).
    Route,
    /// Consumer id (`null`: anonymous).
    Consumer,
    /// Data-plane node id.
    DataPlaneNode,
    /// HTTP status code.
    StatusCode,
    /// HTTP status class: `1XX` … `5XX`.
    StatusCodeGrouped,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 7] = [
        Dimension::ControlPlane,
        Dimension::GatewayService,
        Dimension::Route,
        Dimension::Consumer,
        Dimension::DataPlaneNode,
        Dimension::StatusCode,
        Dimension::StatusCodeGrouped,
    ];

    /// API name.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::ControlPlane => "control_plane",
            Dimension::GatewayService => "gateway_service",
            Dimension::Route => "route",
            Dimension::Consumer => "consumer",
            Dimension::DataPlaneNode => "data_plane_node",
            Dimension::StatusCode => "status_code",
            Dimension::StatusCodeGrouped => "status_code_grouped",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Dimension::ControlPlane => "control_plane_id",
            Dimension::GatewayService => "service_id",
            Dimension::Route => "route_id",
            Dimension::Consumer => "consumer_id",
            Dimension::DataPlaneNode => "node_id",
            Dimension::StatusCode | Dimension::StatusCodeGrouped => "status",
        }
    }

    fn value(self, key: &AggregateKey) -> Value {
        let id = |s: &str| {
            if s.is_empty() {
                Value::Null
            } else {
                Value::from(s)
            }
        };
        match self {
            Dimension::ControlPlane => id(&key.control_plane_id),
            Dimension::GatewayService => id(&key.service_id),
            Dimension::Route => id(&key.route_id),
            Dimension::Consumer => id(&key.consumer_id),
            Dimension::DataPlaneNode => id(&key.node_id),
            Dimension::StatusCode => key.status.to_string().into(),
            Dimension::StatusCodeGrouped => format!("{}XX", key.status / 100).into(),
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// Konnect's bucket widths, and the stored table each is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `tenSecondly`.
    TenSecondly,
    /// `thirtySecondly`.
    ThirtySecondly,
    /// `minutely`.
    Minutely,
    /// `fiveMinutely`.
    FiveMinutely,
    /// `tenMinutely`.
    TenMinutely,
    /// `thirtyMinutely`.
    ThirtyMinutely,
    /// `hourly`.
    Hourly,
    /// `twoHourly`.
    TwoHourly,
    /// `twelveHourly`.
    TwelveHourly,
    /// `daily` (UTC days).
    Daily,
    /// `weekly` (UTC weeks from Monday).
    Weekly,
}

impl Bucket {
    /// Every bucket width, finest first.
    pub const ALL: [Bucket; 11] = [
        Bucket::TenSecondly,
        Bucket::ThirtySecondly,
        Bucket::Minutely,
        Bucket::FiveMinutely,
        Bucket::TenMinutely,
        Bucket::ThirtyMinutely,
        Bucket::Hourly,
        Bucket::TwoHourly,
        Bucket::TwelveHourly,
        Bucket::Daily,
        Bucket::Weekly,
    ];

    /// API name.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::TenSecondly => "tenSecondly",
            Bucket::ThirtySecondly => "thirtySecondly",
            Bucket::Minutely => "minutely",
            Bucket::FiveMinutely => "fiveMinutely",
            Bucket::TenMinutely => "tenMinutely",
            Bucket::ThirtyMinutely => "thirtyMinutely",
            Bucket::Hourly => "hourly",
            Bucket::TwoHourly => "twoHourly",
            Bucket::TwelveHourly => "twelveHourly",
            Bucket::Daily => "daily",
            Bucket::Weekly => "weekly",
        }
    }

    /// Width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Bucket::TenSecondly => 10,
            Bucket::ThirtySecondly => 30,
            Bucket::Minutely => 60,
            Bucket::FiveMinutely => 300,
            Bucket::TenMinutely => 600,
            Bucket::ThirtyMinutely => 1_800,
            Bucket::Hourly => 3_600,
            Bucket::TwoHourly => 7_200,
            Bucket::TwelveHourly => 43_200,
            Bucket::Daily => 86_400,
            Bucket::Weekly => 604_800,
        }
    }

    /// The stored granularity it is built from: the coarsest whose buckets tile it.
    pub fn source(self) -> Granularity {
        match self {
            Bucket::TenSecondly | Bucket::ThirtySecondly => Granularity::TenSeconds,
            Bucket::Minutely | Bucket::FiveMinutely | Bucket::TenMinutely => Granularity::Minute,
            Bucket::ThirtyMinutely => Granularity::Minute,
            Bucket::Hourly | Bucket::TwoHourly | Bucket::TwelveHourly => Granularity::Hour,
            Bucket::Daily | Bucket::Weekly => Granularity::Day,
        }
    }

    /// The bucket start containing `unix`.
    pub fn floor(self, unix: i64) -> i64 {
        match self {
            Bucket::Weekly => time_range::week_floor(unix),
            _ => unix.div_euclid(self.seconds()) * self.seconds(),
        }
    }

    /// The default for a range `span` seconds long: at most a few hundred buckets, and a
    /// stored table that still holds the range (10 s buckets are kept a day).
    pub fn default_for(span: i64) -> Self {
        match span {
            s if s <= 3_600 => Bucket::Minutely,
            s if s <= 6 * 3_600 => Bucket::FiveMinutely,
            s if s <= 24 * 3_600 => Bucket::ThirtyMinutely,
            s if s <= 7 * 86_400 => Bucket::TwoHourly,
            _ => Bucket::Daily,
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// A validated query.
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    /// Measures to answer, in the caller's order.
    pub metrics: Vec<Metric>,
    /// Dimensions to group by, in the caller's order (without `time`).
    pub dimensions: Vec<Dimension>,
    /// Whether `time` was a dimension: one record per bucket, else one for the whole range.
    pub by_time: bool,
    /// Filters, applied in SQL.
    pub filter: AggregateFilter,
    /// Start (floored to the bucket width), Unix seconds.
    pub start: i64,
    /// End, exclusive, Unix seconds.
    pub end: i64,
    /// Bucket width.
    pub bucket: Bucket,
}

impl MetricsQuery {
    /// The stored table read.
    pub fn granularity(&self) -> Granularity {
        self.bucket.source()
    }
}

fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|x| name(*x)).collect::<Vec<_>>().join(", ")
}

fn err(errors: &mut Vec<FieldError>, field: impl Into<String>, reason: impl Into<String>) {
    errors.push(FieldError {
        field: field.into(),
        reason: reason.into(),
    });
}

/// Parses and validates a request body at `now` (Unix seconds); every problem is reported with
/// its field.
pub fn parse(body: &Value, now: i64) -> Result<MetricsQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        err(&mut errors, "body", "must be a JSON object");
        return Err(errors);
    };
    const KNOWN: [&str; 6] = [
        "datasource",
        "metrics",
        "dimensions",
        "filters",
        "time_range",
        "granularity",
    ];
    for key in obj.keys() {
        if !KNOWN.contains(&key.as_str()) {
            err(
                &mut errors,
                key.as_str(),
                format!("unknown field; expected one of {}", KNOWN.join(", ")),
            );
        }
    }
    match obj.get("datasource") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "api_usage" => {}
        Some(_) => err(&mut errors, "datasource", "must be \"api_usage\""),
    }

    // Konnect computes request_count when no metric is named.
    let metrics = match obj.get("metrics") {
        None | Some(Value::Null) => Some(vec![Metric::RequestCount]),
        Some(Value::Array(a)) if a.is_empty() => Some(vec![Metric::RequestCount]),
        _ => {
            parse_list(
                obj,
                "metrics",
                &mut errors,
                |s| Metric::ALL.into_iter().find(|m| m.name() == s),
                |s| {
                    let supported = names(&Metric::ALL, Metric::name);
                    if UNSUPPORTED_METRICS.contains(&s) {
                        format!("{s:?} is not recorded by Fleetgate's telemetry; supported: {supported}")
                    } else {
                        format!("unknown metric {s:?}; supported: {supported}")
                    }
                },
            )
        }
    };
    let dimensions = parse_list(
        obj,
        "dimensions",
        &mut errors,
        // `time` is a dimension of the request, not of the stored rows: `None` marks it.
        |s| {
            if s == "time" {
                Some(None)
            } else {
                Dimension::parse(s).map(Some)
            }
        },
        |s| unknown_dimension(s, true),
    );
    let range = time_range::parse(obj.get("time_range"), now, &mut errors);
    let bucket = match obj.get("granularity") {
        None | Some(Value::Null) => range.map(|(s, e)| Bucket::default_for(e - s)),
        Some(Value::String(s)) => Bucket::parse(s).or_else(|| {
            err(
                &mut errors,
                "granularity",
                format!(
                    "unknown granularity {s:?}; expected one of {}",
                    names(&Bucket::ALL, Bucket::name)
                ),
            );
            None
        }),
        Some(_) => {
            err(&mut errors, "granularity", "must be a string");
            None
        }
    };
    let filter = parse_filters(obj.get("filters"), &mut errors);

    if let (Some(b), Some((start, end))) = (bucket, range) {
        let buckets = (end - b.floor(start) + b.seconds() - 1) / b.seconds();
        if buckets > MAX_BUCKETS {
            err(
                &mut errors,
                "granularity",
                format!(
                    "the time range spans {buckets} {} buckets; at most {MAX_BUCKETS} are \
                     allowed — use a shorter range or a coarser granularity",
                    b.name()
                ),
            );
        }
    }
    match (metrics, dimensions, bucket, range, errors.is_empty()) {
        (Some(metrics), Some(dimensions), Some(bucket), Some((start, end)), true) => {
            Ok(MetricsQuery {
                metrics,
                by_time: dimensions.contains(&None),
                dimensions: dimensions.into_iter().flatten().collect(),
                filter,
                start: bucket.floor(start),
                end,
                bucket,
            })
        }
        _ => Err(errors),
    }
}

fn unknown_dimension(name: &str, with_time: bool) -> String {
    let mut supported = names(&Dimension::ALL, Dimension::name);
    if with_time {
        supported.push_str(", time");
    }
    if UNSUPPORTED_DIMENSIONS.contains(&name) {
        format!("{name:?} is not recorded by Fleetgate's telemetry; supported: {supported}")
    } else {
        format!("unknown dimension {name:?}; supported: {supported}")
    }
}

fn parse_list<T: PartialEq + Copy>(
    obj: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
    lookup: impl Fn(&str) -> Option<T>,
    unknown: impl Fn(&str) -> String,
) -> Option<Vec<T>> {
    let items = match obj.get(field) {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            err(errors, field, "must be a list of strings");
            return None;
        }
    };
    let mut out = Vec::new();
    let before = errors.len();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        match item.as_str() {
            Some(s) => match lookup(s) {
                Some(x) if out.contains(&x) => err(errors, path, "is listed twice"),
                Some(x) => out.push(x),
                None => err(errors, path, unknown(s)),
            },
            None => err(errors, path, "must be a string"),
        }
    }
    (errors.len() == before).then_some(out)
}

/// Status codes of a class: `4XX` -> 400..=499.
fn status_class(raw: &str) -> Option<Vec<i64>> {
    let digit = raw.strip_suffix("XX")?.parse::<i64>().ok()?;
    (1..=5)
        .contains(&digit)
        .then(|| (digit * 100..digit * 100 + 100).collect())
}

fn parse_filters(value: Option<&Value>, errors: &mut Vec<FieldError>) -> AggregateFilter {
    let mut filter = AggregateFilter::default();
    let items = match value {
        None | Some(Value::Null) => return filter,
        Some(Value::Array(items)) => items,
        Some(_) => {
            err(
                errors,
                "filters",
                "must be a list of {field, operator, value}",
            );
            return filter;
        }
    };
    for (i, item) in items.iter().enumerate() {
        let at = |f: &str| format!("filters[{i}].{f}");
        let Some(obj) = item.as_object() else {
            err(
                errors,
                format!("filters[{i}]"),
                "must be an object {field, operator, value}",
            );
            continue;
        };
        for key in obj.keys() {
            if !["field", "operator", "value"].contains(&key.as_str()) {
                err(
                    errors,
                    at(key),
                    "unknown field; expected field, operator, value",
                );
            }
        }
        let dimension = match obj.get("field").and_then(Value::as_str) {
            Some(name) => Dimension::parse(name).or_else(|| {
                err(errors, at("field"), unknown_dimension(name, false));
                None
            }),
            None => {
                err(errors, at("field"), "is required: a dimension name");
                None
            }
        };
        let operator = obj.get("operator").and_then(Value::as_str);
        let (negate, emptiness) = match operator {
            Some("in") => (false, false),
            Some("not_in") => (true, false),
            Some("empty") => (false, true),
            Some("not_empty") => (true, true),
            Some(other) => {
                err(
                    errors,
                    at("operator"),
                    format!("unknown operator {other:?}; expected in, not_in, empty, not_empty"),
                );
                continue;
            }
            None => {
                err(
                    errors,
                    at("operator"),
                    "is required: in, not_in, empty or not_empty",
                );
                continue;
            }
        };
        let Some(dimension) = dimension else { continue };
        if emptiness {
            if obj.get("value").is_some_and(|v| !v.is_null()) {
                err(
                    errors,
                    at("value"),
                    "must be absent for empty and not_empty",
                );
                continue;
            }
            // Ids are stored as "" when absent; a status code is never absent, so `empty`
            // on it matches nothing (code 0) and `not_empty` everything.
            match dimension {
                Dimension::StatusCode | Dimension::StatusCodeGrouped => {
                    filter.status_filters.push((vec![0], negate))
                }
                _ => filter
                    .text_filters
                    .push((dimension.column(), vec![String::new()], negate)),
            }
            continue;
        }
        let values = match obj.get("value") {
            Some(Value::Array(values)) if !values.is_empty() => values,
            _ => {
                err(
                    errors,
                    at("value"),
                    "is required for in and not_in: a non-empty list",
                );
                continue;
            }
        };
        let bad = |errors: &mut Vec<FieldError>, j: usize, reason: &str| {
            err(errors, format!("filters[{i}].value[{j}]"), reason)
        };
        match dimension {
            Dimension::StatusCode => {
                let mut codes = Vec::new();
                for (j, v) in values.iter().enumerate() {
                    let code = v
                        .as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                    match code {
                        Some(code) if (100..=599).contains(&code) => codes.push(code),
                        _ => bad(errors, j, "must be an HTTP status code (100-599)"),
                    }
                }
                filter.status_filters.push((codes, negate));
            }
            Dimension::StatusCodeGrouped => {
                let mut codes = Vec::new();
                for (j, v) in values.iter().enumerate() {
                    match v.as_str().and_then(status_class) {
                        Some(class) => codes.extend(class),
                        None => bad(
                            errors,
                            j,
                            "must be a status class: 1XX, 2XX, 3XX, 4XX or 5XX",
                        ),
                    }
                }
                filter.status_filters.push((codes, negate));
            }
            _ => {
                let mut ids = Vec::new();
                for (j, v) in values.iter().enumerate() {
                    match v.as_str().map(Uuid::parse_str) {
                        Some(Ok(id)) => ids.push(id.to_string()),
                        _ => bad(errors, j, "must be a UUID string"),
                    }
                }
                filter.text_filters.push((dimension.column(), ids, negate));
            }
        }
    }
    filter
}

/// One record of the answer (Konnect's explore record).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExploreRecord {
    /// Record format: `v1`.
    pub version: &'static str,
    /// Start of the record's bucket (the query's start without the `time` dimension),
    /// RFC 3339.
    pub timestamp: String,
    /// The record's value of each requested dimension (`null` = none, e.g. no consumer) and
    /// of each requested metric (counts as integers, latencies in ms, sizes in bytes,
    /// `error_rate` in percent).
    #[schema(value_type = Object)]
    pub event: Map<String, Value>,
}

/// Groups rows by bucket (with `time`) and the requested dimensions and computes the metrics.
pub fn answer(
    query: &MetricsQuery,
    rows: Vec<(AggregateKey, AggregateValues)>,
) -> Vec<ExploreRecord> {
    let mut groups: BTreeMap<(i64, Vec<String>), (AggregateKey, AggregateValues)> = BTreeMap::new();
    for (key, values) in rows {
        let bucket = if query.by_time {
            query.bucket.floor(key.bucket_start)
        } else {
            query.start
        };
        let dims: Vec<String> = query
            .dimensions
            .iter()
            .map(|d| d.value(&key).to_string())
            .collect();
        groups
            .entry((bucket, dims))
            .or_insert_with(|| (key.clone(), AggregateValues::default()))
            .1
            .merge(&values);
    }
    let width = if query.by_time {
        query.bucket.seconds()
    } else {
        (query.end - query.start).max(1)
    };
    groups
        .into_iter()
        .map(|((bucket, _), (key, values))| {
            let mut event: Map<String, Value> = query
                .dimensions
                .iter()
                .map(|d| (d.name().to_string(), d.value(&key)))
                .collect();
            for m in &query.metrics {
                event.insert(m.name().to_string(), m.value(&values, width));
            }
            ExploreRecord {
                version: "v1",
                timestamp: crate::api::timestamps::rfc3339(bucket),
                event,
            }
        })
        .collect()
}
