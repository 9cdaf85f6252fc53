//! Operations of `/v2/cloud-gateways/...` (kept apart: the main file is long enough).

use utoipa::openapi::path::HttpMethod;

use utoipa::openapi::{RefOr, Schema};

use super::{add_schema, numbered_list, schema_ref, Op};
use crate::api::cloud_gateways::availability::{
    AvailabilityDocument, InstanceType, Provider, ProviderInstanceTypes, ProviderRegion,
};
use crate::api::cloud_gateways::configurations::{
    AutopilotStatus, Configuration, DataplaneGroup, DataplaneGroupConfig, PutConfiguration,
    PutDataplaneGroup,
};
use crate::api::cloud_gateways::filters::{known_params, FilterField};
use crate::api::cloud_gateways::group_body::{Autoscale, EnvironmentField};
use crate::api::cloud_gateways::networks::{
    CreateNetwork, Network, NetworkProviderMetadata, UpdateNetwork,
};
use crate::api::cloud_gateways::nodes::CloudGatewayNode;
use crate::api::cloud_gateways::provider_accounts::{CreateProviderAccount, ProviderAccount};
use crate::api::cloud_gateways::transit_gateways::{
    CreateTransitGateway, DnsConfig, TransitGateway, TransitGatewayAttachmentConfig,
    UpdateTransitGateway,
};
use crate::api::cloud_gateways::StateMetadata;

/// Pushes list/create/get/(patch)/delete operations of one cloud-gateway resource.
struct CloudResource {
    collection: &'static str,
    item: &'static str,
    tag: &'static str,
    schema: &'static str,
    one: &'static str,
    many: &'static str,
    filters: &'static [FilterField],
}

/// Konnect's numbered pages plus the list's filters.
fn listed(op: Op, filters: &[FilterField]) -> Op {
    let mut op = op.numbered();
    for param in known_params(filters)
        .iter()
        .filter(|p| p.starts_with("filter["))
    {
        op = op.query(
            param,
            "Konnect filter: a bare `filter[field]` means equals; `oeq` and `ocontains` take a \
             comma-separated list.",
        );
    }
    op
}

impl CloudResource {
    fn push(&self, ops: &mut Vec<Op>, create_summary: &str, patch: Option<(&str, &str)>) {
        let (one, many) = (self.one, self.many);
        let schema = || Some(schema_ref(self.schema));
        ops.push(
            listed(
                Op::new(
                    HttpMethod::Get,
                    self.collection,
                    &format!("list_{many}"),
                    &format!("List {}", many.replace('_', " ")),
                    self.tag,
                ),
                self.filters,
            )
            .ok(
                "200",
                "A page",
                Some(numbered_list(schema_ref(self.schema))),
            ),
        );
        ops.push(
            Op::new(
                HttpMethod::Post,
                self.collection,
                &format!("create_{one}"),
                create_summary,
                self.tag,
            )
            .json_body(schema_ref(&format!("Create{}", self.schema)))
            .problem("422", "Not supported by this provider")
            .ok("201", "Created", schema()),
        );
        ops.push(
            Op::new(
                HttpMethod::Get,
                self.item,
                &format!("get_{one}"),
                &format!("Get a {}", one.replace('_', " ")),
                self.tag,
            )
            .ok("200", "Found", schema()),
        );
        if let Some((summary, body)) = patch {
            ops.push(
                Op::new(
                    HttpMethod::Patch,
                    self.item,
                    &format!("update_{one}"),
                    summary,
                    self.tag,
                )
                .json_body(schema_ref(body))
                .ok("200", "Updated", schema()),
            );
        }
    }
}

