//! key-auth through the engine: key sources, failures, identity headers, anonymous,
//! hide_credentials and preflight handling.

mod common;

use common::*;
use http::Method;
use serde_json::json;

fn key_auth(config: serde_json::Value) -> fleetgate_plugins::PluginSet {
    build(vec![plugin(1, "key-auth", config)])
}

#[test]
fn missing_key_is_401_with_challenge() {
    let set = key_auth(json!({}));
    let (r, ctx) = answered(Req::get().run(&set));
    assert_eq!(r.status(), 401);
    assert_eq!(body(&r), r#"{"message":"No API key found in request"}"#);
    assert_eq!(
        header(r.headers(), "www-authenticate"),
        Some(r#"Key realm="kong""#)
    );
    assert_eq!(
        header(r.headers(), "content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(ctx.consumer_id, None);
    // An empty key counts as missing.
    let (r, _) = answered(Req::get().key("").run(&set));
    assert_eq!(body(&r), r#"{"message":"No API key found in request"}"#);
}

#[test]
fn unknown_key_is_401_invalid() {
    let set = key_auth(json!({"realm": "orders"}));
    let (r, _) = answered(Req::get().key("nope").run(&set));
    assert_eq!(r.status(), 401);
    assert_eq!(
        body(&r),
        r#"{"message":"Invalid authentication credentials"}"#
    );
    assert_eq!(
        header(r.headers(), "www-authenticate"),
        Some(r#"Key realm="orders""#)
    );
}

#[test]
fn duplicate_keys_are_refused() {
    let set = key_auth(json!({}));
    let (r, _) = answered(Req::get().key("alice-key").key("bob-key").run(&set));
    assert_eq!(body(&r), r#"{"message":"Duplicate API key found"}"#);
    let (r, _) = answered(Req::get().query("apikey=a&apikey=b").run(&set));
    assert_eq!(body(&r), r#"{"message":"Duplicate API key found"}"#);
}

#[test]
fn valid_header_key_identifies_the_consumer() {
    let set = key_auth(json!({}));
    let mut req = Req::get()
        .key("alice-key")
        // Spoofed identity headers must not reach the upstream.
        .header("x-anonymous-consumer", "true")
        .header("x-consumer-username", "mallory");
    let ctx = proceed(req.run(&set));
    assert_eq!(ctx.consumer_id, Some(ALICE));
    assert_eq!(ctx.credential_id, Some(ALICE_CRED));
    let h = &req.headers;
    assert_eq!(header(h, "x-consumer-id"), Some(ALICE.to_string().as_str()));
    assert_eq!(header(h, "x-consumer-username"), Some("alice"));
    assert_eq!(header(h, "x-consumer-custom-id"), Some("A-1"));
    assert_eq!(
        header(h, "x-credential-identifier"),
        Some(ALICE_CRED.to_string().as_str())
    );
    assert_eq!(header(h, "x-anonymous-consumer"), None);
    // Without hide_credentials the key stays.
    assert_eq!(header(h, "apikey"), Some("alice-key"));

    // Bob has no custom_id: a client-sent one is cleared. His key has a ttl but no expiry
    // stamped by a control plane (a local declarative file): it does not expire.
    let mut req = Req::get()
        .key("bob-key")
        .header("x-consumer-custom-id", "fake");
    assert_eq!(proceed(req.run(&set)).consumer_id, Some(BOB));
    assert_eq!(header(&req.headers, "x-consumer-custom-id"), None);
}

#[test]
fn query_key_and_key_names_order() {
    let set = key_auth(json!({"key_names": ["x-key", "token"]}));
    let mut req = Req::get().query("a=1&token=bob-key");
    assert_eq!(proceed(req.run(&set)).consumer_id, Some(BOB));
    // The first name with a value wins, header before query for each name.
    let mut req = Req::get()
        .header("token", "bob-key")
        .query("x-key=alice-key");
    assert_eq!(proceed(req.run(&set)).consumer_id, Some(ALICE));
    // A bare `?x-key` is not a value: the next name is tried.
    let mut req = Req::get().query("x-key&token=alice%2Dkey");
    assert_eq!(proceed(req.run(&set)).consumer_id, Some(ALICE));

    let headers_only = key_auth(json!({"key_in_query": false}));
    let (r, _) = answered(Req::get().query("apikey=alice-key").run(&headers_only));
    assert_eq!(r.status(), 401);
    let query_only = key_auth(json!({"key_in_header": false}));
    let (r, _) = answered(Req::get().key("alice-key").run(&query_only));
    assert_eq!(r.status(), 401);
}

#[test]
fn hide_credentials_strips_the_key() {
    let set = key_auth(json!({"hide_credentials": true}));
    let mut req = Req::get().query("a=1&apikey=alice-key&b=2");
    proceed(req.run(&set));
    assert_eq!(req.query.as_deref(), Some("a=1&b=2"));

    let mut req = Req::get().key("alice-key").query("apikey=other");
    proceed(req.run(&set));
    assert_eq!(header(&req.headers, "apikey"), None);
    // Kong removes the name from both places.
    assert_eq!(req.query, None);

    // Removed even when the key turns out invalid.
    let mut req = Req::get().key("wrong");
    answered(req.run(&set));
    assert_eq!(header(&req.headers, "apikey"), None);
}

#[test]
fn anonymous_consumer_by_username_or_id() {
    for anonymous in ["bob".to_string(), BOB.to_string()] {
        let set = key_auth(json!({ "anonymous": anonymous }));
        let mut req = Req::get().key("wrong");
        let ctx = proceed(req.run(&set));
        assert_eq!(ctx.consumer_id, Some(BOB));
        assert_eq!(ctx.credential_id, None);
        assert_eq!(header(&req.headers, "x-anonymous-consumer"), Some("true"));
        assert_eq!(header(&req.headers, "x-consumer-username"), Some("bob"));
        assert_eq!(header(&req.headers, "x-credential-identifier"), None);
    }
    // A valid key still authenticates normally.
    let set = key_auth(json!({"anonymous": "bob"}));
    let mut req = Req::get().key("alice-key");
    assert_eq!(proceed(req.run(&set)).consumer_id, Some(ALICE));
    assert_eq!(header(&req.headers, "x-anonymous-consumer"), None);
}

#[test]
fn missing_anonymous_consumer_is_500() {
    let set = key_auth(json!({"anonymous": "ghost"}));
    let (r, _) = answered(Req::get().run(&set));
    assert_eq!(r.status(), 500);
    assert_eq!(body(&r), r#"{"message":"An unexpected error occurred"}"#);
}

#[test]
fn run_on_preflight_false_skips_options() {
    let set = key_auth(json!({"run_on_preflight": false}));
    let ctx = proceed(Req::get().method(Method::OPTIONS).run(&set));
    assert_eq!(ctx.consumer_id, None);
    let (r, _) = answered(Req::get().run(&set));
    assert_eq!(r.status(), 401);
    let authenticated = key_auth(json!({}));
    let (r, _) = answered(Req::get().method(Method::OPTIONS).run(&authenticated));
    assert_eq!(r.status(), 401);
}

/// The base config with alice's key expiring `secs` after [`t0`].
fn expiring_key_auth(secs: u64) -> fleetgate_plugins::PluginSet {
    let mut config = base_config();
    let expiry = at(secs)
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs();
    config.keyauth_credentials[0].ttl = Some(60);
    config.keyauth_credentials[0].expires_at = Some(i64::try_from(expiry).expect("fits"));
    config.plugins = vec![plugin(1, "key-auth", json!({}))];
    match fleetgate_plugins::PluginSet::build(
        &config,
        std::sync::Arc::new(fleetgate_plugins::RateLimitCounters::new()),
    ) {
        Ok(set) => set,
        Err(e) => panic!("config must build: {e}"),
    }
}

#[test]
fn a_key_is_admitted_until_it_expires_then_refused_like_an_unknown_one() {
    let set = expiring_key_auth(60);
    // Live: the last second before expiry still authenticates.
    for secs in [0, 59] {
        let ctx = proceed(Req::get().key("alice-key").run_at(&set, at(secs)));
        assert_eq!(ctx.consumer_id, Some(ALICE), "at t0+{secs}");
        assert_eq!(ctx.credential_id, Some(ALICE_CRED));
    }
    // Expired from its second on: the same answer as a key that never existed, checked
    // per request against the clock (no new config needed).
    let unknown = answered(Req::get().key("nope").run_at(&set, at(60))).0;
    for secs in [60, 3600] {
        let (r, ctx) = answered(Req::get().key("alice-key").run_at(&set, at(secs)));
        assert_eq!(r.status(), 401, "at t0+{secs}");
        assert_eq!(body(&r), body(&unknown));
        assert_eq!(
            header(r.headers(), "www-authenticate"),
            Some(r#"Key realm="kong""#)
        );
        assert_eq!(ctx.consumer_id, None);
    }
    // Other keys are untouched.
    let ctx = proceed(Req::get().key("bob-key").run_at(&set, at(3600)));
    assert_eq!(ctx.consumer_id, Some(BOB));
}

#[test]
fn an_expired_key_falls_back_to_the_anonymous_consumer() {
    let mut config = base_config();
    config.keyauth_credentials[0].expires_at = Some(1);
    config.plugins = vec![plugin(1, "key-auth", json!({"anonymous": "bob"}))];
    let set = fleetgate_plugins::PluginSet::build(
        &config,
        std::sync::Arc::new(fleetgate_plugins::RateLimitCounters::new()),
    )
    .expect("builds");
    let ctx = proceed(Req::get().key("alice-key").run_at(&set, t0()));
    assert_eq!(ctx.consumer_id, Some(BOB));
    assert_eq!(ctx.credential_id, None);
}
