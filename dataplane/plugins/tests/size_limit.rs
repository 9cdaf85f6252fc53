//! request-size-limiting through the engine.

mod common;

use common::*;
use serde_json::json;

#[test]
fn oversized_content_length_is_413() {
    let set = build(vec![plugin(
        1,
        "request-size-limiting",
        json!({"allowed_payload_size": 1, "size_unit": "kilobytes"}),
    )]);
    let (r, _) = answered(Req::get().header("content-length", "1025").run(&set));
    assert_eq!(r.status(), 413);
    assert_eq!(body(&r), r#"{"message":"Request size limit exceeded"}"#);
    let ctx = proceed(Req::get().header("content-length", "1024").run(&set));
    assert_eq!(ctx.max_body_bytes, Some(1024));
    // Streaming bodies are left to the proxy with the limit.
    let ctx = proceed(Req::get().header("transfer-encoding", "chunked").run(&set));
    assert_eq!(ctx.max_body_bytes, Some(1024));
}

#[test]
fn default_limit_is_128_megabytes() {
    let set = build(vec![plugin(1, "request-size-limiting", json!({}))]);
    let ctx = proceed(Req::get().run(&set));
    assert_eq!(ctx.max_body_bytes, Some(128 * 1024 * 1024));
    // Without the plugin there is no limit.
    assert_eq!(proceed(Req::get().run(&build(vec![]))).max_body_bytes, None);
}

#[test]
fn required_content_length_is_411_unless_chunked() {
    let set = build(vec![plugin(
        1,
        "request-size-limiting",
        json!({"require_content_length": true}),
    )]);
    let (r, _) = answered(Req::get().run(&set));
    assert_eq!(r.status(), 411);
    assert_eq!(
        body(&r),
        r#"{"message":"A valid Content-Length header is required"}"#
    );
    proceed(Req::get().header("transfer-encoding", "chunked").run(&set));
    proceed(Req::get().header("content-length", "0").run(&set));
}
