//! Operations of `/v2/control-planes/{id}/nodes` and `/dp-client-certificates`, in Konnect's
//! shapes: lists are `{items, page: {total, next}}`, single resources `{item}`.

use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::{RefOr, Schema};

use super::{add_schema, cursor_list, schema_ref, Op};
use crate::api::dp_certificates::{
    CreateDpCertificate, DpClientCertificate, GeneratedDpCertificate, COLLECTION,
};
use crate::api::nodes::{CompatibilityIssue, CompatibilityState, CompatibilityStatus, Node};
use crate::cluster::nodes::SyncStatus;

/// `{item: <schema>}`: Konnect's wrapper of one node or certificate.
fn item_of(name: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("item", schema_ref(name))
        .required("item")
        .into()
}

pub(super) fn node_ops(ops: &mut Vec<Op>) {
    let collection = "/v2/control-planes/{control_plane_id}/nodes";
    let item = "/v2/control-planes/{control_plane_id}/nodes/{node_id}";
    ops.push(
        Op::new(
            HttpMethod::Get,
            collection,
            "list_nodes",
            "List the data-plane nodes of a control plane",
            "nodes",
        )
        .cursor_paged()
        .ok(
            "200",
            "A page of nodes",
            Some(cursor_list(schema_ref("Node"))),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            item,
            "get_node",
            "A data-plane node",
            "nodes",
        )
        .ok("200", "The node", Some(item_of("Node"))),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            item,
            "delete_node",
            "Forget a disconnected data-plane node (409 while it is connected)",
            "nodes",
        )
        .ok("204", "Deleted", None),
    );
}

pub(super) fn dp_certificate_ops(ops: &mut Vec<Op>) {
    let item = format!("{COLLECTION}/{{certificate_id}}");
    let tag = "dp-client-certificates";
    ops.push(
        Op::new(
            HttpMethod::Get,
            COLLECTION,
            "list_dp_client_certificates",
            "List the certificates data-plane nodes of a control plane authenticate with",
            tag,
        )
        .cursor_paged()
        .ok(
            "200",
            "A page of certificates",
            Some(cursor_list(schema_ref("DpClientCertificate"))),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Post,
            COLLECTION,
            "create_dp_client_certificate",
            "Register a node certificate (pinned_client_certs) or a CA (pki_client_certs)",
            tag,
        )
        .json_body(schema_ref("CreateDpCertificate"))
        .ok("201", "Registered", Some(item_of("DpClientCertificate"))),
    );
    ops.push(
        Op::new(
            HttpMethod::Post,
            &format!("{COLLECTION}/generate"),
            "generate_dp_client_certificate",
            "Issue a node certificate and its private key (the key is shown only in this answer)",
            tag,
        )
        .ok(
            "201",
            "The certificate and its key",
            Some(schema_ref("GeneratedDpCertificate")),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            &item,
            "get_dp_client_certificate",
            "A registered certificate",
            tag,
        )
        .ok(
            "200",
            "The certificate",
            Some(item_of("DpClientCertificate")),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            &item,
            "delete_dp_client_certificate",
            "Unregister a certificate; nodes connected with it are disconnected",
            tag,
        )
        .ok("204", "Deleted", None),
    );
}

pub(super) fn add_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add_schema::<SyncStatus>(schemas);
    add_schema::<CompatibilityState>(schemas);
    add_schema::<CompatibilityIssue>(schemas);
    add_schema::<CompatibilityStatus>(schemas);
    add_schema::<Node>(schemas);
    add_schema::<CreateDpCertificate>(schemas);
    add_schema::<DpClientCertificate>(schemas);
    add_schema::<GeneratedDpCertificate>(schemas);
}
