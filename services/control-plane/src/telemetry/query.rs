//! `POST /v2/analytics/metrics`: the request, its validation, and the answer.
//!
//! Validation collects every problem at once, each naming its field (`metrics[2]`,
//! `filters[0].values[1]`, `time_range.end`, …), so a caller fixes a query in one round.

use std::collections::BTreeMap;

use fleetgate_config::FieldError;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::Granularity;
use crate::store::{AggregateFilter, AggregateKey, AggregateValues};

/// Most buckets one query may span (a week of minutes); coarser granularities cover more time.
pub const MAX_BUCKETS: i64 = 10_080;

/// A queryable measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests.
    RequestCount,
    /// Percentage (0–100) of requests answered with status >= 400.
    ErrorRate,
    /// Median total latency, ms.
    LatencyP50,
    /// 95th percentile total latency, ms.
    LatencyP95,
    /// 99th percentile total latency, ms.
    LatencyP99,
    /// Request bytes.
    BytesIn,
    /// Response bytes.
    BytesOut,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 7] = [
        Metric::RequestCount,
        Metric::ErrorRate,
        Metric::LatencyP50,
        Metric::LatencyP95,
        Metric::LatencyP99,
        Metric::BytesIn,
        Metric::BytesOut,
    ];

    /// API name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestCount => "request_count",
            Metric::ErrorRate => "error_rate",
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP95 => "latency_p95",
            Metric::LatencyP99 => "latency_p99",
            Metric::BytesIn => "bytes_in",
            Metric::BytesOut => "bytes_out",
        }
    }

    fn value(self, v: &AggregateValues) -> Value {
        let ms = |q: f64| {
            v.latency
                .quantile(q)
                .map(|us| Value::from(us / 1000.0))
                .unwrap_or(Value::Null)
        };
        match self {
            Metric::RequestCount => v.request_count.into(),
            Metric::ErrorRate if v.request_count == 0 => Value::Null,
            Metric::ErrorRate => (v.error_count as f64 * 100.0 / v.request_count as f64).into(),
            Metric::LatencyP50 => ms(0.50),
            Metric::LatencyP95 => ms(0.95),
            Metric::LatencyP99 => ms(0.99),
            Metric::BytesIn => v.bytes_in.into(),
            Metric::BytesOut => v.bytes_out.into(),
        }
    }
}

