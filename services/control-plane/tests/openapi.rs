//! `api-spec/openapi.yaml` is generated from the code; this test fails when they drift.
//! Regenerate with `FLEETGATE_UPDATE_SPEC=1 cargo test -p fleetgate-control-plane --test openapi`.

use std::path::PathBuf;

#[test]
fn checked_in_spec_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../api-spec/openapi.yaml");
    let generated = fleetgate_control_plane::openapi::document_yaml().expect("render spec");
    if std::env::var_os("FLEETGATE_UPDATE_SPEC").is_some() {
        std::fs::write(&path, &generated).expect("write the spec");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "api-spec/openapi.yaml is out of date; regenerate it with \
         FLEETGATE_UPDATE_SPEC=1 cargo test -p fleetgate-control-plane --test openapi"
    );
}

#[test]
fn every_operation_documents_problem_responses() {
    let doc = fleetgate_control_plane::openapi::document_json();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 20);
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let bad = &op["responses"]["400"]["content"]["application/problem+json"];
            assert!(bad.is_object(), "{method} {path} lacks a problem+json 400");
        }
    }
}
