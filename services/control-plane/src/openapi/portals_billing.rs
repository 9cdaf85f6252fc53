//! Operations and schemas of `/v2/portals` and `/v2/billing/usage` (kept apart: the main
//! file is long enough).

use utoipa::openapi::path::{HttpMethod, ParameterBuilder, ParameterIn};
use utoipa::openapi::{RefOr, Required, Schema};

use super::{add_schema, numbered_list, schema_ref, string_schema, Op};
use crate::api::portals::{CreatePortal, Portal, UpdatePortal};
use crate::store::{ControlPlaneUsage, ServiceLifetime, Usage};

/// `/v2/portals` and `/v2/billing/usage`: dev portals and what an organisation is billed for.
pub(super) fn portal_and_billing_ops(ops: &mut Vec<Op>) {
    use crate::api::portals::{COLLECTION, ITEM};
    let portal = || Some(schema_ref("Portal"));
    ops.push(
        Op::new(
            HttpMethod::Get,
            COLLECTION,
            "list_portals",
            "List dev portals",
            "portals",
        )
        .numbered()
        .ok(
            "200",
            "A page of portals",
            Some(numbered_list(schema_ref("Portal"))),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Post,
            COLLECTION,
            "create_portal",
            "Create a dev portal (published portals count as active for billing)",
            "portals",
        )
        .json_body(schema_ref("CreatePortal"))
        .ok("201", "Created", portal()),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            ITEM,
            "get_portal",
            "Get a dev portal",
            "portals",
        )
        .ok("200", "The portal", portal()),
    );
    ops.push(
        Op::new(
            HttpMethod::Patch,
            ITEM,
            "update_portal",
            "Rename, describe, publish or unpublish a dev portal",
            "portals",
        )
        .json_body(schema_ref("UpdatePortal"))
        .ok("200", "Updated", portal()),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            ITEM,
            "delete_portal",
            "Delete a dev portal",
            "portals",
        )
        .ok("204", "Deleted", None),
    );
    let mut usage = Op::new(
        HttpMethod::Get,
        crate::api::billing::USAGE,
        "get_billing_usage",
        "An organization's usage in one month: gateway services, API calls, active dev portals",
        "billing",
    );
    usage.builder = usage
        .builder
        .description(Some(crate::api::billing::USAGE_DESCRIPTION))
        .parameter(
            ParameterBuilder::new()
                .name("period")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some("The month, `YYYY-MM` (UTC)."))
                .schema(Some(string_schema())),
        )
        .parameter(
            ParameterBuilder::new()
                .name("organization_id")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "Another organization (operator tokens only); default: the caller's.",
                ))
                .schema(Some(string_schema())),
        )
        .parameter(
            ParameterBuilder::new()
                .name("include")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "`peak_services`: also list the services counted at the organization's peak.",
                ))
                .schema(Some(string_schema())),
        );
    ops.push(usage.ok("200", "The usage", Some(schema_ref("Usage"))));
}

/// The schemas these operations refer to.
pub(super) fn add_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add_schema::<Portal>(schemas);
    add_schema::<CreatePortal>(schemas);
    add_schema::<UpdatePortal>(schemas);
    add_schema::<ControlPlaneUsage>(schemas);
    add_schema::<ServiceLifetime>(schemas);
    add_schema::<Usage>(schemas);
}
