//! parse_entity: Kong defaults, the url shorthand, and errors naming the field.

use fleetgate_config::{
    parse_entity, Certificate, Consumer, Entity, EntityKind, FieldError, KeyAuthCredential,
    OnDelete, Plugin, Protocol, Route, Service, Sni, Target, Upstream, Uuid,
};
use serde_json::{json, Value};

fn fields<E: Entity>(body: Value) -> Vec<String> {
    match parse_entity::<E>(&body) {
        Ok(e) => panic!("{body} parsed: {e:?}"),
        Err(errs) => errs.into_iter().map(|e: FieldError| e.field).collect(),
    }
}

fn ok<E: Entity>(body: Value) -> E {
    parse_entity::<E>(&body).unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

#[test]
fn service_defaults_follow_kong() {
    let s: Service = ok(json!({"host": "example.com"}));
    assert_eq!(s.protocol, Protocol::Http);
    assert_eq!(s.port, 80);
    assert_eq!(s.retries, 5);
    assert_eq!(
        (s.connect_timeout, s.read_timeout, s.write_timeout),
        (60000, 60000, 60000)
    );
    assert!(s.enabled);
    assert!(s.id.is_nil());
    assert_eq!(s.path, None);
    let v = serde_json::to_value(&s).expect("json");
    assert_eq!(v["protocol"], "http");
    assert!(v.get("url").is_none(), "url is input-only");
    assert_eq!(v["name"], Value::Null);
}

#[test]
fn url_shorthand_expands() {
    let s: Service = ok(json!({"url": "http://h"}));
    assert_eq!(
        (s.protocol, s.host.as_str(), s.port, s.path),
        (Protocol::Http, "h", 80, None)
    );
    let s: Service = ok(json!({"url": "https://h"}));
    assert_eq!((s.protocol, s.port), (Protocol::Https, 443));
    let s: Service = ok(json!({"name": "orders", "url": "https://orders.internal:8443/v1/x"}));
    assert_eq!(s.port, 8443);
    assert_eq!(s.path.as_deref(), Some("/v1/x"));
    assert_eq!(s.name.as_deref(), Some("orders"));
    // A null url is "not given".
    let s: Service = ok(json!({"url": null, "host": "x"}));
    assert_eq!(s.host, "x");
}

#[test]
fn url_conflicts_and_bad_urls_name_url() {
    assert_eq!(
        fields::<Service>(json!({"url": "http://a", "host": "b"})),
        vec!["url"]
    );
    assert_eq!(
        fields::<Service>(json!({"url": "http://a", "port": 1})),
        vec!["url"]
    );
    assert_eq!(fields::<Service>(json!({"url": "ftp://a"})), vec!["url"]);
    assert_eq!(fields::<Service>(json!({"url": 12})), vec!["url"]);
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        fields::<Service>(json!({"host": "x", "colour": "blue"})),
        vec!["colour"]
    );
    assert_eq!(fields::<Service>(json!({"host": 12})), vec!["host"]);
    assert_eq!(
        fields::<Service>(json!({"host": "x", "port": 70000})),
        vec!["port"]
    );
    assert_eq!(
        fields::<Service>(json!({"host": "x", "retries": 40000})),
        vec!["retries"]
    );
    assert_eq!(
        fields::<Service>(json!({"host": "x", "connect_timeout": 0})),
        vec!["connect_timeout"]
    );
    assert_eq!(
        fields::<Service>(json!({"host": "x", "protocol": "ftp"})),
        vec!["protocol"]
    );
    assert_eq!(fields::<Service>(json!({})), vec!["host"]);
    assert_eq!(
        fields::<Service>(json!({"host": "x", "path": "v1"})),
        vec!["path"]
    );
    assert_eq!(
        fields::<Service>(json!({"host": "x", "client_certificate": {"idd": 1}})),
        vec!["client_certificate.idd"]
    );
    assert_eq!(
        fields::<Route>(json!({"paths": ["/a", 3]})),
        vec!["paths[1]"]
    );
    assert_eq!(
        fields::<Upstream>(json!({"name": "u", "healthchecks": {"active": {"timeoutz": 1}}})),
        vec!["healthchecks.active.timeoutz"]
    );
    assert_eq!(
        fields::<Upstream>(json!({"name": "u", "healthchecks": {"active": {"type": "ftp"}}})),
        vec!["healthchecks.active.type"]
    );
    let body = json!(["host"]);
    assert_eq!(fields::<Service>(body), vec!["body"]);
}

