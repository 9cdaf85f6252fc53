//! `GET /v2/control-planes`: Konnect's numbered list with its filters (`filter[name][eq|neq|
//! contains]`, `filter[id][eq|oeq]`, `filter[cluster_type][eq|neq|oeq]`,
//! `filter[cloud_gateway]`), `labels=key:value,existCheck` and `sort=created_at|-created_at`.

use axum::extract::State;
use axum::Json;
use uuid::Uuid;

use super::ControlPlane;
use crate::api::extract::QueryParams;
use crate::api::paging::{NumberedList, NumberedPage};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{ControlPlaneFilter, LabelMatch};

/// Every query parameter the list understands (anything else answers 400 naming it).
pub const LIST_PARAMS: [&str; 17] = [
    "page[size]",
    "page[number]",
    "filter[name]",
    "filter[name][eq]",
    "filter[name][neq]",
    "filter[name][contains]",
    "filter[id]",
    "filter[id][eq]",
    "filter[id][oeq]",
    "filter[cluster_type]",
    "filter[cluster_type][eq]",
    "filter[cluster_type][neq]",
    "filter[cluster_type][oeq]",
    "filter[cloud_gateway]",
    "filter[cloud_gateway][eq]",
    "labels",
    "sort",
];

/// The organisation's control planes, a numbered page at a time.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    query: QueryParams,
) -> ApiResult<Json<NumberedList<ControlPlane>>> {
    query.only(&LIST_PARAMS)?;
    let page = NumberedPage::from_query(&query)?;
    let filter = filter_of(&query)?;
    let (records, total) = state
        .store
        .list_control_planes(caller.organization_id, &filter, page.window())
        .await?;
    let items = records
        .into_iter()
        .map(|r| ControlPlane::from_record(r, &state))
        .collect();
    Ok(Json(page.finish(items, total)))
}

/// Reads the filter and sort parameters (already known to be ones the list takes).
fn filter_of(query: &QueryParams) -> Result<ControlPlaneFilter, ApiError> {
    let mut filter = ControlPlaneFilter {
        // `filter[field]` is Konnect's short form of `filter[field][eq]`.
        name_eq: either(query, "filter[name]", "filter[name][eq]").map(str::to_string),
        name_neq: query.get("filter[name][neq]").map(str::to_string),
        name_contains: query.get("filter[name][contains]").map(str::to_string),
        ..ControlPlaneFilter::default()
    };
    let mut ids: Option<Vec<Uuid>> = None;
    for param in ["filter[id]", "filter[id][eq]", "filter[id][oeq]"] {
        if let Some(raw) = query.get(param) {
            let one_of = param.ends_with("[oeq]");
            let wanted = uuids(param, raw, one_of)?;
            // Several id filters must all hold: keep the ids every one of them names.
            ids = Some(match ids {
                None => wanted,
                Some(before) => before.into_iter().filter(|i| wanted.contains(i)).collect(),
            });
        }
    }
    filter.ids = ids;
    let mut types: Option<Vec<String>> = None;
    for param in [
        "filter[cluster_type]",
        "filter[cluster_type][eq]",
        "filter[cluster_type][oeq]",
    ] {
        if let Some(raw) = query.get(param) {
            let wanted: Vec<String> = if param.ends_with("[oeq]") {
                list_items(raw)
            } else {
                vec![raw.to_string()]
            };
            types = Some(match types {
                None => wanted,
                Some(before) => before.into_iter().filter(|t| wanted.contains(t)).collect(),
            });
        }
    }
    filter.cluster_types = types;
    filter.cluster_type_neq = query.get("filter[cluster_type][neq]").map(str::to_string);
    for param in ["filter[cloud_gateway]", "filter[cloud_gateway][eq]"] {
        if let Some(raw) = query.get(param) {
            filter.cloud_gateway = Some(match raw {
                "true" => true,
                "false" => false,
                _ => return Err(ApiError::query(param, "must be true or false")),
            });
        }
    }
    if let Some(raw) = query.get("labels") {
        filter.labels = labels(raw)?;
    }
    if let Some(raw) = query.get("sort") {
        filter.newest_first = newest_first(raw)?;
    }
    Ok(filter)
}

