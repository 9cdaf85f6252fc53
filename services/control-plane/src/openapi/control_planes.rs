//! Operations and schemas of `/v2/control-planes` (Konnect's control planes API).

use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::{RefOr, Schema};

use super::{add_schema, any_object, numbered_list, schema_ref, Op};
use crate::api::control_planes::{
    AuthType, ControlPlane, ControlPlaneConfig, CreateControlPlane, ProxyUrlInput,
    UpdateControlPlane, COLLECTION, ITEM,
};
use crate::store::ProxyUrl;

/// Konnect's list filters, as documented query parameters.
const FILTERS: [(&str, &str); 15] = [
    (
        "filter[name]",
        "Name equals (short for `filter[name][eq]`).",
    ),
    ("filter[name][eq]", "Name equals."),
    ("filter[name][neq]", "Name differs."),
    (
        "filter[name][contains]",
        "Name contains (ASCII case-insensitive).",
    ),
    ("filter[id]", "Id equals (short for `filter[id][eq]`)."),
    ("filter[id][eq]", "Id equals."),
    ("filter[id][oeq]", "Id is one of these (comma-separated)."),
    (
        "filter[cluster_type]",
        "Cluster type equals (short for `filter[cluster_type][eq]`).",
    ),
    ("filter[cluster_type][eq]", "Cluster type equals."),
    ("filter[cluster_type][neq]", "Cluster type differs."),
    (
        "filter[cluster_type][oeq]",
        "Cluster type is one of these (comma-separated).",
    ),
    (
        "filter[cloud_gateway]",
        "`true`: only control planes usable by cloud gateways; `false`: only the others.",
    ),
    (
        "filter[cloud_gateway][eq]",
        "Same as `filter[cloud_gateway]`.",
    ),
    (
        "labels",
        "`key:value,existCheck`: label `key` equals `value` and label `existCheck` is set \
         (every comma-separated item must hold).",
    ),
    (
        "sort",
        "`created_at` (oldest first, the default) or `-created_at` / `created_at desc` \
         (newest first).",
    ),
];

/// `/v2/control-planes` and `/v2/control-planes/{id}`.
pub(super) fn control_plane_ops(ops: &mut Vec<Op>) {
    let control_plane = || Some(schema_ref("ControlPlane"));
    ops.push(
        Op::new(
            HttpMethod::Get,
            COLLECTION,
            "list_control_planes",
            "List control planes",
            "control-planes",
        )
        .numbered()
        .listed(&FILTERS)
        .ok(
            "200",
            "A page of control planes",
            Some(numbered_list(schema_ref("ControlPlane"))),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Post,
            COLLECTION,
            "create_control_plane",
            "Create a control plane (cluster types: CLUSTER_TYPE_CONTROL_PLANE, \
             CLUSTER_TYPE_HYBRID)",
            "control-planes",
        )
        .json_body(schema_ref("CreateControlPlane"))
        .ok("201", "Created", control_plane()),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            ITEM,
            "get_control_plane",
            "Get a control plane",
            "control-planes",
        )
        .ok("200", "The control plane", control_plane()),
    );
    ops.push(
        Op::new(
            HttpMethod::Patch,
            ITEM,
            "update_control_plane",
            "Change a control plane's name, description, auth type, proxy URLs or labels",
            "control-planes",
        )
        .json_body(schema_ref("UpdateControlPlane"))
        .ok("200", "Updated", control_plane()),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            ITEM,
            "delete_control_plane",
            "Delete a control plane and its config",
            "control-planes",
        )
        .ok("204", "Deleted", None),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            "/v2/control-planes/{control_plane_id}/expected-config-hash",
            "get_expected_config_hash",
            "Hash of the config data planes will receive",
            "control-planes",
        )
        .ok("200", "The expected hash", Some(any_object())),
    );
}

/// The schemas these operations refer to.
pub(super) fn add_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add_schema::<ControlPlane>(schemas);
    add_schema::<ControlPlaneConfig>(schemas);
    add_schema::<CreateControlPlane>(schemas);
    add_schema::<UpdateControlPlane>(schemas);
    add_schema::<AuthType>(schemas);
    add_schema::<ProxyUrl>(schemas);
    add_schema::<ProxyUrlInput>(schemas);
}