/// A dimension results can be grouped and filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    /// Control plane id.
    ControlPlane,
    /// Service id (`null`: no service matched).
    Service,
    /// Route id (`null`: no route matched).
    Route,
    /// Consumer id (`null`: anonymous).
    Consumer,
    /// Data-plane node id.
    Node,
    /// HTTP status code.
    StatusCode,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 6] = [
        Dimension::ControlPlane,
        Dimension::Service,
        Dimension::Route,
        Dimension::Consumer,
        Dimension::Node,
        Dimension::StatusCode,
    ];

    /// API name.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::ControlPlane => "control_plane",
            Dimension::Service => "service",
            Dimension::Route => "route",
            Dimension::Consumer => "consumer",
            Dimension::Node => "node",
            Dimension::StatusCode => "status_code",
        }
    }

    fn column(self) -> &'static str {
        match self {
            Dimension::ControlPlane => "control_plane_id",
            Dimension::Service => "service_id",
            Dimension::Route => "route_id",
            Dimension::Consumer => "consumer_id",
            Dimension::Node => "node_id",
            Dimension::StatusCode => "status",
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
            Dimension::Service => id(&key.service_id),
            Dimension::Route => id(&key.route_id),
            Dimension::Consumer => id(&key.consumer_id),
            Dimension::Node => id(&key.node_id),
            Dimension::StatusCode => key.status.into(),
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// A validated query.
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    /// Measures to answer, in the caller's order.
    pub metrics: Vec<Metric>,
    /// Dimensions to group by.
    pub dimensions: Vec<Dimension>,
    /// Filters, applied in SQL.
    pub filter: AggregateFilter,
    /// First bucket start (floored to the granularity).
    pub start: i64,
    /// End, exclusive.
    pub end: i64,
    /// Bucket width.
    pub granularity: Granularity,
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

/// Parses and validates a request body; every problem is reported with its field.
pub fn parse(body: &Value) -> Result<MetricsQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        err(&mut errors, "body", "must be a JSON object");
        return Err(errors);
    };
    const KNOWN: [&str; 5] = [
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

    let metrics = parse_list(
        obj,
        "metrics",
        true,
        &mut errors,
        |s| Metric::ALL.into_iter().find(|m| m.name() == s),
        || {
            format!(
                "unknown metric; expected one of {}",
                names(&Metric::ALL, Metric::name)
            )
        },
    );
    let dimensions = parse_list(
        obj,
        "dimensions",
        false,
        &mut errors,
        Dimension::parse,
        || {
            format!(
                "unknown dimension; expected one of {}",
                names(&Dimension::ALL, Dimension::name)
            )
        },
    );

    let granularity = match obj.get("granularity") {
        None | Some(Value::Null) => Some(Granularity::Minute),
        Some(Value::String(s)) => Granularity::parse(s).or_else(|| {
            err(
                &mut errors,
                "granularity",
                format!(
                    "unknown granularity {s:?}; expected one of {}",
                    names(&Granularity::ALL, Granularity::name)
                ),
            );
            None
        }),
        Some(_) => {
            err(&mut errors, "granularity", "must be a string");
            None
        }
    };

    let (start, end) = parse_time_range(obj.get("time_range"), &mut errors);
    let filter = parse_filters(obj.get("filters"), &mut errors);

    if let (Some(g), Some(start), Some(end)) = (granularity, start, end) {
        let buckets = (end - g.floor(start) + g.seconds() - 1) / g.seconds();
        if buckets > MAX_BUCKETS {
            err(
                &mut errors,
                "time_range",
                format!(
                    "spans {buckets} {} buckets; at most {MAX_BUCKETS} are allowed — use a \
                     shorter range or a coarser granularity",
                    g.name()
                ),
            );
        }
    }
    match (
        metrics,
        dimensions,
        granularity,
        start,
        end,
        errors.is_empty(),
    ) {
        (Some(metrics), Some(dimensions), Some(granularity), Some(start), Some(end), true) => {
            Ok(MetricsQuery {
                metrics,
                dimensions,
                filter,
                start: granularity.floor(start),
                end,
                granularity,
            })
        }
        _ => Err(errors),
    }
}

fn parse_list<T: PartialEq + Copy>(
    obj: &Map<String, Value>,
    field: &str,
    required: bool,
    errors: &mut Vec<FieldError>,
    lookup: impl Fn(&str) -> Option<T>,
    unknown: impl Fn() -> String,
) -> Option<Vec<T>> {
    let items = match obj.get(field) {
        None | Some(Value::Null) if required => {
            err(errors, field, "is required: a non-empty list");
            return None;
        }
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            err(errors, field, "must be a list of strings");
            return None;
        }
    };
    if required && items.is_empty() {
        err(errors, field, "must not be empty");
        return None;
    }
    let mut out = Vec::new();
    let before = errors.len();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        match item.as_str().map(&lookup) {
            Some(Some(x)) if out.contains(&x) => err(errors, path, "is listed twice"),
            Some(Some(x)) => out.push(x),
            Some(None) => err(errors, path, unknown()),
            None => err(errors, path, "must be a string"),
        }
    }
    (errors.len() == before).then_some(out)
}

