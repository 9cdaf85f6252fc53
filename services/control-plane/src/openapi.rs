//! The OpenAPI document, generated from the code: the request/response types derive their
//! schemas, and the operations are listed here next to the routers they describe. A test
//! keeps `api-spec/openapi.yaml` equal to this output.

mod analytics;
mod cloud_gateways;
mod control_planes;
mod core_entities;
mod join_tokens;
mod links;
mod nodes;
mod portals_billing;

use std::collections::BTreeMap;

use fleetgate_config::FieldError;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItemBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::ToSchema;

use crate::api::declarative::ImportResult;
use crate::api::licenses::{License, PutLicense};
use crate::api::paging::{CursorPageInfo, NumberedMeta};
use crate::api::tokens::{CreateToken, CreatedToken};
use crate::error::Problem;
use crate::store::{Organization, TokenRecord};

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn string_schema() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

/// `{data, meta: {page: {number, size, total}}}`: Konnect's numbered list.
fn numbered_list(item: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("data", ArrayBuilder::new().items(item))
        .required("data")
        .property("meta", schema_ref("NumberedMeta"))
        .required("meta")
        .into()
}

/// `{items, page: {total, next}}`: Konnect's cursor list.
fn cursor_list(item: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("items", ArrayBuilder::new().items(item))
        .required("items")
        .property("page", schema_ref("CursorPageInfo"))
        .required("page")
        .into()
}

/// `{data, offset, next}`: Kong's Admin API list.
fn kong_list(item: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("data", ArrayBuilder::new().items(item))
        .required("data")
        .property(
            "offset",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(
                    "Pass as `offset` for the next page; absent on the last page.",
                )),
        )
        .property(
            "next",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ]))
                .description(Some("Path of the next page; null on the last page.")),
        )
        .required("next")
        .into()
}

fn any_object() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::Object).into()
}

/// One documented operation, built with a few chained calls.
struct Op {
    method: HttpMethod,
    path: String,
    builder: OperationBuilder,
    authenticated: bool,
    /// Problem answers beyond the ones every operation has (e.g. 422).
    extra_problems: Vec<(&'static str, &'static str)>,
    /// The 401 answer is Kong's `{message, status}` (core entities), not a problem.
    kong_unauthorized: bool,
}

impl Op {
    fn new(method: HttpMethod, path: &str, id: &str, summary: &str, tag: &str) -> Self {
        let mut builder = OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .tag(tag);
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                builder = builder.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(string_schema())),
                );
            }
        }
        Op {
            method,
            path: path.to_string(),
            builder,
            authenticated: true,
            extra_problems: Vec::new(),
            kong_unauthorized: false,
        }
    }

    /// Answers 401 in Kong's shape, as Konnect's core-entity operations do.
    fn kong_unauthorized(mut self) -> Self {
        self.kong_unauthorized = true;
        self
    }

    fn problem(mut self, status: &'static str, description: &'static str) -> Self {
        self.extra_problems.push((status, description));
        self
    }

    fn public(mut self) -> Self {
        self.authenticated = false;
        self
    }

    /// A query parameter (string-typed, optional).
    fn query(mut self, name: &str, description: &str) -> Self {
        self.builder = self.builder.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(string_schema())),
        );
        self
    }

    /// Query parameters of a list, in one of the three shapes of `api::paging`.
    fn listed(mut self, params: &[(&str, &str)]) -> Self {
        for (name, description) in params {
            self = self.query(name, description);
        }
        self
    }

    /// Konnect's numbered pages.
    fn numbered(self) -> Self {
        self.listed(&[
            ("page[size]", "Items per page, 1 to 1000 (default 100)."),
            ("page[number]", "The page to return, from 1 (default 1)."),
        ])
    }

    /// Konnect's cursor pages.
    fn cursor_paged(self) -> Self {
        self.listed(&[
            ("page[size]", "Items per page, 1 to 1000 (default 100)."),
            (
                "page[after]",
                "Cursor from `page.next` of the previous page.",
            ),
        ])
    }

    /// Kong's Admin API paging.
    fn kong_paged(self) -> Self {
        self.listed(&[
            ("size", "Items per page, 1 to 1000 (default 100)."),
            ("offset", "`offset` of the previous page."),
        ])
    }

    fn body(mut self, media: &str, schema: RefOr<Schema>) -> Self {
        self.builder = self.builder.request_body(Some(
            RequestBodyBuilder::new()
                .content(media, ContentBuilder::new().schema(Some(schema)).build())
                .required(Some(Required::True))
                .build(),
        ));
        self
    }

    fn json_body(self, schema: RefOr<Schema>) -> Self {
        self.body("application/json", schema)
    }

    fn ok(mut self, status: &str, description: &str, schema: Option<RefOr<Schema>>) -> Self {
        let mut response = ResponseBuilder::new().description(description);
        if let Some(schema) = schema {
            response = response.content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            );
        }
        self.builder = self.builder.response(status, response.build());
        self
    }

    /// A success answer in several media types, the first being the default.
    fn ok_as(mut self, status: &str, description: &str, media: &[(&str, RefOr<Schema>)]) -> Self {
        let mut response = ResponseBuilder::new().description(description);
        for (media_type, schema) in media {
            response = response.content(
                *media_type,
                ContentBuilder::new().schema(Some(schema.clone())).build(),
            );
        }
        self.builder = self.builder.response(status, response.build());
        self
    }

    fn build(self) -> (String, HttpMethod, Operation) {
        let mut builder = self.builder;
        let mut problems = vec![("400", "Invalid request")];
        if self.authenticated {
            builder = builder.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
            problems.extend([
                ("401", "Missing or invalid token"),
                ("403", "The token's role does not allow this"),
            ]);
        }
        problems.extend([("404", "Not found"), ("409", "Conflict")]);
        problems.extend(self.extra_problems);
        for (status, description) in problems {
            let (media, schema) = if status == "401" && self.kong_unauthorized {
                ("application/json", "GatewayUnauthorizedError")
            } else {
                ("application/problem+json", "Problem")
            };
            builder = builder.response(
                status,
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        media,
                        ContentBuilder::new()
                            .schema(Some(schema_ref(schema)))
                            .build(),
                    )
                    .build(),
            );
        }
        (self.path, self.method, builder.build())
    }
}

