//! Gateway nodes on EC2: RunInstances (tagged in the call, with a client token),
//! DescribeInstances by tag, TerminateInstances; DescribeImages for the stock image.

use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{
    Filter, InstanceNetworkInterfaceSpecification, InstanceType, ResourceType,
};
use aws_sdk_ec2::Client;
use base64::Engine as _;

use super::{
    classify, gone_is_ok, missing, tag, tag_filter, tag_spec, tag_value, AwsSettings, StockImage,
};
use crate::bootstrap::render_user_data;
use crate::error::ProviderError;
use crate::provider::{tags, Instance, InstanceOwner, LaunchRequest, Replacement};
use crate::state::InstanceState;

fn instance_view(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
    Some(Instance {
        id: i.instance_id()?.to_string(),
        slot: tag_value(i.tags(), tags::NODE_SLOT).and_then(|s| s.parse().ok()),
        state: i
            .state()
            .and_then(|s| s.name())
            .and_then(|n| InstanceState::from_provider(n.as_str())),
        private_ip: i.private_ip_address().map(str::to_string),
        private_dns_name: i
            .private_dns_name()
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        launched_at: i.launch_time().and_then(|t| {
            let secs = u64::try_from(t.secs()).ok()?;
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
        }),
        subnet_id: i.subnet_id().map(str::to_string),
        replaces: Replacement::from_tags(|key| tag_value(i.tags(), key)),
    })
}

pub(super) async fn find_instances(
    client: &Client,
    owner: InstanceOwner,
) -> Result<Vec<Instance>, ProviderError> {
    const OP: &str = "describe instances";
    let (key, value) = match owner {
        InstanceOwner::Configuration(id) => (tags::CONFIGURATION_ID, id.to_string()),
        InstanceOwner::Network(id) => (tags::NETWORK_ID, id.to_string()),
    };
    let reservations = client
        .describe_instances()
        .filters(tag_filter(key, value.clone()))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| classify(OP, e))?;
    Ok(reservations
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| tag_value(i.tags(), key) == Some(value.as_str()))
        .filter_map(instance_view)
        .collect())
}

/// The newest available image of the stock owner matching its name pattern. None found is a
/// refusal the user must fix (a region without the image, or a wrong pattern).
pub(super) async fn find_stock_image(
    client: &Client,
    stock: &StockImage,
) -> Result<String, ProviderError> {
    const OP: &str = "describe images";
    let out = client
        .describe_images()
        .owners(&stock.owner)
        .filters(
            Filter::builder()
                .name("name")
                .values(&stock.name_pattern)
                .build(),
        )
        .filters(Filter::builder().name("state").values("available").build())
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    // Newest first by creation date, then by name (moto leaves creation dates out; the names
    // carry the release date).
    out.images()
        .iter()
        .filter(|i| i.image_id().is_some())
        .max_by(|a, b| (a.creation_date(), a.name()).cmp(&(b.creation_date(), b.name())))
        .and_then(|i| i.image_id())
        .map(str::to_string)
        .ok_or_else(|| ProviderError::Rejected {
            operation: OP.into(),
            code: "FleetgateNoStockImage".into(),
            message: format!(
                "no available image of owner {} named like {:?} in this region; set \
                 --aws-ami-id to an image to boot",
                stock.owner, stock.name_pattern
            ),
        })
}

pub(super) async fn launch_instance(
    client: &Client,
    settings: &AwsSettings,
    image_id: &str,
    launch: &LaunchRequest,
) -> Result<Instance, ProviderError> {
    const OP: &str = "run instances";
    let group = &launch.group;
    if settings.default_ami_id.is_none()
        && !settings.region_ami_ids.contains_key(&group.region)
        && group.bootstrap.dp_download.is_none()
    {
        // A stock image has no fleetgate-dp: without a download the node could never start.
        return Err(ProviderError::Rejected {
            operation: OP.into(),
            code: "FleetgateNoNodeBinary".into(),
            message: "gateway nodes boot a stock image and download fleetgate-dp from the \
                      control plane, which has none to serve; install fleetgate-dp next to \
                      fleetgate, start it with --dp-artifact PATH, or set --aws-ami-id to an \
                      image that has fleetgate-dp"
                .into(),
        });
    }
    let user_data = render_user_data(&group.bootstrap, &launch.join_token, &settings.dp_binary)
        .map_err(|e| ProviderError::Rejected {
            operation: OP.into(),
            code: "FleetgateInvalidBootstrap".into(),
            message: e.to_string(),
        })?;
    let mut tags = vec![
        tag(tags::MANAGED_BY, tags::MANAGED_BY_VALUE),
        tag(tags::CONFIGURATION_ID, group.configuration_id.to_string()),
        tag(tags::CONTROL_PLANE_ID, group.control_plane_id.to_string()),
        tag(tags::NETWORK_ID, group.network_id.to_string()),
        tag(tags::NODE_SLOT, launch.slot.to_string()),
        tag(
            tags::NAME,
            format!("fleetgate-dp {} #{}", group.configuration_id, launch.slot),
        ),
    ];
    if let Some(replaces) = &launch.replaces {
        tags.extend(replaces.tags().into_iter().map(|(k, v)| tag(k, v)));
    }
    let out = client
        .run_instances()
        .image_id(image_id)
        .instance_type(InstanceType::from(group.instance_type.as_str()))
        .min_count(1)
        .max_count(1)
        .client_token(&launch.client_token)
        .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
        .network_interfaces(
            InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .subnet_id(&launch.subnet_id)
                .groups(&launch.security_group_id)
                // The node dials the control plane over the internet gateway.
                .associate_public_ip_address(true)
                .build(),
        )
        .tag_specifications(tag_spec(ResourceType::Instance, tags))
        .send()
        .await
        .map_err(|e| classify(OP, e))?;
    out.instances()
        .first()
        .and_then(instance_view)
        .ok_or_else(|| missing(OP, "instance"))
}

pub(super) async fn terminate_instances(
    client: &Client,
    instance_ids: &[String],
) -> Result<(), ProviderError> {
    if instance_ids.is_empty() {
        return Ok(());
    }
    let all = terminate(client, instance_ids.to_vec()).await;
    match all {
        // One unknown id fails the whole call; the others must still go, so go one by one.
        Err(e) if super::is_not_found(&e) && instance_ids.len() > 1 => {
            for id in instance_ids {
                gone_is_ok(terminate(client, vec![id.clone()]).await)?;
            }
            Ok(())
        }
        other => gone_is_ok(other),
    }
}

async fn terminate(client: &Client, instance_ids: Vec<String>) -> Result<(), ProviderError> {
    client
        .terminate_instances()
        .set_instance_ids(Some(instance_ids))
        .send()
        .await
        .map(drop)
        .map_err(|e| classify("terminate instances", e))
}
