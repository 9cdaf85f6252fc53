//! The OpenAPI document, generated from the code: the request/response types derive their
//! schemas, and the operations are listed here next to the routers they describe. A test
//! keeps `api-spec/openapi.yaml` equal to this output.

mod cloud_gateways;
mod core_entities;
mod join_tokens;
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

use crate::api::analytics::{
    DimensionName, GranularityName, MetricName, MetricsFilter, MetricsMeta, MetricsRequest,
    MetricsResponse, MetricsTimeRange,
};
use crate::api::control_planes::{ControlPlane, CreateControlPlane, UpdateControlPlane};
use crate::api::declarative::ImportResult;
use crate::api::dp_certificates::{
    CreateDpCertificate, DpClientCertificate, GeneratedDpCertificate,
};
use crate::api::extract::PageMeta;
use crate::api::licenses::{License, PutLicense};
use crate::api::nodes::Node;
use crate::api::paging::{CursorPageInfo, NumberedMeta};
use crate::api::tokens::{CreateToken, CreatedToken};
use crate::cluster::nodes::SyncStatus;
use crate::error::Problem;
use crate::store::{Organization, TokenRecord};
use crate::telemetry::query::DataPoint;

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn string_schema() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).into()
}

fn page_of(item: RefOr<Schema>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("data", ArrayBuilder::new().items(item))
        .required("data")
        .property("meta", schema_ref("PageMeta"))
        .required("meta")
        .into()
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
#[allow(dead_code)] // until the node and certificate lists move to it
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

    /// The old cursor pages (`page[size]`, `page[after]` -> `meta.page.next_cursor`), until
    /// every list has moved to one of Konnect's shapes.
    fn paged(self) -> Self {
        self.listed(&[
            ("page[size]", "Items per page, 1 to 1000 (default 100)."),
            (
                "page[after]",
                "Cursor from `meta.page.next_cursor` of the previous page.",
            ),
        ])
    }

    /// Konnect's numbered pages.
    fn numbered(self) -> Self {
        self.listed(&[
            ("page[size]", "Items per page, 1 to 1000 (default 100)."),
            ("page[number]", "The page to return, from 1 (default 1)."),
        ])
    }

    /// Konnect's cursor pages.
    #[allow(dead_code)] // until the node and certificate lists move to it
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
            "/v2/control-planes",
            "list_control_planes",
            "List control planes",
            "control-planes",
        )
        .paged()
        .ok(
            "200",
            "A page of control planes",
            Some(page_of(schema_ref("ControlPlane"))),
        ),
        Op::new(
            HttpMethod::Post,
            "/v2/control-planes",
            "create_control_plane",
            "Create a control plane",
            "control-planes",
        )
        .json_body(schema_ref("CreateControlPlane"))
        .ok("201", "Created", Some(schema_ref("ControlPlane"))),
        Op::new(
            HttpMethod::Get,
            "/v2/control-planes/{control_plane_id}",
            "get_control_plane",
            "Get a control plane",
            "control-planes",
        )
        .ok("200", "The control plane", Some(schema_ref("ControlPlane"))),
        Op::new(
            HttpMethod::Patch,
            "/v2/control-planes/{control_plane_id}",
            "update_control_plane",
            "Change a control plane",
            "control-planes",
        )
        .json_body(schema_ref("UpdateControlPlane"))
        .ok("200", "Updated", Some(schema_ref("ControlPlane"))),
        Op::new(
            HttpMethod::Delete,
            "/v2/control-planes/{control_plane_id}",
            "delete_control_plane",
            "Delete a control plane and its config",
            "control-planes",
        )
        .ok("204", "Deleted", None),
        Op::new(
            HttpMethod::Get,
            "/v2/control-planes/{control_plane_id}/expected-config-hash",
            "get_expected_config_hash",
            "Hash of the config data planes will receive",
            "control-planes",
        )
        .ok("200", "The expected hash", Some(any_object())),
        Op::new(
            HttpMethod::Get,
            "/v2/control-planes/{control_plane_id}/declarative-config",
            "export_declarative_config",
            "Export the config (Kong declarative format)",
            "declarative-config",
        )
        .ok(
            "200",
            "The config as YAML, or JSON when asked with Accept",
            Some(any_object()),
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
    node_ops(&mut ops);
    analytics_ops(&mut ops);
    identity_ops(&mut ops);
    join_tokens::join_token_ops(&mut ops);
    portals_billing::portal_and_billing_ops(&mut ops);
    cloud_gateways::cloud_gateway_ops(&mut ops);
    ops
}