fn operations() -> Vec<Op> {
    let mut ops = vec![
        Op::new(HttpMethod::Get, "/healthz", "healthz", "Liveness", "health")
            .public()
            .ok("200", "Up", Some(any_object())),
        Op::new(HttpMethod::Get, "/readyz", "readyz", "Readiness", "health")
            .public()
            .ok("200", "Ready", Some(any_object())),
        Op::new(
            HttpMethod::Get,
            "/openapi.json",
            "openapi",
            "This document",
            "health",
        )
        .public()
        .ok("200", "The OpenAPI document", Some(any_object())),
        Op::new(
            HttpMethod::Get,
            "/v2/organizations/me",
            "get_my_organization",
            "The caller's organization",
            "organizations",
        )
        .ok("200", "The organization", Some(schema_ref("Organization"))),
        Op::new(
            HttpMethod::Get,
            "/v2/organizations",
            "list_organizations",
            "Every organization (operators)",
            "organizations",
        )
        .numbered()
        .ok(
            "200",
            "A page of organizations",
            Some(numbered_list(schema_ref("Organization"))),
        ),
        Op::new(
            HttpMethod::Get,
            "/v2/tokens",
            "list_tokens",
            "List API tokens",
            "tokens",
        )
        .numbered()
        .ok(
            "200",
            "A page of tokens",
            Some(numbered_list(schema_ref("TokenRecord"))),
        ),
        Op::new(
            HttpMethod::Post,
            "/v2/tokens",
            "create_token",
            "Create an API token (shown once)",
            "tokens",
        )
        .json_body(schema_ref("CreateToken"))
        .ok("201", "Created", Some(schema_ref("CreatedToken"))),
        Op::new(
            HttpMethod::Get,
            "/v2/tokens/{token_id}",
            "get_token",
            "Get a token",
            "tokens",
        )
        .ok("200", "The token", Some(schema_ref("TokenRecord"))),
        Op::new(
            HttpMethod::Delete,
            "/v2/tokens/{token_id}",
            "delete_token",
            "Revoke a token",
            "tokens",
        )
        .ok("204", "Revoked", None),
        Op::new(
            HttpMethod::Get,
            "/v2/control-planes/{control_plane_id}/declarative-config",
            "export_declarative_config",
            "Export the config (Kong declarative format)",
            "declarative-config",
        )
        .ok_as(
            "200",
            "The config as YAML, or JSON when asked with `Accept: application/json`",
            &[
                ("application/yaml", string_schema()),
                ("application/json", any_object()),
            ],
        ),
        Op::new(
            HttpMethod::Put,
            "/v2/control-planes/{control_plane_id}/declarative-config",
            "import_declarative_config",
            "Replace the whole config (all or nothing)",
            "declarative-config",
        )
        .body("application/yaml", string_schema())
        .ok("200", "Imported", Some(schema_ref("ImportResult"))),
    ];
    core_entities::core_entity_ops(&mut ops);
    nodes::node_ops(&mut ops);
    nodes::dp_certificate_ops(&mut ops);
    analytics::analytics_ops(&mut ops);
    license_ops(&mut ops);
    control_planes::control_plane_ops(&mut ops);
    join_tokens::join_token_ops(&mut ops);
    portals_billing::portal_and_billing_ops(&mut ops);
    cloud_gateways::cloud_gateway_ops(&mut ops);
    ops
}

