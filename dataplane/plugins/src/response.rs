//! Responses the plugins answer with directly, shaped like Kong's `kong.response.error`.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

/// Kong's content type for its JSON error bodies.
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A response with Kong's `{"message":"..."}` body.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<Bytes> {
    // `Value`'s Display writes valid, escaped JSON and cannot fail, unlike `to_vec`.
    let body = format!(
        "{{\"message\":{}}}",
        serde_json::Value::String(message.to_owned())
    );
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    response
}

/// A refusal from a plugin's access phase. Boxed: refusals are the cold path and a bare
/// `Response` would make every `Result` carrying it large.
pub(crate) type Refusal = Box<Response<Bytes>>;

/// A response without body (Kong's `kong.response.exit(status)`).
pub(crate) fn empty(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_escaped_json() {
        let r = json_error(StatusCode::TOO_MANY_REQUESTS, "say \"hi\"");
        assert_eq!(r.status(), 429);
        assert_eq!(r.body().as_ref(), br#"{"message":"say \"hi\""}"#);
        assert_eq!(r.headers()[CONTENT_TYPE], JSON_UTF8);
        assert!(empty(StatusCode::OK).body().is_empty());
    }
}