#[test]
fn timestamps_are_ignored_and_nulls_mean_default() {
    let s: Service = ok(json!({"host": "x", "created_at": 1, "updated_at": 2, "retries": null}));
    assert_eq!(s.retries, 5);
}

#[test]
fn every_problem_is_reported() {
    let errs =
        fields::<Service>(json!({"host": "x", "retries": 40000, "read_timeout": 0, "path": "x"}));
    assert_eq!(errs, vec!["path", "retries", "read_timeout"]);
}

#[test]
fn routes_need_a_matcher_and_valid_paths() {
    let r: Route = ok(json!({"paths": ["/"]}));
    assert_eq!(r.protocols, vec![Protocol::Http, Protocol::Https]);
    assert_eq!(r.https_redirect_status_code, 426);
    assert!(r.strip_path && r.request_buffering && r.response_buffering && !r.preserve_host);
    let errs = parse_entity::<Route>(&json!({"name": "r"})).expect_err("no matcher");
    assert!(errs[0]
        .reason
        .contains("must set one of 'methods', 'hosts', 'headers', 'paths'"));
    assert_eq!(
        fields::<Route>(json!({"paths": ["~/(unclosed"]})),
        vec!["paths[0]"]
    );
    assert_eq!(
        fields::<Route>(json!({"paths": ["nope"]})),
        vec!["paths[0]"]
    );
    ok::<Route>(json!({"paths": ["~/orders/(?<id>\\d+)$"]}));
    assert_eq!(
        fields::<Route>(json!({"hosts": ["a.*.com"]})),
        vec!["hosts[0]"]
    );
    ok::<Route>(json!({"hosts": ["*.example.com", "example.*"]}));
    assert_eq!(
        fields::<Route>(json!({"headers": {"Host": ["x"]}})),
        vec!["headers.Host"]
    );
    assert_eq!(
        fields::<Route>(json!({"paths": ["/"], "https_redirect_status_code": 300})),
        vec!["https_redirect_status_code"]
    );
    assert_eq!(
        fields::<Route>(json!({"paths": ["/"], "path_handling": "v2"})),
        vec!["path_handling"]
    );
}

#[test]
fn references_follow_kong_semantics() {
    let id = Uuid::new_v4();
    let r: Route = ok(json!({"paths": ["/"], "service": {"id": id}}));
    let refs = r.references();
    assert_eq!(
        (
            refs[0].field.as_ref(),
            refs[0].kind,
            refs[0].id,
            refs[0].on_delete
        ),
        ("service", EntityKind::Service, id, OnDelete::Restrict)
    );
    let p: Plugin = ok(json!({"name": "cors", "route": {"id": id}, "consumer": {"id": id}}));
    assert_eq!(p.references().len(), 2);
    assert!(p
        .references()
        .iter()
        .all(|r| r.on_delete == OnDelete::Cascade));
    assert_eq!(p.unique_keys(), vec![("name", format!("cors|-|{id}|{id}"))]);
    let t: Target = ok(json!({"target": "10.0.0.1", "upstream": {"id": id}}));
    assert_eq!(t.target, "10.0.0.1:8000");
    assert_eq!(t.weight, 100);
    assert_eq!(
        t.unique_keys(),
        vec![("target", format!("{id}/10.0.0.1:8000"))]
    );
    let c: Consumer = ok(json!({"username": "u", "custom_id": "c"}));
    assert_eq!(
        c.unique_keys(),
        vec![("username", "u".into()), ("custom_id", "c".into())]
    );
    let s: Service = ok(json!({"host": "x"}));
    assert!(s.unique_keys().is_empty() && s.references().is_empty());
}