fn parse_time_range(
    value: Option<&Value>,
    errors: &mut Vec<FieldError>,
) -> (Option<i64>, Option<i64>) {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        err(
            errors,
            "time_range",
            "is required: {\"start\": unix_seconds, \"end\": unix_seconds}",
        );
        return (None, None);
    };
    let Some(obj) = value.as_object() else {
        err(
            errors,
            "time_range",
            "must be an object {\"start\": …, \"end\": …}",
        );
        return (None, None);
    };
    for key in obj.keys() {
        if key != "start" && key != "end" {
            err(
                errors,
                format!("time_range.{key}"),
                "unknown field; expected start, end",
            );
        }
    }
    let mut get = |name: &str| match obj.get(name) {
        None | Some(Value::Null) => {
            err(
                errors,
                format!("time_range.{name}"),
                "is required (Unix seconds)",
            );
            None
        }
        Some(v) => match v.as_i64() {
            Some(n) if (0..=253_402_300_799).contains(&n) => Some(n),
            _ => {
                err(
                    errors,
                    format!("time_range.{name}"),
                    "must be a whole number of Unix seconds between 0 and year 9999",
                );
                None
            }
        },
    };
    let start = get("start");
    let end = get("end");
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            err(errors, "time_range.end", "must be after time_range.start");
            return (None, None);
        }
    }
    (start, end)
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
                "must be a list of {dimension, type, values}",
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
                "must be an object {dimension, type, values}",
            );
            continue;
        };
        for key in obj.keys() {
            if !["dimension", "type", "values"].contains(&key.as_str()) {
                err(
                    errors,
                    at(key),
                    "unknown field; expected dimension, type, values",
                );
            }
        }
        let dimension = match obj.get("dimension").and_then(Value::as_str) {
            Some(name) => Dimension::parse(name).or_else(|| {
                err(
                    errors,
                    at("dimension"),
                    format!(
                        "unknown dimension {name:?}; expected one of {}",
                        names(&Dimension::ALL, Dimension::name)
                    ),
                );
                None
            }),
            None => {
                err(errors, at("dimension"), "is required: a dimension name");
                None
            }
        };
        let negate = match obj.get("type").and_then(Value::as_str) {
            None | Some("in") => Some(false),
            Some("not_in") => Some(true),
            Some(other) => {
                err(
                    errors,
                    at("type"),
                    format!("unknown filter type {other:?}; expected in, not_in"),
                );
                None
            }
        };
        let values = match obj.get("values") {
            Some(Value::Array(values)) if !values.is_empty() => values,
            _ => {
                err(errors, at("values"), "is required: a non-empty list");
                continue;
            }
        };
        let (Some(dimension), Some(negate)) = (dimension, negate) else {
            continue;
        };
        if dimension == Dimension::StatusCode {
            let mut codes = Vec::new();
            for (j, v) in values.iter().enumerate() {
                match v.as_i64() {
                    Some(code) if (100..=599).contains(&code) => codes.push(code),
                    _ => err(
                        errors,
                        format!("filters[{i}].values[{j}]"),
                        "must be an HTTP status code (100-599)",
                    ),
                }
            }
            filter.status_filters.push((codes, negate));
        } else {
            let mut ids = Vec::new();
            for (j, v) in values.iter().enumerate() {
                match v {
                    // null matches "none" (e.g. requests without a consumer).
                    Value::Null
                        if dimension != Dimension::ControlPlane && dimension != Dimension::Node =>
                    {
                        ids.push(String::new())
                    }
                    Value::String(s) => match Uuid::parse_str(s) {
                        Ok(id) => ids.push(id.to_string()),
                        Err(_) => err(
                            errors,
                            format!("filters[{i}].values[{j}]"),
                            format!("{s:?} is not a UUID"),
                        ),
                    },
                    _ => err(
                        errors,
                        format!("filters[{i}].values[{j}]"),
                        "must be a UUID string (or null for none)",
                    ),
                }
            }
            filter.text_filters.push((dimension.column(), ids, negate));
        }
    }
    filter
}

/// One point of the answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DataPoint {
    /// Bucket start, Unix seconds.
    pub timestamp: i64,
    /// The point's value of each requested dimension (`null` = none, e.g. no consumer).
    #[schema(value_type = Object)]
    pub dimensions: Map<String, Value>,
    /// The requested metrics: counts as integers, `error_rate` in percent, latencies in
    /// milliseconds.
    #[schema(value_type = Object)]
    pub metrics: Map<String, Value>,
}

/// Groups rows by bucket and the requested dimensions and computes the metrics.
pub fn answer(query: &MetricsQuery, rows: Vec<(AggregateKey, AggregateValues)>) -> Vec<DataPoint> {
    let mut groups: BTreeMap<(i64, Vec<String>), (AggregateKey, AggregateValues)> = BTreeMap::new();
    for (key, values) in rows {
        let dims: Vec<String> = query
            .dimensions
            .iter()
            .map(|d| d.value(&key).to_string())
            .collect();
        groups
            .entry((key.bucket_start, dims))
            .or_insert_with(|| (key.clone(), AggregateValues::default()))
            .1
            .merge(&values);
    }
    groups
        .into_values()
        .map(|(key, values)| DataPoint {
            timestamp: key.bucket_start,
            dimensions: query
                .dimensions
                .iter()
                .map(|d| (d.name().to_string(), d.value(&key)))
                .collect(),
            metrics: query
                .metrics
                .iter()
                .map(|m| (m.name().to_string(), m.value(&values)))
                .collect(),
        })
        .collect()
}
