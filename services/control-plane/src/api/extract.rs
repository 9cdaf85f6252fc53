//! Request extractors whose every failure is a problem+json answer naming what is wrong.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use fleetgate_config::FieldError;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::ApiError;

/// Default page size when `page[size]` is absent.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: i64 = 1000;

/// A JSON request body, parsed into a `serde_json::Value`.
#[derive(Debug)]
pub struct JsonBody(pub serde_json::Value);

/// Reads the body bytes, turning axum's rejections (too large, broken stream) into problems.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is too large".into())
        } else {
            ApiError::BadRequest(format!("could not read the request body: {rejection}"))
        }
    })
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let bytes = body_bytes(req, state).await?;
        if let Some(ct) = &content_type {
            if ct != "application/json" && !ct.ends_with("+json") {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "expected a JSON body (Content-Type: application/json), got {ct:?}"
                )));
            }
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(
                "the request body is empty; send a JSON object".into(),
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        })?;
        if let Some(field) = find_nul(&value, String::new()) {
            return Err(ApiError::field(
                field,
                "must not contain the NUL character (\\u0000)",
            ));
        }
        Ok(JsonBody(value))
    }
}

/// The path of the first string (or key) containing NUL: no database stores it, so it is
/// refused up front rather than failing deep inside a query.
fn find_nul(value: &serde_json::Value, path: String) -> Option<String> {
    let here = || {
        if path.is_empty() {
            "body".to_string()
        } else {
            path.clone()
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(here()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, format!("{}[{i}]", here()))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(child)
            } else {
                find_nul(v, child)
            }
        }),
        _ => None,
    }
}

/// Whether a request path or query carries an encoded NUL byte.
fn has_encoded_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// Deserialises a typed body, naming the offending field on failure.
pub fn parse_body<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::fields(vec![FieldError {
            field,
            reason: err.into_inner().to_string(),
        }])
    })
}

/// Query parameters as a map (the last value wins for repeated keys).
#[derive(Debug, Default)]
pub struct QueryParams(pub BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        if has_encoded_nul(query) {
            return Err(ApiError::BadRequest(
                "query parameters must not contain the NUL character".into(),
            ));
        }
        Ok(QueryParams(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

/// Parses an id path segment; a malformed id can name nothing, so it is "not found".
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound(format!("{what} {raw:?} was not found")))
}

/// Path parameters; a segment that cannot be decoded is a 400 problem, not axum's plain text.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if has_encoded_nul(parts.uri.path()) {
            return Err(ApiError::BadRequest(
                "the path must not contain the NUL character".into(),
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid path: {e}")))
    }
}