/// The value of the short or the long form of a parameter (the long form wins).
fn either<'q>(query: &'q QueryParams, short: &str, long: &str) -> Option<&'q str> {
    query.get(long).or_else(|| query.get(short))
}

/// The comma-separated items of an `oeq` value, trimmed, empty ones dropped.
fn list_items(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn uuids(param: &str, raw: &str, one_of: bool) -> Result<Vec<Uuid>, ApiError> {
    let items = if one_of {
        list_items(raw)
    } else {
        vec![raw.trim().to_string()]
    };
    if items.is_empty() {
        return Err(ApiError::query(param, "must name at least one id"));
    }
    items
        .iter()
        .map(|item| {
            Uuid::parse_str(item)
                .map_err(|_| ApiError::query(param, format!("{item:?} is not a UUID")))
        })
        .collect()
}

/// `labels=key:value,existCheck`: every item must hold; `key:value` wants that value,
/// a bare `key` only that the label is set.
fn labels(raw: &str) -> Result<Vec<LabelMatch>, ApiError> {
    let mut matches = Vec::new();
    for item in raw.split(',') {
        let item = item.trim();
        let found = match item.split_once(':') {
            Some((key, value)) => LabelMatch::Equals {
                key: key.trim().to_string(),
                value: value.trim().to_string(),
            },
            None => LabelMatch::Exists {
                key: item.to_string(),
            },
        };
        let key = match &found {
            LabelMatch::Equals { key, .. } | LabelMatch::Exists { key } => key,
        };
        if key.is_empty() {
            return Err(ApiError::query(
                "labels",
                "must be a comma-separated list of key:value or key (a label that must exist)",
            ));
        }
        matches.push(found);
    }
    Ok(matches)
}

/// `sort`: `created_at` (oldest first, the default) or `-created_at` / `created_at desc`.
fn newest_first(raw: &str) -> Result<bool, ApiError> {
    let raw = raw.trim();
    if raw.contains(',') {
        return Err(ApiError::query(
            "sort",
            "only one sort attribute is supported: created_at",
        ));
    }
    let (attribute, descending) = if let Some(rest) = raw.strip_prefix('-') {
        (rest.trim(), true)
    } else if let Some((attribute, order)) = raw.split_once(' ') {
        match order.trim().to_ascii_lowercase().as_str() {
            "asc" => (attribute, false),
            "desc" => (attribute, true),
            _ => {
                return Err(ApiError::query(
                    "sort",
                    format!("unknown sort order {:?}; use asc or desc", order.trim()),
                ))
            }
        }
    } else {
        (raw, false)
    };
    if attribute != "created_at" {
        return Err(ApiError::query(
            "sort",
            format!("cannot sort by {attribute:?}; supported: created_at, -created_at"),
        ));
    }
    Ok(descending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_and_ed_equalities_and_existence_checks() {
        assert_eq!(
            labels("env:prod,team").expect("valid labels"),
            vec![
                LabelMatch::Equals {
                    key: "env".into(),
                    value: "prod".into()
                },
                LabelMatch::Exists { key: "team".into() }
            ]
        );
        assert!(labels("env:prod,").is_err());
        assert!(labels(":x").is_err());
    }

    #[test]
    fn sort_takes_konnects_spellings() {
        assert!(!newest_first("created_at").expect("valid sort"));
        assert!(newest_first("-created_at").expect("valid sort"));
        assert!(newest_first("created_at desc").expect("valid sort"));
        assert!(!newest_first("created_at asc").expect("valid sort"));
        assert!(newest_first("name").is_err());
        assert!(newest_first("created_at sideways").is_err());
        assert!(newest_first("created_at,name").is_err());
    }
}
