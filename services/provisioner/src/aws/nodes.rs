//! Gateway nodes on EC2: RunInstances (tagged in the call, with a client token),
//! DescribeInstances by tag, TerminateInstances.

use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{InstanceNetworkInterfaceSpecification, InstanceType, ResourceType};
use aws_sdk_ec2::Client;
use base64::Engine as _;

use super::{classify, gone_is_ok, missing, tag, tag_filter, tag_spec, tag_value, AwsSettings};
use crate::bootstrap::render_user_data;
use crate::error::ProviderError;
use crate::provider::{tags, Instance, InstanceOwner, LaunchRequest};
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

pub(super) async fn launch_instance(
    client: &Client,
    settings: &AwsSettings,
    launch: &LaunchRequest,
) -> Result<Instance, ProviderError> {
    const OP: &str = "run instances";
    let group = &launch.group;
    let user_data = render_user_data(&group.bootstrap, &launch.join_token, &settings.dp_binary)
        .map_err(|e| ProviderError::Rejected {
            operation: OP.into(),
            code: "FleetgateInvalidBootstrap".into(),
            message: e.to_string(),
        })?;
    let tags = vec![
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
    let out = client
        .run_instances()
        .image_id(settings.ami_for(&group.region))
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
