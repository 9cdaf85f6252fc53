//! Kong declarative format: a real kong.yml imports as-is, export/re-import keeps the hash,
//! and bad input names the line or the field.

use fleetgate_config::declarative::{export_value, export_yaml, import, DeclarativeError};
use fleetgate_config::{FieldError, Protocol};

const KONG_YML: &str = include_str!("fixtures/kong.yml");

fn invalid(text: &str) -> Vec<FieldError> {
    match import(text) {
        Err(DeclarativeError::Invalid(errs)) => errs,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn invalid_fields(text: &str) -> Vec<String> {
    invalid(text).into_iter().map(|e| e.field).collect()
}

#[test]
fn a_real_kong_yml_imports_as_is() {
    let cfg = import(KONG_YML).expect("imports");
    assert_eq!(cfg.services.len(), 3);
    assert_eq!(cfg.routes.len(), 4);
    assert_eq!(cfg.consumers.len(), 2);
    assert_eq!(cfg.keyauth_credentials.len(), 3);
    assert_eq!(cfg.plugins.len(), 6);
    assert_eq!(cfg.upstreams.len(), 1);
    assert_eq!(cfg.targets.len(), 2);
    assert_eq!(cfg.certificates.len(), 1);
    assert_eq!(cfg.snis.len(), 2);
    cfg.validate().expect("valid as a whole");

    let orders = cfg
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some("orders"))
        .expect("orders");
    assert_eq!(
        (orders.host.as_str(), orders.port, orders.path.as_deref()),
        ("orders.internal", 8080, Some("/v1"))
    );
    assert_eq!(
        (orders.retries, orders.connect_timeout, orders.read_timeout),
        (3, 5000, 60000)
    );
    let secure = cfg
        .services
        .iter()
        .find(|s| s.name.as_deref() == Some("secure"))
        .expect("secure");
    assert_eq!((secure.protocol, secure.port), (Protocol::Https, 443));
    let api = cfg
        .routes
        .iter()
        .find(|r| r.name.as_deref() == Some("orders-api"))
        .expect("route");
    assert_eq!(api.service.map(|s| s.id), Some(orders.id));
    assert_eq!(
        api.methods,
        Some(vec!["GET".to_string(), "POST".to_string()])
    );
    let catalog_route = cfg
        .routes
        .iter()
        .find(|r| r.name.as_deref() == Some("catalog"))
        .expect("catalog");
    let cors = cfg
        .plugins
        .iter()
        .find(|p| p.name == "cors" && p.route.map(|r| r.id) == Some(catalog_route.id))
        .expect("cors by route name");
    assert_eq!(cors.config["credentials"], true);
    let global = cfg
        .plugins
        .iter()
        .find(|p| p.name == "rate-limiting" && p.consumer.is_none())
        .expect("global rate limit");
    assert_eq!(global.config["minute"], 60.0);
    assert_eq!(global.config["error_code"], 429);
    assert!(cfg
        .targets
        .iter()
        .any(|t| t.target == "catalog-2.internal:8000"));
    let up = &cfg.upstreams[0];
    assert_eq!(up.healthchecks.passive.unhealthy.http_failures, 3);
    assert_eq!(up.healthchecks.active.healthy.interval, 5.0);
    assert_eq!(up.healthchecks.active.healthy.http_statuses, vec![200, 302]);
    assert!(cfg
        .snis
        .iter()
        .all(|s| s.certificate.map(|c| c.id) == Some(cfg.certificates[0].id)));
    assert!(cfg.keyauth_credentials.iter().all(|k| k.key.len() >= 14));
}

#[test]
fn importing_twice_gives_the_same_hash() {
    let a = import(KONG_YML).expect("imports");
    let b = import(KONG_YML).expect("imports");
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a, b);
}

