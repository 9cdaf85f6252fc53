//! Unit tests of the import internals; end-to-end behaviour is in `tests/declarative.rs`.

use super::*;

#[test]
fn derived_ids_are_stable_and_distinct() {
    let a = derived_id(EntityKind::Service, "name:orders");
    assert_eq!(a, derived_id(EntityKind::Service, "name:orders"));
    assert_ne!(a, derived_id(EntityKind::Route, "name:orders"));
    assert_eq!(a.get_version_num(), 5);
}

#[test]
fn bare_id_strings_and_name_objects_resolve() {
    let text = r#"
_format_version: "3.0"
services:
  - name: s
    id: 0b4c3a39-7c79-4d59-a3a1-6d2f3f3f0001
    host: s.internal
routes:
  - name: a
    paths: [/a]
    service: 0b4c3a39-7c79-4d59-a3a1-6d2f3f3f0001
  - name: b
    paths: [/b]
    service: {name: s}
  - name: c
    paths: [/c]
    service: {id: 0b4c3a39-7c79-4d59-a3a1-6d2f3f3f0001}
"#;
    let cfg = import(text).expect("imports");
    assert!(cfg
        .routes
        .iter()
        .all(|r| r.service.map(|s| s.id.to_string())
            == Some("0b4c3a39-7c79-4d59-a3a1-6d2f3f3f0001".into())));
}

#[test]
fn unknown_names_and_bad_ids_are_reported() {
    let text = "_format_version: '3.0'\nroutes:\n  - paths: [/]\n    service: nope\n";
    let Err(DeclarativeError::Invalid(errs)) = import(text) else {
        panic!("expected Invalid")
    };
    assert_eq!(errs[0].field, "routes[0].service");
    let text = "_format_version: '3.0'\nservices:\n  - host: x\n    id: 12\n";
    let Err(DeclarativeError::Invalid(errs)) = import(text) else {
        panic!("expected Invalid")
    };
    assert_eq!(errs[0].field, "services[0].id");
}

#[test]
fn anchors_and_merge_keys_expand_like_kong() {
    let text = r#"
_format_version: "3.0"
x-defaults: &defaults
  host: shared.internal
  retries: 2
services:
  - name: a
    <<: *defaults
  - name: b
    port: 81
    <<: *defaults
"#
    .replace("x-defaults: &defaults", "_comment: &defaults");
    let config = import(&text).expect("merge keys expand");
    assert_eq!(config.services.len(), 2);
    assert!(config
        .services
        .iter()
        .all(|s| s.host == "shared.internal" && s.retries == 2));
    // Anchors without merge keys take the direct path.
    let aliased = "_format_version: \"3.0\"\nservices:\n  - name: a\n    host: &h one.internal\n  - name: b\n    host: *h\n";
    let config = import(aliased).expect("aliases resolve");
    assert!(config.services.iter().all(|s| s.host == "one.internal"));
}
