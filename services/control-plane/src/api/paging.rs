//! The three list shapes of Konnect's API, and the query-parameter check every list shares.
//!
//! - Konnect's numbered pages (`page[size]`, `page[number]` -> `{data, meta: {page: {number,
//!   size, total}}}`): control planes, cloud gateways and Fleetgate's own collections.
//! - Konnect's cursor pages (`page[size]`, `page[after]` -> `{items, page: {total, next}}`):
//!   data-plane nodes and client certificates.
//! - Kong's Admin API paging (`size`, `offset` -> `{data, offset, next}`): core entities.
//!
//! A parameter a list does not know answers 400 naming it: silently ignoring a misspelt
//! filter returns wrong data (every control plane for a name filter nobody applied).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use super::extract::{QueryParams, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::ApiError;

/// Query parameters of numbered lists.
pub const NUMBERED_PAGE_PARAMS: [&str; 2] = ["page[size]", "page[number]"];
/// Query parameters of cursor lists.
pub const CURSOR_PAGE_PARAMS: [&str; 2] = ["page[size]", "page[after]"];
/// Query parameters of Kong's Admin API lists (before filters).
pub const KONG_PAGE_PARAMS: [&str; 2] = ["size", "offset"];

impl QueryParams {
    /// Refuses any parameter not in `known`. A `filter[field][op]` whose field is known (as
    /// `filter[field]` or with another operator) but whose operator is not names the operator.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        for name in self.0.keys() {
            if known.contains(&name.as_str()) {
                continue;
            }
            return Err(unknown_parameter(name, known));
        }
        Ok(())
    }

    /// The value of a parameter, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn unknown_parameter(name: &str, known: &[&str]) -> ApiError {
    if let Some((field, op)) = filter_parts(name) {
        let operators: Vec<&str> = known
            .iter()
            .filter_map(|k| filter_parts(k))
            .filter(|(f, _)| *f == field)
            .filter_map(|(_, o)| o)
            .collect();
        if !operators.is_empty() {
            return ApiError::query(
                name,
                format!(
                    "unknown filter operator {:?} for filter[{field}]; supported: {}",
                    op.unwrap_or(""),
                    operators.join(", ")
                ),
            );
        }
        let fields: Vec<&str> = known
            .iter()
            .filter_map(|k| filter_parts(k))
            .map(|(f, _)| f)
            .fold(Vec::new(), |mut acc, f| {
                if !acc.contains(&f) {
                    acc.push(f);
                }
                acc
            });
        let supported = if fields.is_empty() {
            "this list takes no filters".to_string()
        } else {
            format!("filterable fields: {}", fields.join(", "))
        };
        return ApiError::query(name, format!("unknown filter field {field:?}; {supported}"));
    }
    ApiError::query(
        name,
        format!(
            "is not a query parameter of this operation; known: {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    )
}

/// `filter[name][eq]` -> (`name`, Some(`eq`)); `filter[name]` -> (`name`, None).
fn filter_parts(name: &str) -> Option<(&str, Option<&str>)> {
    let rest = name.strip_prefix("filter[")?;
    let (field, rest) = rest.split_once(']')?;
    if rest.is_empty() {
        return Some((field, None));
    }
    let op = rest.strip_prefix('[')?.strip_suffix(']')?;
    Some((field, Some(op)))
}

fn page_size(query: &QueryParams, param: &str) -> Result<i64, ApiError> {
    match query.get(param) {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(ApiError::query(
                param,
                format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"),
            )),
        },
    }
}

/// Konnect's numbered pages: `page[size]` (1–1000, default 100) and `page[number]` (from 1).
#[derive(Debug, Clone, Copy)]
pub struct NumberedPage {
    /// Items per page.
    pub size: i64,
    /// The page asked for, from 1.
    pub number: i64,
}

