//! Lists of core entities in Kong's Admin API shape: `size`/`offset` paging answered as
//! `{data, offset, next}`, and the `tags` filter (`a,b` = every tag, `a/b` = any tag).

use axum::Json;
use fleetgate_config::Entity;
use serde_json::Value;

use super::scope::Scope;
use crate::api::extract::QueryParams;
use crate::api::paging::{KongList, KongPage, KONG_PAGE_PARAMS};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{EntityListQuery, EntityRecord, ReferenceRow, TagFilter};

/// Every query parameter a core-entity list understands.
pub const LIST_PARAMS: [&str; 3] = [KONG_PAGE_PARAMS[0], KONG_PAGE_PARAMS[1], "tags"];

/// Most tags one filter may name, as in Kong.
pub const MAX_FILTER_TAGS: usize = 5;

/// Reads Kong's `tags` parameter. Absent or empty means no filter (Kong's SDKs send `tags=`
/// for an unset filter: the spec marks it `allowEmptyValue`).
pub fn tag_filter(query: &QueryParams) -> ApiResult<Option<TagFilter>> {
    let raw = match query.get("tags") {
        None | Some("") => return Ok(None),
        Some(raw) => raw,
    };
    let bad = |reason: &str| ApiError::query("tags", reason);
    let (any, separator) = match (raw.contains(','), raw.contains('/')) {
        (true, true) => {
            return Err(bad(
                "mixes ',' (all of) and '/' (any of); use one operator per filter",
            ))
        }
        (false, true) => (true, '/'),
        _ => (false, ','),
    };
    let tags: Vec<String> = raw.split(separator).map(str::to_string).collect();
    if tags.iter().any(String::is_empty) {
        return Err(bad("has an empty tag; write tags=a,b or tags=a/b"));
    }
    if tags.iter().any(|t| t.chars().any(char::is_control)) {
        return Err(bad("tags must be printable text"));
    }
    if tags.len() > MAX_FILTER_TAGS {
        return Err(bad(&format!(
            "names {} tags; at most {MAX_FILTER_TAGS} may be queried at once",
            tags.len()
        )));
    }
    Ok(Some(if any {
        TagFilter::Any(tags)
    } else {
        TagFilter::All(tags)
    }))
}

/// The filter as it goes back into `next` (`tags=a%2Cb`).
fn filter_query(filter: Option<&TagFilter>) -> String {
    let Some(filter) = filter else {
        return String::new();
    };
    let joined = match filter {
        TagFilter::All(tags) => tags.join(","),
        TagFilter::Any(tags) => tags.join("/"),
    };
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("tags", &joined)
        .finish()
}

/// One page of entities of kind `E` in `scope`. `path` is the list's path relative to the
/// control plane's `core-entities` base (`/services`, `/services/{id}/routes`): Kong writes
/// `next` relative to its Admin API root, and that base is where Konnect mounts it.
pub async fn list<E: Entity>(
    state: &AppState,
    scope: &Scope,
    query: &QueryParams,
    path: &str,
) -> ApiResult<Json<KongList<Value>>> {
    query.only(&LIST_PARAMS)?;
    let page = KongPage::from_query(query)?;
    let tags = tag_filter(query)?;
    let parent = scope.parent.map(|p| ReferenceRow {
        to_kind: p.kind,
        to_id: p.id,
    });
    let records = state
        .store
        .list_entities(
            scope.org,
            scope.control_plane,
            E::KIND,
            EntityListQuery {
                parent,
                tags: tags.as_ref(),
                after: page.after.as_deref(),
                limit: page.fetch_limit(),
            },
        )
        .await?;
    let items: Vec<Value> = records.iter().map(EntityRecord::to_api_json).collect();
    Ok(Json(page.finish(
        items,
        path,
        &filter_query(tags.as_ref()),
        |v| {
            v.get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(tags: &str) -> QueryParams {
        QueryParams(
            [("tags".to_string(), tags.to_string())]
                .into_iter()
                .collect(),
        )
    }

    #[test]
    fn tags_parse_as_kong_does() {
        assert_eq!(
            tag_filter(&query("a,b")).expect("a valid filter"),
            Some(TagFilter::All(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            tag_filter(&query("a/b")).expect("a valid filter"),
            Some(TagFilter::Any(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            tag_filter(&query("solo")).expect("a valid filter"),
            Some(TagFilter::All(vec!["solo".into()]))
        );
        assert_eq!(tag_filter(&query("")).expect("a valid filter"), None);
        for bad in ["a,b/c", "a,,b", "a/", "1,2,3,4,5,6"] {
            assert!(tag_filter(&query(bad)).is_err(), "{bad}");
        }
        assert!(tag_filter(&query("1/2/3/4/5")).is_ok());
    }

    #[test]
    fn the_filter_goes_back_into_next_encoded() {
        let all = TagFilter::All(vec!["a b".into(), "c".into()]);
        assert_eq!(filter_query(Some(&all)), "tags=a+b%2Cc");
        assert_eq!(filter_query(None), "");
    }
}
