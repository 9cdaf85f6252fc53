//! Operations of `/v2/control-planes/{id}/core-entities/…`: Kong's Admin API entities, their
//! nested collections, the cross-consumer `key-auths` list and plugin schemas. Every one
//! answers 401 in Kong's `{message, status}` shape (see `api::entities::unauthorized`).

use fleetgate_config::{
    CaCertificate, Certificate, Consumer, Entity, KeyAuthCredential, Plugin, Route, Service, Sni,
    Target, Upstream,
};
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use super::{add_schema, any_object, kong_list, schema_ref, Op};
use crate::api::entities::{
    collection_path, GatewayUnauthorizedError, Nesting, CONSUMER_KEY_AUTH, CONSUMER_PLUGINS,
    KEY_AUTHS, MAX_FILTER_TAGS, ROUTE_PLUGINS, SERVICE_PLUGINS, SERVICE_ROUTES, UPSTREAM_TARGETS,
};

const TAG: &str = "core-entities";

/// A core-entity list: Kong's paging and tags filter.
fn kong_listed(op: Op) -> Op {
    op.kong_paged().query(
        "tags",
        &format!(
            "Only entities with every tag of `a,b`, or any tag of `a/b` (at most \
             {MAX_FILTER_TAGS}; no mixing)."
        ),
    )
}

/// List, create, get, upsert, update and delete of one collection at `base`. `suffix` tells
/// nested collections' operation ids apart (`_of_service`).
fn entity_ops<E: Entity + ToSchema>(base: &str, suffix: &str, ops: &mut Vec<Op>) {
    let kind = E::KIND;
    let name = E::name();
    let schema = name.as_ref();
    let item = format!("{base}/{{entity}}");
    let one = kind.singular().replace(['-', ' '], "_");
    let many = kind.collection();
    let entity = || Some(schema_ref(schema));
    let of = suffix.replace('_', " ");
    ops.push(
        kong_listed(Op::new(
            HttpMethod::Get,
            base,
            &format!("list_{many}{suffix}"),
            &format!("List {many}{of}"),
            TAG,
        ))
        .ok(
            "200",
            "A page of entities",
            Some(kong_list(schema_ref(schema))),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Post,
            base,
            &format!("create_{one}{suffix}"),
            &format!("Create a {}{of}", kind.singular()),
            TAG,
        )
        .json_body(schema_ref(schema))
        .ok("201", "Created", entity()),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            &item,
            &format!("get_{one}{suffix}"),
            &format!("Get a {}{of} by id or name", kind.singular()),
            TAG,
        )
        .ok("200", "The entity", entity()),
    );
    ops.push(
        Op::new(
            HttpMethod::Put,
            &item,
            &format!("upsert_{one}{suffix}"),
            &format!("Create or replace a {}{of}", kind.singular()),
            TAG,
        )
        .json_body(schema_ref(schema))
        .ok("200", "Created or replaced", entity()),
    );
    ops.push(
        Op::new(
            HttpMethod::Patch,
            &item,
            &format!("update_{one}{suffix}"),
            &format!("Change fields of a {}{of}", kind.singular()),
            TAG,
        )
        .json_body(any_object())
        .ok("200", "Updated", entity()),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            &item,
            &format!("delete_{one}{suffix}"),
            &format!("Delete a {}{of}", kind.singular()),
            TAG,
        )
        .ok("204", "Deleted, or there was no such entity", None),
    );
}

fn top_level<E: Entity + ToSchema>(ops: &mut Vec<Op>) {
    entity_ops::<E>(&collection_path(E::KIND), "", ops);
}

fn nested<E: Entity + ToSchema>(nest: Nesting, ops: &mut Vec<Op>) {
    entity_ops::<E>(
        &nest.path(),
        &format!("_of_{}", nest.parent.singular()),
        ops,
    );
}

/// Every core-entity operation.
pub(super) fn core_entity_ops(ops: &mut Vec<Op>) {
    let mut own = vec![Op::new(
        HttpMethod::Get,
        "/v2/control-planes/{control_plane_id}/core-entities/schemas/plugins/{plugin_name}",
        "get_plugin_schema",
        "The config schema of a plugin",
        TAG,
    )
    .ok("200", "The schema", Some(any_object()))];
    top_level::<Service>(&mut own);
    top_level::<Route>(&mut own);
    top_level::<Consumer>(&mut own);
    top_level::<Plugin>(&mut own);
    top_level::<Upstream>(&mut own);
    top_level::<Target>(&mut own);
    top_level::<Certificate>(&mut own);
    top_level::<Sni>(&mut own);
    top_level::<CaCertificate>(&mut own);
    nested::<Route>(SERVICE_ROUTES, &mut own);
    nested::<Plugin>(SERVICE_PLUGINS, &mut own);
    nested::<Plugin>(ROUTE_PLUGINS, &mut own);
    nested::<Plugin>(CONSUMER_PLUGINS, &mut own);
    nested::<KeyAuthCredential>(CONSUMER_KEY_AUTH, &mut own);
    nested::<Target>(UPSTREAM_TARGETS, &mut own);
    let key_auth = "KeyAuthCredential";
    own.push(
        kong_listed(Op::new(
            HttpMethod::Get,
            KEY_AUTHS,
            "list_key_auths",
            "List key-auth credentials of every consumer",
            TAG,
        ))
        .ok(
            "200",
            "A page of credentials",
            Some(kong_list(schema_ref(key_auth))),
        ),
    );
    own.push(
        Op::new(
            HttpMethod::Get,
            &format!("{KEY_AUTHS}/{{entity}}"),
            "get_key_auth",
            "Get a key-auth credential by id",
            TAG,
        )
        .ok("200", "The credential", Some(schema_ref(key_auth))),
    );
    ops.extend(own.into_iter().map(Op::kong_unauthorized));
}

/// The schemas the core-entity operations refer to.
pub(super) fn add_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add_schema::<Service>(schemas);
    add_schema::<Route>(schemas);
    add_schema::<Consumer>(schemas);
    add_schema::<KeyAuthCredential>(schemas);
    add_schema::<Plugin>(schemas);
    add_schema::<Upstream>(schemas);
    add_schema::<Target>(schemas);
    add_schema::<Certificate>(schemas);
    add_schema::<Sni>(schemas);
    add_schema::<CaCertificate>(schemas);
    add_schema::<GatewayUnauthorizedError>(schemas);
}