impl NumberedPage {
    /// Reads `page[size]` and `page[number]`; does not check other parameters.
    pub fn from_query(query: &QueryParams) -> Result<Self, ApiError> {
        let size = page_size(query, "page[size]")?;
        let number = match query.get("page[number]") {
            None => 1,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=i64::MAX / MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::query(
                        "page[number]",
                        "must be a whole number from 1",
                    ))
                }
            },
        };
        Ok(Self { size, number })
    }

    /// Rows to skip.
    pub fn offset(&self) -> i64 {
        (self.number - 1) * self.size
    }

    /// The rows of this page, for the store.
    pub fn window(&self) -> crate::store::Window {
        crate::store::Window {
            offset: self.offset(),
            limit: self.size,
        }
    }

    /// Cuts an already filtered and sorted list to this page.
    pub fn slice<T: Serialize>(&self, items: Vec<T>) -> NumberedList<T> {
        let total = items.len() as i64;
        let data = items
            .into_iter()
            .skip(self.offset().min(total) as usize)
            .take(self.size as usize)
            .collect();
        self.finish(data, total)
    }

    /// The answer for the rows of this page out of `total`.
    pub fn finish<T: Serialize>(&self, data: Vec<T>, total: i64) -> NumberedList<T> {
        NumberedList {
            data,
            meta: NumberedMeta {
                page: NumberedPageInfo {
                    number: self.number,
                    size: self.size,
                    total,
                },
            },
        }
    }
}

/// A numbered page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NumberedList<T> {
    /// The items of this page.
    pub data: Vec<T>,
    /// Pagination details.
    pub meta: NumberedMeta,
}

/// List metadata of numbered lists.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NumberedMeta {
    /// Pagination details.
    pub page: NumberedPageInfo,
}

/// Where this page sits in the whole list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NumberedPageInfo {
    /// This page's number, from 1.
    pub number: i64,
    /// The page size used.
    pub size: i64,
    /// Items in the whole (filtered) list.
    pub total: i64,
}

/// Konnect's cursor pages: `page[size]` and an opaque `page[after]`.
#[derive(Debug, Clone)]
pub struct CursorPage {
    /// Items per page.
    pub size: i64,
    /// Sort key of the last item of the previous page.
    pub after: Option<String>,
}

impl CursorPage {
    /// Reads `page[size]` and `page[after]`; does not check other parameters.
    pub fn from_query(query: &QueryParams) -> Result<Self, ApiError> {
        Ok(Self {
            size: page_size(query, "page[size]")?,
            after: read_cursor(query, "page[after]", "is not a cursor this API returned")?,
        })
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts the fetched rows to the page; `total` counts the whole list.
    pub fn finish<T: Serialize>(
        &self,
        mut items: Vec<T>,
        total: i64,
        key: impl Fn(&T) -> String,
    ) -> CursorList<T> {
        let next = cut_page(&mut items, self.size, key);
        CursorList {
            items,
            page: CursorPageInfo { total, next },
        }
    }
}

/// A cursor page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CursorList<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pagination details.
    pub page: CursorPageInfo,
}

/// Cursor pagination details.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CursorPageInfo {
    /// Items in the whole list.
    pub total: i64,
    /// Pass as `page[after]` for the next page; null on the last page.
    pub next: Option<String>,
}

/// Kong's Admin API paging: `size` (1–1000, default 100) and an opaque `offset`.
#[derive(Debug, Clone)]
pub struct KongPage {
    /// Items per page.
    pub size: i64,
    /// Sort key of the last item of the previous page.
    pub after: Option<String>,
}

impl KongPage {
    /// Reads `size` and `offset`; does not check other parameters.
    pub fn from_query(query: &QueryParams) -> Result<Self, ApiError> {
        Ok(Self {
            size: page_size(query, "size")?,
            after: read_cursor(query, "offset", "is not an offset this API returned")?,
        })
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts the fetched rows to the page. `path` is the list's own path (with any filters
    /// as `filters`, already encoded) for `next`, as Kong writes it.
    pub fn finish<T: Serialize>(
        &self,
        mut items: Vec<T>,
        path: &str,
        filters: &str,
        key: impl Fn(&T) -> String,
    ) -> KongList<T> {
        let offset = cut_page(&mut items, self.size, key);
        let next = offset.as_ref().map(|offset| {
            let mut next = format!("{path}?offset={offset}");
            if self.size != DEFAULT_PAGE_SIZE {
                next.push_str(&format!("&size={}", self.size));
            }
            if !filters.is_empty() {
                next.push('&');
                next.push_str(filters);
            }
            next
        });
        KongList {
            data: items,
            offset,
            next,
        }
    }
}

/// A page of a Kong Admin API list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KongList<T> {
    /// The items of this page.
    pub data: Vec<T>,
    /// Pass as `offset` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<String>,
    /// The path of the next page; null on the last page.
    pub next: Option<String>,
}

