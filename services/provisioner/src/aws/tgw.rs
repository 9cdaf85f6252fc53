//! Transit-gateway VPC attachments on EC2. `CreateTransitGatewayVpcAttachment` takes no client
//! token; it is made safe by tagging in the call (a lost answer is found by tag on the next
//! step) and by EC2 refusing a second attachment of the same VPC to the same transit gateway.

use aws_sdk_ec2::types::{Filter, ResourceType};
use aws_sdk_ec2::Client;
use uuid::Uuid;

use super::{classify, gone_is_ok, missing, tag, tag_spec, tag_value};
use crate::error::ProviderError;
use crate::provider::{tags, TransitGatewayAttachment};
use crate::types::TransitGatewaySpec;

fn attachment_view(
    a: &aws_sdk_ec2::types::TransitGatewayVpcAttachment,
) -> Option<TransitGatewayAttachment> {
    Some(TransitGatewayAttachment {
        id: a.transit_gateway_attachment_id()?.to_string(),
        fleetgate_id: tag_value(a.tags(), tags::ATTACHMENT_ID).and_then(|v| v.parse().ok()),
        transit_gateway_id: a.transit_gateway_id()?.to_string(),
        vpc_id: a.vpc_id()?.to_string(),
        subnet_ids: a.subnet_ids().to_vec(),
        state: a
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
    })
}

pub(super) async fn find_attachments(
    client: &Client,
    network_id: Uuid,
) -> Result<Vec<TransitGatewayAttachment>, ProviderError> {
    const OP: &str = "describe transit gateway vpc attachments";
    let network = network_id.to_string();
    // Looked up by the network's VPCs (a server-side filter every endpoint applies) rather than
    // by tag: moto ignores tag filters on this call and drops the tags given at create.
    let vpc_ids: Vec<String> = super::network::find_vpcs(client, network_id)
        .await?
        .into_iter()
        .map(|v| v.id)
        .collect();
    if vpc_ids.is_empty() {
        return Ok(Vec::new());
    }
    let attachments = client
        .describe_transit_gateway_vpc_attachments()
        .filters(
            Filter::builder()
                .name("vpc-id")
                .set_values(Some(vpc_ids))
                .build(),
        )
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(attachments
        .iter()
        // Only Fleetgate's own attachments of the network's VPCs (an untagged one is ours too:
        // nobody else attaches these VPCs).
        .filter(|a| tag_value(a.tags(), tags::NETWORK_ID).is_none_or(|n| n == network.as_str()))
        .filter_map(attachment_view)
        // Deleted attachments stay listed for a while on AWS; they are history, not state.
        .filter(|a| a.state != "deleted")
        .collect())
}

pub(super) async fn create_attachment(
    client: &Client,
    attachment: &TransitGatewaySpec,
    vpc_id: &str,
    subnet_ids: &[String],
) -> Result<TransitGatewayAttachment, ProviderError> {
    const OP: &str = "create transit gateway vpc attachment";
    let tags = vec![
        tag(tags::MANAGED_BY, tags::MANAGED_BY_VALUE),
        tag(tags::NETWORK_ID, attachment.network_id.to_string()),
        tag(tags::ATTACHMENT_ID, attachment.id.to_string()),
        tag(tags::NAME, format!("fleetgate {}", attachment.name)),
    ];
    let out = client
        .create_transit_gateway_vpc_attachment()
        .transit_gateway_id(&attachment.transit_gateway_id)
        .vpc_id(vpc_id)
        .set_subnet_ids(Some(subnet_ids.to_vec()))
        .tag_specifications(tag_spec(
            ResourceType::TransitGatewayAttachment,
            tags.clone(),
        ))
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    let created = out
        .transit_gateway_vpc_attachment()
        .ok_or_else(|| missing(OP, "attachment"))?;
    let mut view = attachment_view(created).ok_or_else(|| missing(OP, "attachment id"))?;
    if view.fleetgate_id.is_none() {
        // EC2 tags in the create call. moto 5.2 drops those tags (it reads them under the
        // wrong resource type), so they are added here; without them a census by tag would
        // miss the attachment.
        tracing::debug!(attachment = %view.id, "the endpoint dropped the create-time tags; tagging now");
        client
            .create_tags()
            .resources(&view.id)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| classify("tag transit gateway vpc attachment", e))?;
        view.fleetgate_id = Some(attachment.id);
    }
    Ok(view)
}

pub(super) async fn delete_attachment(
    client: &Client,
    attachment_id: &str,
) -> Result<(), ProviderError> {
    let result = client
        .delete_transit_gateway_vpc_attachment()
        .transit_gateway_attachment_id(attachment_id)
        .send()
        .await
        .map(drop)
        .map_err(|e| classify("delete transit gateway vpc attachment", e));
    gone_is_ok(result)
}
