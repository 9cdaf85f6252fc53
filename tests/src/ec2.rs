//! EC2 as moto holds it, read by tag: what tests compare with what a reconciler says it did,
//! independently of the provider code that did it. Tag keys come from the caller (the
//! provisioner's `tags` module), so this crate does not depend on the provisioner.

use aws_sdk_ec2::types::{Filter, Instance, RouteTable, Subnet, Tag, Vpc};
use aws_sdk_ec2::Client;
use base64::Engine as _;

/// Instance states that still cost money and serve traffic.
pub const LIVE_INSTANCE_STATES: [&str; 2] = ["pending", "running"];

/// A `tag:<key>` filter for describe calls.
pub fn tag_filter(key: &str, value: impl Into<String>) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

/// The value of tag `key`, if set.
pub fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Whether an instance is pending or running.
pub fn is_live(instance: &Instance) -> bool {
    instance
        .state()
        .and_then(|s| s.name())
        .is_some_and(|name| LIVE_INSTANCE_STATES.contains(&name.as_str()))
}

/// VPCs tagged `key=value`.
pub async fn vpcs_tagged(ec2: &Client, key: &str, value: &str) -> Vec<Vpc> {
    ec2.describe_vpcs()
        .filters(tag_filter(key, value))
        .send()
        .await
        .expect("describe vpcs")
        .vpcs()
        .to_vec()
}

/// Subnets tagged `key=value`.
pub async fn subnets_tagged(ec2: &Client, key: &str, value: &str) -> Vec<Subnet> {
    ec2.describe_subnets()
        .filters(tag_filter(key, value))
        .send()
        .await
        .expect("describe subnets")
        .subnets()
        .to_vec()
}

/// Route tables tagged `key=value`.
pub async fn route_tables_tagged(ec2: &Client, key: &str, value: &str) -> Vec<RouteTable> {
    ec2.describe_route_tables()
        .filters(tag_filter(key, value))
        .send()
        .await
        .expect("describe route tables")
        .route_tables()
        .to_vec()
}

/// Instances tagged `key=value`, in any state (terminated ones included while EC2 shows them).
pub async fn instances_tagged(ec2: &Client, key: &str, value: &str) -> Vec<Instance> {
    ec2.describe_instances()
        .filters(tag_filter(key, value))
        .send()
        .await
        .expect("describe instances")
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect()
}

/// Pending or running instances tagged `key=value`.
pub async fn live_instances_tagged(ec2: &Client, key: &str, value: &str) -> Vec<Instance> {
    ec2.describe_instances()
        .filters(tag_filter(key, value))
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    LIVE_INSTANCE_STATES.iter().map(|s| s.to_string()).collect(),
                ))
                .build(),
        )
        .send()
        .await
        .expect("describe instances")
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect()
}

/// An instance's user-data, decoded (DescribeInstanceAttribute answers it base64-encoded).
pub async fn user_data(ec2: &Client, instance_id: &str) -> String {
    let attribute = ec2
        .describe_instance_attribute()
        .instance_id(instance_id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .expect("describe the instance's user data");
    let encoded = attribute
        .user_data()
        .and_then(|u| u.value())
        .unwrap_or_else(|| panic!("instance {instance_id} has no user data"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("user data is base64");
    String::from_utf8(bytes).expect("user data is UTF-8")
}