/// dp-client-certificates and licenses: how data-plane nodes prove who they are, and what
/// they may run under.
fn identity_ops(ops: &mut Vec<Op>) {
    let collection = crate::api::dp_certificates::COLLECTION;
    let item = format!("{collection}/{{certificate_id}}");
    let tag = "dp-client-certificates";
    ops.push(
        Op::new(
            HttpMethod::Get,
            collection,
            "list_dp_client_certificates",
            "List the certificates data-plane nodes of a control plane authenticate with",
            tag,
        )
        .paged()
        .ok(
            "200",
            "A page of certificates",
            Some(page_of(schema_ref("DpClientCertificate"))),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Post,
            collection,
            "create_dp_client_certificate",
            "Register a node certificate (pinned_client_certs) or a CA (pki_client_certs)",
            tag,
        )
        .json_body(schema_ref("CreateDpCertificate"))
        .ok("201", "Registered", Some(schema_ref("DpClientCertificate"))),
    );
    ops.push(
        Op::new(
            HttpMethod::Post,
            &format!("{collection}/generate"),
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
            Some(schema_ref("DpClientCertificate")),
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

/// `/nodes`: the data-plane nodes the cluster listener has seen.
/// `/v2/analytics/metrics`: telemetry aggregated by time and dimensions.
fn analytics_ops(ops: &mut Vec<Op>) {
    ops.push(
        Op::new(
            HttpMethod::Post,
            "/v2/analytics/metrics",
            "query_metrics",
            "Request counts, error rates, latency percentiles and bytes of the organisation's \
             control planes, by time bucket and dimensions",
            "analytics",
        )
        .json_body(schema_ref("MetricsRequest"))
        .ok(
            "200",
            "One point per bucket and combination of dimension values that had requests",
            Some(schema_ref("MetricsResponse")),
        ),
    );
}

fn node_ops(ops: &mut Vec<Op>) {
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
        .paged()
        .ok("200", "A page of nodes", Some(page_of(schema_ref("Node")))),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            item,
            "get_node",
            "A data-plane node",
            "nodes",
        )
        .ok("200", "The node", Some(schema_ref("Node"))),
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
    add_schema::<PageMeta>(&mut schemas);
    add_schema::<NumberedMeta>(&mut schemas);
    add_schema::<CursorPageInfo>(&mut schemas);
    add_schema::<Organization>(&mut schemas);
    add_schema::<TokenRecord>(&mut schemas);
    add_schema::<CreateToken>(&mut schemas);
    add_schema::<CreatedToken>(&mut schemas);
    add_schema::<ControlPlane>(&mut schemas);
    add_schema::<CreateControlPlane>(&mut schemas);
    add_schema::<UpdateControlPlane>(&mut schemas);
    add_schema::<ImportResult>(&mut schemas);
    add_schema::<SyncStatus>(&mut schemas);
    add_schema::<Node>(&mut schemas);
    add_schema::<MetricName>(&mut schemas);
    add_schema::<DimensionName>(&mut schemas);
    add_schema::<GranularityName>(&mut schemas);
    add_schema::<MetricsFilter>(&mut schemas);
    add_schema::<MetricsTimeRange>(&mut schemas);
    add_schema::<MetricsRequest>(&mut schemas);
    add_schema::<DataPoint>(&mut schemas);
    add_schema::<MetricsMeta>(&mut schemas);
    add_schema::<MetricsResponse>(&mut schemas);
    add_schema::<CreateDpCertificate>(&mut schemas);
    add_schema::<DpClientCertificate>(&mut schemas);
    add_schema::<GeneratedDpCertificate>(&mut schemas);
    add_schema::<PutLicense>(&mut schemas);
    add_schema::<License>(&mut schemas);
    core_entities::add_schemas(&mut schemas);
    portals_billing::add_schemas(&mut schemas);
    cloud_gateways::add_schemas(&mut schemas);
    join_tokens::add_schemas(&mut schemas);
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
    serde_json::to_value(document()).unwrap_or_default()
}

/// The document as YAML (checked in as `api-spec/openapi.yaml`).
pub fn document_yaml() -> anyhow::Result<String> {
    document()
        .to_yaml()
        .map_err(|e| anyhow::anyhow!("render the OpenAPI document as YAML: {e}"))
}