#[test]
fn consumers_and_credentials() {
    assert_eq!(fields::<Consumer>(json!({})), vec!["@entity"]);
    let id = Uuid::new_v4();
    let k: KeyAuthCredential = ok(json!({"consumer": {"id": id}}));
    assert_eq!(k.key.len(), 32);
    assert!(k.key.chars().all(|c| c.is_ascii_hexdigit()));
    let k2: KeyAuthCredential = ok(json!({"consumer": {"id": id}, "key": ""}));
    assert_ne!(k.key, k2.key);
    assert_eq!(
        fields::<KeyAuthCredential>(json!({"key": "k"})),
        vec!["consumer"]
    );
    assert!(!format!("{k:?}").contains(&k.key), "the key is redacted");
}

#[test]
fn plugins_fill_defaults_and_name_config_fields() {
    let p: Plugin = ok(json!({"name": "rate-limiting", "config": {"minute": 10}}));
    assert_eq!(p.config["policy"], "local");
    assert_eq!(p.config["fault_tolerant"], true);
    assert_eq!(p.config["sync_rate"], -1.0);
    assert!(p.enabled);
    assert_eq!(
        p.protocols,
        vec![
            Protocol::Grpc,
            Protocol::Grpcs,
            Protocol::Http,
            Protocol::Https
        ]
    );
    assert_eq!(
        fields::<Plugin>(json!({"name": "rate-limiting", "config": {"minute": "lots"}})),
        vec!["config.minute"]
    );
    assert_eq!(
        fields::<Plugin>(json!({"name": "rate-limiting", "config": {"minute": 5, "hour": 1}})),
        vec!["config.hour"]
    );
    assert_eq!(
        fields::<Plugin>(json!({"name": "no-such-plugin"})),
        vec!["name"]
    );
    let errs = parse_entity::<Plugin>(&json!({"name": "x"})).expect_err("unknown");
    assert!(errs[0]
        .reason
        .contains("available: key-auth, rate-limiting, cors, request-size-limiting"));
    let p: Plugin = ok(json!({"name": "key-auth"}));
    assert_eq!(p.config["key_names"], json!(["apikey"]));
    let p: Plugin =
        ok(json!({"name": "request-size-limiting", "config": {"size_unit": "kilobytes"}}));
    assert_eq!(p.config["allowed_payload_size"], 128);
    assert_eq!(
        fields::<Plugin>(json!({"name": "cors", "config": 3})),
        vec!["config"]
    );
}

#[test]
fn upstreams_targets_certificates_and_snis() {
    let u: Upstream = ok(json!({"name": "backend"}));
    assert_eq!(u.slots, 10000);
    assert_eq!(u.hash_on, "none");
    assert_eq!(u.hash_on_cookie_path.as_deref(), Some("/"));
    assert_eq!(
        u.healthchecks.active.unhealthy.http_statuses,
        vec![429, 404, 500, 501, 502, 503, 504, 505]
    );
    assert_eq!(
        u.healthchecks.passive.unhealthy.http_statuses,
        vec![429, 500, 503]
    );
    assert_eq!(u.healthchecks.active.concurrency, 10);
    assert_eq!(
        fields::<Upstream>(json!({"name": "b", "slots": 5})),
        vec!["slots"]
    );
    assert_eq!(
        fields::<Upstream>(json!({"name": "b", "hash_on": "header"})),
        vec!["hash_on_header"]
    );
    assert_eq!(fields::<Upstream>(json!({"name": "b c"})), vec!["name"]);
    let up = Uuid::new_v4();
    let t: Target = ok(json!({"target": "[::1]:81", "upstream": {"id": up}}));
    assert_eq!(t.target, "[::1]:81");
    assert_eq!(
        fields::<Target>(json!({"target": "h:99999", "upstream": {"id": up}})),
        vec!["target"]
    );
    assert_eq!(
        fields::<Target>(json!({"target": "h", "weight": 70000, "upstream": {"id": up}})),
        vec!["weight"]
    );
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n";
    let c: Certificate = ok(json!({"cert": pem, "key": key}));
    assert!(!format!("{c:?}").contains("MHcC"), "the key is redacted");
    assert_eq!(
        fields::<Certificate>(json!({"cert": "nope", "key": pem})),
        vec!["cert", "key"]
    );
    let s: Sni = ok(json!({"name": "*.example.com", "certificate": {"id": up}}));
    assert_eq!(s.unique_keys(), vec![("name", "*.example.com".into())]);
    assert_eq!(
        fields::<Sni>(json!({"name": "example.*", "certificate": {"id": up}})),
        vec!["name"]
    );
}