/// `/v2/cloud-gateways/...`: provider accounts, networks, transit gateways, configurations.
pub(super) fn cloud_gateway_ops(ops: &mut Vec<Op>) {
    use crate::api::cloud_gateways::{
        availability, configurations, networks, nodes, provider_accounts, transit_gateways,
    };
    let tag = "cloud-gateways";
    ops.push(
        Op::new(
            HttpMethod::Get,
            availability::PATH,
            "get_availability_json",
            "What this control plane offers: providers, regions and zones, instance sizes, \
             gateway versions (what it lists is what the API accepts)",
            tag,
        )
        .public()
        .ok(
            "200",
            "The document",
            Some(schema_ref("AvailabilityDocument")),
        ),
    );
    CloudResource {
        collection: provider_accounts::COLLECTION,
        item: provider_accounts::ITEM,
        tag,
        schema: "ProviderAccount",
        one: "provider_account",
        many: "provider_accounts",
        filters: &provider_accounts::FILTERS,
    }
    .push(
        ops,
        "Register a cloud provider account (operators only; every organisation sees the \
         local account without registering it)",
        None,
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            provider_accounts::ITEM,
            "delete_provider_account",
            "Delete a provider account (operators only; 409 while a network uses it)",
            tag,
        )
        .ok("204", "Deleted", None),
    );
    CloudResource {
        collection: networks::COLLECTION,
        item: networks::ITEM,
        tag,
        schema: "Network",
        one: "network",
        many: "networks",
        filters: &networks::FILTERS,
    }
    .push(
        ops,
        "Create a network (state created; the reconciler builds it)",
        Some((
            "Rename a network (only the name may change)",
            "UpdateNetwork",
        )),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            networks::ITEM,
            "delete_network",
            "Delete a network: it becomes terminating (409 while a dataplane group or a \
             transit gateway uses it)",
            tag,
        )
        .ok("204", "Deletion started", None),
    );
    CloudResource {
        collection: transit_gateways::COLLECTION,
        item: transit_gateways::ITEM,
        tag,
        schema: "TransitGateway",
        one: "transit_gateway",
        many: "transit_gateways",
        filters: &transit_gateways::FILTERS,
    }
    .push(
        ops,
        "Attach the network to an AWS transit gateway (422 on the local provider)",
        Some((
            "Change the routed CIDRs (the only field that may change)",
            "UpdateTransitGateway",
        )),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            transit_gateways::ITEM,
            "delete_transit_gateway",
            "Detach: the attachment becomes terminating; routes and attachment are removed",
            tag,
        )
        .ok("204", "Deletion started", None),
    );
    let configuration = || Some(schema_ref("Configuration"));
    ops.push(
        listed(
            Op::new(
                HttpMethod::Get,
                configurations::COLLECTION,
                "list_configurations",
                "List cloud-gateway configurations",
                tag,
            ),
            &configurations::FILTERS,
        )
        .ok(
            "200",
            "A page",
            Some(numbered_list(schema_ref("Configuration"))),
        ),
    );
    ops.push(
        Op::new(
            HttpMethod::Put,
            configurations::COLLECTION,
            "put_configuration",
            "Set a control plane's whole desired configuration (creates it, or replaces the \
             existing one by a diff)",
            tag,
        )
        .json_body(schema_ref("PutConfiguration"))
        .ok("200", "The configuration manifest", configuration()),
    );
    ops.push(
        Op::new(
            HttpMethod::Get,
            configurations::ITEM,
            "get_configuration",
            "Get a configuration with its groups' states and nodes",
            tag,
        )
        .ok("200", "Found", configuration()),
    );
    ops.push(
        Op::new(
            HttpMethod::Delete,
            configurations::ITEM,
            "delete_configuration",
            "Delete a configuration; its groups show terminating until their nodes are gone",
            tag,
        )
        .ok("204", "Deletion started", None),
    );
    ops.push(
        listed(
            Op::new(
                HttpMethod::Get,
                nodes::COLLECTION,
                "list_cloud_gateway_nodes",
                "List the organisation's cloud-gateway nodes",
                tag,
            ),
            &nodes::FILTERS,
        )
        .ok(
            "200",
            "A page",
            Some(numbered_list(schema_ref("CloudGatewayNode"))),
        ),
    );
}

/// The request and response schemas of these operations.
pub(super) fn add_schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    add_schema::<StateMetadata>(schemas);
    add_schema::<ProviderAccount>(schemas);
    add_schema::<CreateProviderAccount>(schemas);
    add_schema::<Network>(schemas);
    add_schema::<NetworkProviderMetadata>(schemas);
    add_schema::<CreateNetwork>(schemas);
    add_schema::<UpdateNetwork>(schemas);
    add_schema::<TransitGateway>(schemas);
    add_schema::<TransitGatewayAttachmentConfig>(schemas);
    add_schema::<DnsConfig>(schemas);
    add_schema::<CreateTransitGateway>(schemas);
    add_schema::<UpdateTransitGateway>(schemas);
    add_schema::<Configuration>(schemas);
    add_schema::<DataplaneGroup>(schemas);
    add_schema::<DataplaneGroupConfig>(schemas);
    add_schema::<AutopilotStatus>(schemas);
    add_schema::<Autoscale>(schemas);
    add_schema::<EnvironmentField>(schemas);
    add_schema::<PutConfiguration>(schemas);
    add_schema::<PutDataplaneGroup>(schemas);
    add_schema::<CloudGatewayNode>(schemas);
    add_schema::<AvailabilityDocument>(schemas);
    add_schema::<Provider>(schemas);
    add_schema::<ProviderRegion>(schemas);
    add_schema::<InstanceType>(schemas);
    add_schema::<ProviderInstanceTypes>(schemas);
}
