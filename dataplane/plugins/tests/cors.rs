//! cors through the engine: preflights, response headers, and its place before key-auth.

mod common;

use common::*;
use http::Method;
use serde_json::json;

fn preflight() -> Req {
    Req::get()
        .method(Method::OPTIONS)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
}

#[test]
fn preflight_is_answered_with_defaults() {
    let set = build(vec![plugin(1, "cors", json!({}))]);
    let (r, ctx) = answered(
        preflight()
            .header("access-control-request-headers", "x-a,x-b")
            .run(&set),
    );
    assert_eq!(r.status(), 200);
    assert!(r.body().is_empty());
    let h = r.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(h, "access-control-allow-methods"),
        Some("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
    );
    assert_eq!(header(h, "access-control-allow-headers"), Some("x-a,x-b"));
    assert_eq!(header(h, "access-control-max-age"), None);
    assert_eq!(header(h, "vary"), None);
    // Nothing left for the response phase.
    assert!(response_headers(&set, &ctx).is_empty());
}

#[test]
fn preflight_with_origin_list_and_credentials() {
    let set = build(vec![plugin(
        1,
        "cors",
        json!({
            "origins": ["https://app.example.com", "https://admin.example.com"],
            "credentials": true, "max_age": 600, "headers": ["x-a"],
            "methods": ["GET", "POST"], "private_network": true
        }),
    )]);
    let (r, _) = answered(
        preflight()
            .header("access-control-request-private-network", "true")
            .run(&set),
    );
    let h = r.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(h, "access-control-allow-headers"), Some("x-a"));
    assert_eq!(header(h, "access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(header(h, "access-control-max-age"), Some("600"));
    assert_eq!(
        header(h, "access-control-allow-private-network"),
        Some("true")
    );
    assert_eq!(header(h, "vary"), Some("Origin"));

    // A foreign origin gets no allow-origin.
    let mut foreign = preflight();
    foreign
        .headers
        .insert("origin", "https://evil.io".parse().expect("value"));
    let (r, _) = answered(foreign.run(&set));
    assert_eq!(header(r.headers(), "access-control-allow-origin"), None);
}

#[test]
fn preflight_continue_delegates_to_upstream() {
    let set = build(vec![plugin(1, "cors", json!({"preflight_continue": true}))]);
    let ctx = proceed(preflight().run(&set));
    assert!(response_headers(&set, &ctx).is_empty());
}

#[test]
fn response_phase_adds_origin_and_exposed_headers() {
    let set = build(vec![plugin(
        1,
        "cors",
        json!({"origins": [r"https://.*\.example\.com"], "exposed_headers": ["x-total", "x-page"]}),
    )]);
    let ctx = proceed(
        Req::get()
            .header("origin", "https://app.example.com")
            .run(&set),
    );
    let mut h = http::HeaderMap::new();
    h.insert("vary", "Accept-Encoding".parse().expect("value"));
    set.response(&ctx, &mut h);
    set.response(&ctx, &mut h);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("x-total,x-page")
    );
    let vary: Vec<_> = h.get_all("vary").iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);

    // A non-matching origin: the upstream's allow-origin is removed.
    let ctx = proceed(Req::get().header("origin", "https://evil.io").run(&set));
    let mut h = http::HeaderMap::new();
    h.insert("access-control-allow-origin", "*".parse().expect("value"));
    set.response(&ctx, &mut h);
    assert_eq!(header(&h, "access-control-allow-origin"), None);
}

#[test]
fn cors_runs_before_key_auth() {
    let set = build(vec![
        plugin(1, "cors", json!({})),
        plugin(2, "key-auth", json!({})),
    ]);
    // The preflight is answered without a key.
    let (r, _) = answered(preflight().run(&set));
    assert_eq!(r.status(), 200);
    // A 401 still carries the CORS headers, so browsers can read it.
    let (r, _) = answered(
        Req::get()
            .header("origin", "https://app.example.com")
            .run(&set),
    );
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some("*")
    );
}
