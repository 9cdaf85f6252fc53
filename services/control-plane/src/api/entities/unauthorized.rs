//! The 401 body of core-entity paths. Konnect's spec gives them Kong's own error shape
//! (`GatewayUnauthorizedError`: `{message, status}` as `application/json`) instead of the
//! problem+json every other path answers, so Kong's SDKs and Terraform provider decode it.

use axum::body::{to_bytes, Body};
use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

/// Kong's 401 body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = GatewayUnauthorizedError)]
pub struct GatewayUnauthorizedError {
    /// What is wrong with the credentials.
    pub message: String,
    /// Always 401.
    pub status: u16,
}

/// Largest problem body read back when rewriting (ours are a few hundred bytes).
const MAX_PROBLEM_BYTES: usize = 64 * 1024;

/// Response mapper for core-entity routers: rewrites a 401 problem into Kong's shape,
/// keeping its detail as the message and every header but the content type and length.
pub async fn kong_unauthorized(response: Response) -> Response {
    if response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = to_bytes(body, MAX_PROBLEM_BYTES)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|problem| problem.get("detail")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "Unauthorized".to_string());
    let body = serde_json::to_vec(&GatewayUnauthorizedError {
        message,
        status: StatusCode::UNAUTHORIZED.as_u16(),
    })
    .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
