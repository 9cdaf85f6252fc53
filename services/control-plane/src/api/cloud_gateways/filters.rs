//! Konnect's list filters of the cloud-gateway API: `filter[field]` (equals) or
//! `filter[field][op]` with `eq`, `neq`, `oeq` (equals one of a comma-separated list),
//! `contains` and `ocontains` (contains one of a comma-separated list), each list allowing the
//! operators its reference lists. Cloud-gateway collections hold a handful of rows per
//! organisation, so filters apply to the loaded rows.

use crate::api::extract::QueryParams;
use crate::api::paging::NUMBERED_PAGE_PARAMS;
use crate::error::ApiError;

/// Operators of Konnect's string filters (`CloudGatewaysStringFieldFilterOverride`).
pub const STRING_OPS: &[&str] = &["eq", "neq", "oeq", "contains", "ocontains"];
/// Operators of Konnect's state filters.
pub const STATE_OPS: &[&str] = &["eq", "neq", "oeq"];
/// Operators of Konnect's id and enum filters.
pub const EQUALS_OPS: &[&str] = &["eq", "oeq"];

/// One filterable field of a list: its name, operators and, for enums, the values allowed.
#[derive(Debug, Clone, Copy)]
pub struct FilterField {
    /// Field name as in `filter[name]`.
    pub name: &'static str,
    /// Operators allowed besides the bare form (which means `eq`).
    pub ops: &'static [&'static str],
    /// The values a comparison may name, for enum fields.
    pub values: Option<&'static [&'static str]>,
}

/// The query parameters a numbered list with these filters understands.
pub fn known_params(fields: &[FilterField]) -> Vec<String> {
    let mut known: Vec<String> = NUMBERED_PAGE_PARAMS.iter().map(|p| p.to_string()).collect();
    for field in fields {
        known.push(format!("filter[{}]", field.name));
        known.extend(
            field
                .ops
                .iter()
                .map(|op| format!("filter[{}][{op}]", field.name)),
        );
    }
    known
}

/// Refuses any parameter the list does not know, naming it.
pub fn check_params(query: &QueryParams, fields: &[FilterField]) -> Result<(), ApiError> {
    let known = known_params(fields);
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    query.only(&known)
}

/// A parsed filter on one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    op: &'static str,
    values: Vec<String>,
}

impl Filter {
    /// Whether a row's value passes.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            "neq" => value != self.values[0],
            "oeq" => self.values.iter().any(|v| v == value),
            "contains" => value.contains(self.values[0].as_str()),
            "ocontains" => self.values.iter().any(|v| value.contains(v.as_str())),
            _ => value == self.values[0],
        }
    }
}

/// The filter given on `field`, if any; two operators on one field, an empty value or a value
/// the enum does not have answer 400 naming the parameter.
pub fn filter(query: &QueryParams, field: &FilterField) -> Result<Option<Filter>, ApiError> {
    let bare = format!("filter[{}]", field.name);
    let mut given = Vec::new();
    if let Some(raw) = query.get(&bare) {
        given.push((bare.clone(), "eq", raw));
    }
    for op in field.ops {
        let param = format!("filter[{}][{op}]", field.name);
        if let Some(raw) = query.get(&param) {
            given.push((param, *op, raw));
        }
    }
    let Some((param, op, raw)) = given.first().cloned() else {
        return Ok(None);
    };
    if given.len() > 1 {
        return Err(ApiError::query(
            given[1].0.clone(),
            format!("filter[{}] takes one operator at a time", field.name),
        ));
    }
    let values: Vec<String> = if matches!(op, "oeq" | "ocontains") {
        raw.split(',').map(|v| v.trim().to_string()).collect()
    } else {
        vec![raw.to_string()]
    };
    if values.iter().any(String::is_empty) {
        return Err(ApiError::query(param, "must not be empty"));
    }
    if let Some(allowed) = field.values {
        if let Some(bad) = values.iter().find(|v| !allowed.contains(&v.as_str())) {
            return Err(ApiError::query(
                param,
                format!("{bad:?} is not one of {}", allowed.join(", ")),
            ));
        }
    }
    Ok(Some(Filter { op, values }))
}

/// Whether an optional filter passes (no filter passes everything).
pub fn passes(filter: &Option<Filter>, value: &str) -> bool {
    filter.as_ref().is_none_or(|f| f.matches(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: FilterField = FilterField {
        name: "name",
        ops: STRING_OPS,
        values: None,
    };
    const STATE: FilterField = FilterField {
        name: "state",
        ops: STATE_OPS,
        values: Some(&["ready", "error"]),
    };

    fn query(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn operators_compare_as_konnect_documents() {
        let f = |k: &str, v: &str| {
            filter(&query(&[(k, v)]), &NAME)
                .expect("valid")
                .expect("given")
        };
        assert!(f("filter[name]", "a").matches("a"));
        assert!(f("filter[name][eq]", "a").matches("a"));
        assert!(!f("filter[name][neq]", "a").matches("a"));
        assert!(f("filter[name][oeq]", "a, b").matches("b"));
        assert!(f("filter[name][contains]", "ro").matches("prod"));
        assert!(f("filter[name][ocontains]", "x,ro").matches("prod"));
        assert!(!f("filter[name][ocontains]", "x,y").matches("prod"));
    }

    #[test]
    fn bad_filters_name_the_parameter() {
        let err = filter(&query(&[("filter[state]", "nope")]), &STATE).expect_err("refused");
        assert!(format!("{err:?}").contains("filter[state]"));
        let err = filter(
            &query(&[("filter[name]", "a"), ("filter[name][neq]", "b")]),
            &NAME,
        )
        .expect_err("refused");
        assert!(format!("{err:?}").contains("filter[name][neq]"));
        assert!(check_params(&query(&[("filter[name][like]", "a")]), &[NAME]).is_err());
        assert!(check_params(&query(&[("page[number]", "2")]), &[NAME]).is_ok());
    }
}
