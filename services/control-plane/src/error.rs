//! One error type for the HTTP API, rendered as RFC 9457 `application/problem+json`.

use axum::response::{IntoResponse, Response};
use fleetgate_config::FieldError;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

use crate::store::StoreError;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything an API handler can fail with. Internal errors are logged and answered with a
/// generic 500 that never shows their cause.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a list of invalid fields.
    #[error("{detail}")]
    Invalid {
        /// Summary.
        detail: String,
        /// One entry per invalid field.
        invalid_parameters: Vec<FieldError>,
        /// Where the fields are: `body` (the default) or `query`. (Not named `source`:
        /// thiserror would take that for the underlying error.)
        location: ParameterSource,
    },
    /// 400 without field detail (e.g. unreadable JSON).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: absent, or belonging to another organisation.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: uniqueness or reference conflict.
    #[error("{detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
        /// The conflicting field, when one does.
        field: Option<String>,
    },
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422: well-formed, but this target cannot do it (e.g. transit gateways on the local
    /// provider).
    #[error("{0}")]
    Unprocessable(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: not ready.
    #[error("{0}")]
    Unavailable(String),
    /// 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 naming a single field.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let field = field.into();
        let reason = reason.into();
        ApiError::Invalid {
            detail: format!("{field}: {reason}"),
            invalid_parameters: vec![FieldError { field, reason }],
            location: ParameterSource::Body,
        }
    }

    /// A 400 naming a query parameter.
    pub fn query(parameter: impl Into<String>, reason: impl Into<String>) -> Self {
        let field = parameter.into();
        let reason = reason.into();
        ApiError::Invalid {
            detail: format!("query parameter {field}: {reason}"),
            invalid_parameters: vec![FieldError { field, reason }],
            location: ParameterSource::Query,
        }
    }

    /// A 400 from a list of field errors.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.reason),
            many => format!("{} fields are invalid", many.len()),
        };
        ApiError::Invalid {
            detail,
            invalid_parameters: errors,
            location: ParameterSource::Body,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} was not found")),
            StoreError::Conflict { message, field } => ApiError::Conflict {
                detail: message,
                field,
            },
            StoreError::InvalidReference { field, reason } => ApiError::field(field, reason),
            StoreError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// Where an invalid parameter was found, as Konnect's `invalid_parameters[].source` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParameterSource {
    /// A field of the request body.
    Body,
    /// A query parameter.
    Query,
}

/// One invalid parameter of a problem, in Konnect's shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvalidParameter {
    /// JSON path of the field, or the query parameter's name.
    pub field: String,
    /// Konnect's rule name (`required`, `enum`, ...) when one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Where the parameter is.
    pub source: ParameterSource,
    /// What is wrong with it.
    pub reason: String,
}

/// The problem document (RFC 9457) with Konnect's `instance` and `invalid_parameters`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// This occurrence (`fleetgate:trace:<id>`), the id the server's log shows with it.
    pub instance: String,
    /// Field-level errors for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_parameters: Vec<InvalidParameter>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let instance = format!("fleetgate:trace:{}", uuid::Uuid::new_v4().simple());
        let detail = match &self {
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), %instance, "request failed");
                "an internal error occurred; it has been logged".to_string()
            }
            other => other.to_string(),
        };
        let (invalid_parameters, source) = match self {
            ApiError::Invalid {
                invalid_parameters,
                location,
                ..
            } => (invalid_parameters, location),
            ApiError::Conflict {
                field: Some(field),
                detail,
            } => (
                vec![FieldError {
                    field,
                    reason: detail,
                }],
                ParameterSource::Body,
            ),
            _ => (Vec::new(), ParameterSource::Body),
        };
        let invalid_parameters = invalid_parameters
            .into_iter()
            .map(|e| InvalidParameter {
                rule: rule_of(&e.reason),
                field: e.field,
                source,
                reason: e.reason,
            })
            .collect();
        let problem = Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            instance,
            invalid_parameters,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Konnect's rule name for the common reasons, so clients that switch on `rule` can.
fn rule_of(reason: &str) -> Option<String> {
    let rule = if reason.starts_with("missing field") || reason.contains("is required") {
        "required"
    } else if reason.starts_with("unknown variant") || reason.contains("must be one of") {
        "enum"
    } else if reason.starts_with("invalid type") {
        "type"
    } else {
        return None;
    };
    Some(rule.to_string())
}

/// Result of API handlers.
pub type ApiResult<T> = Result<T, ApiError>;
