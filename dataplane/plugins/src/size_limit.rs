//! `request-size-limiting` (Kong priority 951): refuses bodies above a size, following
//! Kong's `kong/plugins/request-size-limiting/handler.lua`. Only `Content-Length` is checked
//! here; bodies without it are limited by the proxy while streaming (`max_body_bytes`).

use fleetgate_config::plugins::{RequestSizeLimitingConfig, SizeUnit};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode};

use crate::response::{json_error, Refusal};

/// A compiled request-size-limiting instance.
#[derive(Debug)]
pub(crate) struct SizeLimitPlugin {
    allowed_bytes: u64,
    require_content_length: bool,
}

impl SizeLimitPlugin {
    /// Compiles a config (Kong's units: a kilobyte is 2^10 bytes, a megabyte 2^20).
    pub fn new(conf: &RequestSizeLimitingConfig) -> Self {
        let unit: u64 = match conf.size_unit {
            SizeUnit::Bytes => 1,
            SizeUnit::Kilobytes => 1 << 10,
            SizeUnit::Megabytes => 1 << 20,
        };
        Self {
            allowed_bytes: u64::from(conf.allowed_payload_size) * unit,
            require_content_length: conf.require_content_length,
        }
    }

    /// The body limit for the proxy, or the response refusing the request.
    pub fn access(&self, headers: &HeaderMap) -> Result<u64, Refusal> {
        let length = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match length {
            Some(length) if length > self.allowed_bytes => {
                // Kong answers 417 to a client waiting for `100 Continue`, so it does not
                // send the body at all.
                let expects_continue = headers
                    .get(EXPECT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
                let status = if expects_continue {
                    StatusCode::EXPECTATION_FAILED
                } else {
                    StatusCode::PAYLOAD_TOO_LARGE
                };
                Err(Box::new(json_error(status, "Request size limit exceeded")))
            }
            Some(_) => Ok(self.allowed_bytes),
            None if self.require_content_length && !is_chunked(headers) => {
                Err(Box::new(json_error(
                    StatusCode::LENGTH_REQUIRED,
                    "A valid Content-Length header is required",
                )))
            }
            None => Ok(self.allowed_bytes),
        }
    }
}

/// Whether the body is chunked (the last transfer coding is `chunked`).
fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn plugin(size: u32, unit: SizeUnit, require: bool) -> SizeLimitPlugin {
        SizeLimitPlugin::new(&RequestSizeLimitingConfig {
            allowed_payload_size: size,
            require_content_length: require,
            size_unit: unit,
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    fn status(r: Result<u64, Refusal>) -> Result<u64, u16> {
        r.map_err(|resp| resp.status().as_u16())
    }

    #[test]
    fn units_follow_kong() {
        assert_eq!(
            plugin(1, SizeUnit::Megabytes, false).allowed_bytes,
            1_048_576
        );
        assert_eq!(plugin(2, SizeUnit::Kilobytes, false).allowed_bytes, 2048);
        assert_eq!(plugin(7, SizeUnit::Bytes, false).allowed_bytes, 7);
        assert_eq!(
            plugin(u32::MAX, SizeUnit::Megabytes, false).allowed_bytes,
            u64::from(u32::MAX) << 20
        );
    }

    #[test]
    fn content_length_is_checked() {
        let p = plugin(10, SizeUnit::Bytes, false);
        assert_eq!(
            status(p.access(&headers(&[("content-length", "10")]))),
            Ok(10)
        );
        assert_eq!(
            status(p.access(&headers(&[("content-length", "11")]))),
            Err(413)
        );
        assert_eq!(
            status(p.access(&headers(&[
                ("content-length", "11"),
                ("expect", "100-Continue")
            ]))),
            Err(417)
        );
        // No length: the proxy limits the streamed body.
        assert_eq!(status(p.access(&headers(&[]))), Ok(10));
        let body = p.access(&headers(&[("content-length", "99")]));
        let body = body.err().map(|r| r.into_body());
        assert_eq!(
            body.as_deref(),
            Some(&br#"{"message":"Request size limit exceeded"}"#[..])
        );
    }

    #[test]
    fn content_length_can_be_required() {
        let p = plugin(10, SizeUnit::Bytes, true);
        assert_eq!(status(p.access(&headers(&[]))), Err(411));
        assert_eq!(
            status(p.access(&headers(&[("content-length", "x")]))),
            Err(411)
        );
        assert_eq!(
            status(p.access(&headers(&[("transfer-encoding", "gzip, chunked")]))),
            Ok(10)
        );
        assert_eq!(
            status(p.access(&headers(&[("content-length", "3")]))),
            Ok(10)
        );
    }
}