#[test]
fn export_and_reimport_keep_the_hash() {
    let cfg = import(KONG_YML).expect("imports");
    let yaml = export_yaml(&cfg);
    assert!(yaml.contains("_format_version"));
    let again = import(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(again.hash(), cfg.hash());
    assert_eq!(again, cfg);
    // JSON is YAML: the JSON export re-imports too.
    let json = export_value(&cfg).to_string();
    assert_eq!(import(&json).expect("imports").hash(), cfg.hash());
    // And exporting the re-import gives the same document.
    assert_eq!(export_yaml(&again), yaml);
}

#[test]
fn export_nests_children_and_names_references() {
    let cfg = import(KONG_YML).expect("imports");
    let doc = export_value(&cfg);
    assert_eq!(doc["_format_version"], "3.0");
    let services = doc["services"].as_array().expect("services");
    let orders = services
        .iter()
        .find(|s| s["name"] == "orders")
        .expect("orders");
    assert_eq!(orders["routes"].as_array().map(Vec::len), Some(2));
    assert!(orders["routes"][0].get("service").is_none());
    assert_eq!(orders["plugins"][0]["name"], "key-auth");
    assert!(doc.get("routes").is_none(), "every route is nested");
    assert!(doc.get("targets").is_none() && doc.get("snis").is_none());
    let globals = doc["plugins"].as_array().expect("plugins");
    // The global rate limit plus the plugin scoped to a service and a consumer.
    assert_eq!(globals.len(), 2);
    let two_scopes = globals
        .iter()
        .find(|p| p["name"] == "request-size-limiting")
        .expect("rsl");
    assert_eq!(two_scopes["service"], "catalog");
    assert_eq!(two_scopes["consumer"], "alice");
    assert_eq!(
        doc["certificates"][0]["snis"].as_array().map(Vec::len),
        Some(2)
    );
    let consumers = doc["consumers"].as_array().expect("consumers");
    let bob = consumers
        .iter()
        .find(|c| c["username"] == "bob")
        .expect("bob");
    assert_eq!(bob["keyauth_credentials"].as_array().map(Vec::len), Some(2));
    assert_eq!(bob["plugins"][0]["name"], "rate-limiting");
}

#[test]
fn syntax_errors_carry_the_line() {
    let text = "_format_version: \"3.0\"\nservices:\n  - name: a\n    host: [unclosed\n";
    match import(text) {
        Err(DeclarativeError::Syntax {
            line,
            column,
            message,
        }) => {
            assert!(line >= 4, "line {line}: {message}");
            assert!(column > 0);
        }
        other => panic!("expected Syntax, got {other:?}"),
    }
    let err = import("a: b: c").expect_err("bad yaml");
    assert!(err.to_string().starts_with("line 1, column"), "{err}");
}

#[test]
fn nested_unknown_fields_are_named_by_path() {
    let text = KONG_YML.replace("regex_priority: 10", "regex_priorityz: 10");
    assert_eq!(
        invalid_fields(&text),
        vec!["services[0].routes[1].regex_priorityz"]
    );
    let errs = invalid(&KONG_YML.replace("strip_path: true", "strip_pathz: true"));
    assert_eq!(errs[0].field, "services[0].routes[0].strip_pathz");
    assert_eq!(errs[0].reason, "unknown field");
    let text = KONG_YML.replace("minute: 100", "minute: lots");
    assert_eq!(
        invalid_fields(&text),
        vec!["consumers[1].plugins[0].config.minute"]
    );
    assert_eq!(
        invalid_fields("_format_version: '3.0'\nservicez: []\n"),
        vec!["servicez"]
    );
}

#[test]
fn format_version_is_required_and_checked() {
    assert_eq!(invalid_fields("services: []\n"), vec!["_format_version"]);
    assert_eq!(
        invalid_fields("_format_version: '4.0'\n"),
        vec!["_format_version"]
    );
    for version in ["'1.1'", "'2.1'", "'3.0'", "3.0"] {
        let cfg = import(&format!(
            "_format_version: {version}\n_comment: hi\n_workspace: default\n"
        ))
        .expect("ok");
        assert!(cfg.is_empty());
        assert_eq!(cfg.hash().0, fleetgate_config::EMPTY_CONFIG_HASH);
    }
}

#[test]
fn cross_entity_problems_name_the_written_path() {
    let text =
        "_format_version: '3.0'\nservices:\n  - name: a\n    host: a\n  - name: a\n    host: b\n";
    // Same name, so the same derived id too: both are reported.
    assert!(invalid_fields(text).contains(&"services[1].name".to_string()));
    let text = "_format_version: '3.0'\nservices:\n  - name: a\n    host: a\n    routes:\n      - name: r\n      - name: r\n        paths: [/]\n";
    let fields = invalid_fields(text);
    assert_eq!(fields, vec!["services[0].routes[0].@entity"]);
}
