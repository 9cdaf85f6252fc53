//! Operations of `/v2/control-planes/{id}/dp-join-tokens` (kept apart: the main file is long
//! enough).

use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{ContentBuilder, RefOr, Required, Schema};

use super::{add_schema, schema_ref, Op};
use crate::api::join_tokens::{CreateJoinToken, CreatedJoinToken, COLLECTION};

pub(super) fn join_token_ops(ops: &mut Vec<Op>) {
    let mut op = Op::new(
        HttpMethod::Post,
        COLLECTION,
        "create_dp_join_token",
        "Mint a single-use join token a node redeems for its cluster certificate (the token is shown only in this answer)",
        "dp-client-certificates",
    )
    .ok(
        "201",
        "The token and its expiry",
        Some(schema_ref("CreatedJoinToken")),
    );
    // The body is optional: without one the token lives 900 seconds.
    op.builder = op.builder.request_body(Some(
        RequestBodyBuilder::new()
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(schema_ref("CreateJoinToken")))
                    .build(),
            )
            .required(Some(Required::False))
            .build(),
    ));
    ops.push(op);
}

pub(super) fn add_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add_schema::<CreateJoinToken>(schemas);
    add_schema::<CreatedJoinToken>(schemas);
}