/// Licenses: what data-plane nodes may run under.
fn license_ops(ops: &mut Vec<Op>) {
    let license = crate::api::licenses::PATH;
    ops.push(
        Op::new(
            HttpMethod::Get,
            license,
            "get_license",
            "The organization's license (a one-year license is issued on first use)",
            "licenses",
        )
        .ok("200", "The license", Some(schema_ref("License"))),
    );
    ops.push(
        Op::new(
            HttpMethod::Put,
            license,
            "put_license",
            "Issue a new license with the given expiry (operator tokens only)",
            "licenses",
        )
        .json_body(schema_ref("PutLicense"))
        .ok("200", "The new license", Some(schema_ref("License"))),
    );
}

fn add_schema<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    T::schemas(schemas);
    schemas.push((T::name().into_owned(), T::schema()));
}

/// The OpenAPI document of the control-plane API.
pub fn document() -> OpenApi {
    let mut paths: BTreeMap<String, Vec<(HttpMethod, Operation)>> = BTreeMap::new();
    for op in operations() {
        let (path, method, operation) = op.build();
        paths.entry(path).or_default().push((method, operation));
    }
    links::link_created_ids(&mut paths);
    let mut paths_builder = PathsBuilder::new();
    for (path, ops) in paths {
        let mut item = PathItemBuilder::new();
        for (method, operation) in ops {
            item = item.operation(method, operation);
        }
        paths_builder = paths_builder.path(path, item.build());
    }
    let mut schemas = Vec::new();
    add_schema::<Problem>(&mut schemas);
    add_schema::<FieldError>(&mut schemas);
    add_schema::<NumberedMeta>(&mut schemas);
    add_schema::<CursorPageInfo>(&mut schemas);
    add_schema::<Organization>(&mut schemas);
    add_schema::<TokenRecord>(&mut schemas);
    add_schema::<CreateToken>(&mut schemas);
    add_schema::<CreatedToken>(&mut schemas);
    control_planes::add_schemas(&mut schemas);
    add_schema::<ImportResult>(&mut schemas);
    add_schema::<PutLicense>(&mut schemas);
    add_schema::<License>(&mut schemas);
    core_entities::add_schemas(&mut schemas);
    portals_billing::add_schemas(&mut schemas);
    cloud_gateways::add_schemas(&mut schemas);
    join_tokens::add_schemas(&mut schemas);
    nodes::add_schemas(&mut schemas);
    analytics::add_schemas(&mut schemas);
    let mut components = ComponentsBuilder::new().security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    let sorted: BTreeMap<String, RefOr<Schema>> = schemas.into_iter().collect();
    for (name, schema) in sorted {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Fleetgate control plane API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Manage gateway configuration, control planes and API tokens. Errors are \
                     application/problem+json (RFC 9457).",
                ))
                .build(),
        )
        .paths(paths_builder.build())
        .components(Some(components.build()))
        .build()
}

/// The document as JSON (served at `/openapi.json`).
pub fn document_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(document()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for link in paths
            .values_mut()
            .filter_map(|item| item.as_object_mut())
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
            .flat_map(|responses| responses.values_mut())
            .filter_map(|response| response.get_mut("links").and_then(|l| l.as_object_mut()))
            .flat_map(|links| links.values_mut())
            .filter_map(|link| link.as_object_mut())
        {
            if let Some(id) = link.remove(links::MISNAMED_OPERATION_ID) {
                link.insert("operationId".into(), id);
            }
        }
    }
    doc
}

/// The document as YAML (checked in as `api-spec/openapi.yaml`), in the code's key order.
pub fn document_yaml() -> anyhow::Result<String> {
    use serde_norway::Value;
    let mut doc = serde_norway::to_value(document())
        .map_err(|e| anyhow::anyhow!("render the OpenAPI document as YAML: {e}"))?;
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_mapping_mut) {
        for (_, item) in paths.iter_mut() {
            let Some(item) = item.as_mapping_mut() else {
                continue;
            };
            for (_, op) in item.iter_mut() {
                let Some(responses) = op.get_mut("responses").and_then(Value::as_mapping_mut)
                else {
                    continue;
                };
                for (_, response) in responses.iter_mut() {
                    let Some(links) = response.get_mut("links").and_then(Value::as_mapping_mut)
                    else {
                        continue;
                    };
                    for (_, link) in links.iter_mut() {
                        links::rename_operation_id(link);
                    }
                }
            }
        }
    }
    serde_norway::to_string(&doc)
        .map_err(|e| anyhow::anyhow!("render the OpenAPI document as YAML: {e}"))
}