/// An opaque cursor parameter (`page[after]`, `offset`), absent when empty.
fn read_cursor(
    query: &QueryParams,
    param: &str,
    refusal: &str,
) -> Result<Option<String>, ApiError> {
    match query.get(param) {
        None | Some("") => Ok(None),
        Some(raw) => decode_cursor(raw)
            .map(Some)
            .ok_or_else(|| ApiError::query(param, refusal)),
    }
}

/// Cuts rows fetched with one extra (`fetch_limit`) to `size`; the cursor of the page's last
/// row when another page follows.
fn cut_page<T>(items: &mut Vec<T>, size: i64, key: impl Fn(&T) -> String) -> Option<String> {
    let more = items.len() as i64 > size;
    items.truncate(size as usize);
    if more {
        items.last().map(|last| encode_cursor(&key(last)))
    } else {
        None
    }
}

fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

fn decode_cursor(raw: &str) -> Option<String> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> QueryParams {
        QueryParams(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn problem_text(err: ApiError) -> String {
        match err {
            ApiError::Invalid {
                invalid_parameters, ..
            } => format!(
                "{}: {}",
                invalid_parameters[0].field, invalid_parameters[0].reason
            ),
            other => panic!("expected a field problem, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_parameter_is_named() {
        let known = ["page[size]", "filter[name][eq]", "filter[name][contains]"];
        let text = problem_text(query(&[("size", "2")]).only(&known).expect_err("refused"));
        assert!(text.starts_with("size: is not a query parameter"), "{text}");
        let text = problem_text(
            query(&[("filter[name][lt]", "a")])
                .only(&known)
                .expect_err("refused"),
        );
        assert!(
            text.contains("unknown filter operator \"lt\"") && text.contains("eq, contains"),
            "{text}"
        );
        let text = problem_text(
            query(&[("filter[colour][eq]", "a")])
                .only(&known)
                .expect_err("refused"),
        );
        assert!(text.contains("unknown filter field \"colour\""), "{text}");
        query(&[("filter[name][eq]", "a")])
            .only(&known)
            .expect("accepted");
    }

    #[test]
    fn numbered_pages_slice_and_count() {
        let page = NumberedPage::from_query(&query(&[("page[size]", "2"), ("page[number]", "2")]))
            .expect("accepted");
        let list = page.slice(vec![1, 2, 3, 4, 5]);
        assert_eq!(list.data, vec![3, 4]);
        assert_eq!(list.meta.page.total, 5);
        let beyond = NumberedPage::from_query(&query(&[("page[number]", "9")]))
            .expect("accepted")
            .slice(vec![1]);
        assert!(beyond.data.is_empty());
        assert!(NumberedPage::from_query(&query(&[("page[number]", "0")])).is_err());
        assert!(NumberedPage::from_query(&query(&[("page[size]", "1001")])).is_err());
    }

    #[test]
    fn kong_pages_link_the_next_page() {
        let page = KongPage::from_query(&query(&[("size", "2")])).expect("accepted");
        let list = page.finish(vec!["a", "b", "c"], "/services", "tags=x", |s| {
            s.to_string()
        });
        assert_eq!(list.data, vec!["a", "b"]);
        let offset = list.offset.clone().expect("accepted");
        assert_eq!(
            list.next.as_deref(),
            Some(format!("/services?offset={offset}&size=2&tags=x").as_str())
        );
        let again = KongPage::from_query(&query(&[("offset", &offset)])).expect("accepted");
        assert_eq!(again.after.as_deref(), Some("b"));
        let last = page.finish(vec!["a"], "/services", "", |s| s.to_string());
        assert!(last.offset.is_none() && last.next.is_none());
    }

    #[test]
    fn cursor_pages_carry_the_total() {
        let page = CursorPage::from_query(&query(&[("page[size]", "1")])).expect("accepted");
        let list = page.finish(vec!["a", "b"], 7, |s| s.to_string());
        assert_eq!(list.page.total, 7);
        let next = list.page.next.expect("accepted");
        let again = CursorPage::from_query(&query(&[("page[after]", &next)])).expect("accepted");
        assert_eq!(again.after.as_deref(), Some("a"));
    }
}
