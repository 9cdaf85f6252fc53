//! The AWS provider: aws-sdk-ec2 through aws-config. One EC2 client per region, the standard
//! credential chain, and `AWS_ENDPOINT_URL` honoured, so the same code runs against real AWS
//! and against moto.
//!
//! The SDK's own retries are turned off: [`crate::retry`] retries whole find-then-create steps
//! with logged backoff, which is what keeps creates without a client token from duplicating.

mod network;
mod nodes;
mod tgw;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use ipnet::Ipv4Net;
use parking_lot::Mutex;
use uuid::Uuid;

use crate::error::ProviderError;
use crate::provider::{
    tags, CloudProvider, Instance, InstanceOwner, InternetGateway, LaunchRequest, RouteTable,
    RouteTarget, SecurityGroup, Subnet, TransitGatewayAttachment, Vpc,
};
use crate::types::{NetworkSpec, TransitGatewaySpec};

/// Settings of the AWS provider that are not per-resource desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// AMI for gateway nodes in regions without an entry in `region_ami_ids` (`--aws-ami-id`);
    /// `None`: the newest [`StockImage`] of the region, found with `DescribeImages`.
    pub default_ami_id: Option<String>,
    /// AMI per region (AMI ids are regional).
    pub region_ami_ids: BTreeMap<String, String>,
    /// The public image nodes boot when no AMI is configured.
    pub stock_image: StockImage,
    /// Where `fleetgate-dp` is (installed) on the instance.
    pub dp_binary: String,
}

/// A public image found by owner and name pattern: a stock distribution image, to which the
/// user data adds `fleetgate-dp` (downloaded from the control plane) and a systemd unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockImage {
    /// The image owner's account id.
    pub owner: String,
    /// `DescribeImages` name filter (`*` wildcards); the newest match wins.
    pub name_pattern: String,
}

impl Default for StockImage {
    /// Amazon Linux 2023 for x86_64 (owner `137112412989`, Amazon's): it ships curl,
    /// sha256sum, systemd and cloud-init, which is all the user data needs.
    fn default() -> Self {
        Self {
            owner: "137112412989".into(),
            name_pattern: "al2023-ami-2023.*-kernel-6.1-x86_64".into(),
        }
    }
}

impl AwsSettings {
    /// Nodes boot the stock image ([`StockImage::default`]) and download `fleetgate-dp`.
    pub fn stock() -> Self {
        Self {
            default_ami_id: None,
            region_ami_ids: BTreeMap::new(),
            stock_image: StockImage::default(),
            dp_binary: crate::bootstrap::NODE_DP_BINARY.into(),
        }
    }

    /// Settings with one AMI for every region and the binary in `/usr/local/bin`.
    pub fn with_ami(ami_id: impl Into<String>) -> Self {
        Self {
            default_ami_id: Some(ami_id.into()),
            ..Self::stock()
        }
    }

    /// The configured AMI for `region`, if any.
    fn configured_ami(&self, region: &str) -> Option<&str> {
        self.region_ami_ids
            .get(region)
            .map(String::as_str)
            .or(self.default_ami_id.as_deref())
    }
}

/// [`CloudProvider`] on AWS EC2.
pub struct AwsProvider {
    base: SdkConfig,
    settings: AwsSettings,
    clients: Mutex<HashMap<String, Client>>,
    /// The stock image found per region (looked up once per provider).
    stock_images: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("settings", &self.settings)
            .field("endpoint_url", &self.base.endpoint_url())
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// Loads the standard AWS configuration: credentials chain (env, profile, SSO, process,
    /// instance role), and `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_EC2` for an EC2-compatible
    /// endpoint such as moto.
    pub async fn from_env(settings: AwsSettings) -> Self {
        let base = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(default_timeouts())
            .load()
            .await;
        Self::from_sdk_config(base, settings)
    }

    /// Uses an already loaded configuration (tests pass static credentials and moto's URL).
    /// The SDK's retries are turned off whatever `base` says.
    pub fn from_sdk_config(base: SdkConfig, settings: AwsSettings) -> Self {
        let base = base
            .into_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(default_timeouts())
            .build();
        Self {
            base,
            settings,
            clients: Mutex::new(HashMap::new()),
            stock_images: Mutex::new(HashMap::new()),
        }
    }

    /// The EC2 client for a region, built once.
    fn client(&self, region: &str) -> Client {
        let mut clients = self.clients.lock();
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let conf = aws_sdk_ec2::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .build();
                Client::from_conf(conf)
            })
            .clone()
    }
}

/// Connect and per-attempt limits, so a hung endpoint fails a step instead of a reconciler.
fn default_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build()
}

/// Error codes EC2 uses to ask callers to slow down.
const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "EC2ThrottledException",
    "SlowDown",
    "PriorRequestNotComplete",
    "BandwidthLimitExceeded",
];

/// Error codes that mean "not now": a dependency still going away, or a resource created a
/// moment ago that this endpoint cannot see yet (EC2 is eventually consistent).
const NOT_READY_CODES: &[&str] = &[
    "DependencyViolation",
    "IncorrectState",
    "IncorrectInstanceState",
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidTransitGatewayAttachmentID.NotFound",
];

/// Server-side codes that come with a 5xx.
const SERVER_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
];

/// Turns an SDK error into a [`ProviderError`] the retry layer and reconcilers can branch on.
fn classify<E>(operation: &str, err: SdkError<E>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let operation = operation.to_string();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(&err).to_string());
    if matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)
    ) {
        return ProviderError::Unavailable {
            operation,
            status: None,
            message: DisplayErrorContext(&err).to_string(),
        };
    }
    if let SdkError::ConstructionFailure(_) = err {
        return ProviderError::other(operation, anyhow::anyhow!("{}", DisplayErrorContext(&err)));
    }
    match code {
        Some(code) if THROTTLING_CODES.contains(&code.as_str()) => ProviderError::Throttled {
            operation,
            code,
            message,
        },
        Some(code) if NOT_READY_CODES.contains(&code.as_str()) => ProviderError::NotReady {
            operation,
            code,
            message,
        },
        _ if status.is_some_and(|s| s >= 500) => ProviderError::Unavailable {
            operation,
            status,
            message,
        },
        Some(code) if SERVER_CODES.contains(&code.as_str()) => ProviderError::Unavailable {
            operation,
            status,
            message,
        },
        Some(code) => ProviderError::Rejected {
            operation,
            code,
            message,
        },
        None => ProviderError::other(
            operation,
            anyhow::anyhow!(
                "unexpected answer (HTTP {}): {message}",
                status.map_or_else(|| "none".to_string(), |s| s.to_string())
            ),
        ),
    }
}

/// True when the error says the thing to delete is already gone.
fn is_not_found(err: &ProviderError) -> bool {
    err.code().is_some_and(|c| c.ends_with(".NotFound"))
}

/// Runs a delete and treats "already gone" as done, so deletes are idempotent.
fn gone_is_ok(result: Result<(), ProviderError>) -> Result<(), ProviderError> {
    match result {
        Err(e) if is_not_found(&e) => Ok(()),
        other => other,
    }
}

fn tag(key: &str, value: impl Into<String>) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The tags every network resource gets.
fn network_tags(network: &NetworkSpec, name: String) -> Vec<Tag> {
    vec![
        tag(tags::MANAGED_BY, tags::MANAGED_BY_VALUE),
        tag(tags::NETWORK_ID, network.id.to_string()),
        tag(tags::NAME, name),
    ]
}

fn tag_spec(resource: ResourceType, tags: Vec<Tag>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags))
        .build()
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(Tag::value)
}

/// Server-side filter on a tag; results are checked client-side too ([`tag_value`]), because
/// not every EC2-compatible endpoint applies every filter (moto ignores tag filters on
/// transit-gateway attachments).
fn tag_filter(key: &str, value: impl Into<String>) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

fn missing(operation: &str, what: &str) -> ProviderError {
    ProviderError::other(
        operation,
        anyhow::anyhow!("the provider's answer has no {what}"),
    )
}

#[async_trait]
impl CloudProvider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    async fn find_vpcs(&self, region: &str, network_id: Uuid) -> Result<Vec<Vpc>, ProviderError> {
        network::find_vpcs(&self.client(region), network_id).await
    }
    async fn create_vpc(&self, network: &NetworkSpec) -> Result<Vpc, ProviderError> {
        network::create_vpc(&self.client(&network.region), network).await
    }
    async fn delete_vpc(&self, region: &str, vpc_id: &str) -> Result<(), ProviderError> {
        network::delete_vpc(&self.client(region), vpc_id).await
    }
    async fn find_subnets(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<Subnet>, ProviderError> {
        network::find_subnets(&self.client(region), network_id).await
    }
    async fn create_subnet(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
        availability_zone: &str,
        cidr_block: Ipv4Net,
    ) -> Result<Subnet, ProviderError> {
        network::create_subnet(
            &self.client(&network.region),
            network,
            vpc_id,
            availability_zone,
            cidr_block,
        )
        .await
    }
    async fn delete_subnet(&self, region: &str, subnet_id: &str) -> Result<(), ProviderError> {
        network::delete_subnet(&self.client(region), subnet_id).await
    }
    async fn find_security_groups(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<SecurityGroup>, ProviderError> {
        network::find_security_groups(&self.client(region), network_id).await
    }
    async fn create_security_group(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
    ) -> Result<SecurityGroup, ProviderError> {
        network::create_security_group(&self.client(&network.region), network, vpc_id).await
    }
    async fn open_tcp_port(
        &self,
        region: &str,
        security_group_id: &str,
        port: u16,
    ) -> Result<(), ProviderError> {
        network::open_tcp_port(&self.client(region), security_group_id, port).await
    }
    async fn delete_security_group(
        &self,
        region: &str,
        security_group_id: &str,
    ) -> Result<(), ProviderError> {
        network::delete_security_group(&self.client(region), security_group_id).await
    }
    async fn find_internet_gateways(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<InternetGateway>, ProviderError> {
        network::find_internet_gateways(&self.client(region), network_id).await
    }
    async fn create_internet_gateway(
        &self,
        network: &NetworkSpec,
    ) -> Result<InternetGateway, ProviderError> {
        network::create_internet_gateway(&self.client(&network.region), network).await
    }
    async fn attach_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
        vpc_id: &str,
    ) -> Result<(), ProviderError> {
        network::attach_internet_gateway(&self.client(region), internet_gateway_id, vpc_id).await
    }
    async fn detach_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
        vpc_id: &str,
    ) -> Result<(), ProviderError> {
        network::detach_internet_gateway(&self.client(region), internet_gateway_id, vpc_id).await
    }
    async fn delete_internet_gateway(
        &self,
        region: &str,
        internet_gateway_id: &str,
    ) -> Result<(), ProviderError> {
        network::delete_internet_gateway(&self.client(region), internet_gateway_id).await
    }
    async fn find_route_tables(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<RouteTable>, ProviderError> {
        network::find_route_tables(&self.client(region), network_id).await
    }
    async fn create_route_table(
        &self,
        network: &NetworkSpec,
        vpc_id: &str,
    ) -> Result<RouteTable, ProviderError> {
        network::create_route_table(&self.client(&network.region), network, vpc_id).await
    }
    async fn associate_route_table(
        &self,
        region: &str,
        route_table_id: &str,
        subnet_id: &str,
    ) -> Result<String, ProviderError> {
        network::associate_route_table(&self.client(region), route_table_id, subnet_id).await
    }
    async fn disassociate_route_table(
        &self,
        region: &str,
        association_id: &str,
    ) -> Result<(), ProviderError> {
        network::disassociate_route_table(&self.client(region), association_id).await
    }
    async fn delete_route_table(
        &self,
        region: &str,
        route_table_id: &str,
    ) -> Result<(), ProviderError> {
        network::delete_route_table(&self.client(region), route_table_id).await
    }
    async fn create_route(
        &self,
        region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
        target: &RouteTarget,
    ) -> Result<(), ProviderError> {
        network::create_route(&self.client(region), route_table_id, destination, target).await
    }
    async fn delete_route(
        &self,
        region: &str,
        route_table_id: &str,
        destination: Ipv4Net,
    ) -> Result<(), ProviderError> {
        network::delete_route(&self.client(region), route_table_id, destination).await
    }
    async fn find_instances(
        &self,
        region: &str,
        owner: InstanceOwner,
    ) -> Result<Vec<Instance>, ProviderError> {
        nodes::find_instances(&self.client(region), owner).await
    }
    async fn launch_instance(&self, launch: &LaunchRequest) -> Result<Instance, ProviderError> {
        let region = launch.group.region.as_str();
        let client = self.client(region);
        let image_id = match self.settings.configured_ami(region) {
            Some(ami) => ami.to_string(),
            None => {
                let cached = self.stock_images.lock().get(region).cloned();
                match cached {
                    Some(ami) => ami,
                    None => {
                        let ami =
                            nodes::find_stock_image(&client, &self.settings.stock_image).await?;
                        self.stock_images
                            .lock()
                            .insert(region.to_string(), ami.clone());
                        ami
                    }
                }
            }
        };
        nodes::launch_instance(&client, &self.settings, &image_id, launch).await
    }
    async fn terminate_instances(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<(), ProviderError> {
        nodes::terminate_instances(&self.client(region), instance_ids).await
    }
    async fn find_transit_gateway_attachments(
        &self,
        region: &str,
        network_id: Uuid,
    ) -> Result<Vec<TransitGatewayAttachment>, ProviderError> {
        tgw::find_attachments(&self.client(region), network_id).await
    }
    async fn create_transit_gateway_attachment(
        &self,
        region: &str,
        attachment: &TransitGatewaySpec,
        vpc_id: &str,
        subnet_ids: &[String],
    ) -> Result<TransitGatewayAttachment, ProviderError> {
        tgw::create_attachment(&self.client(region), attachment, vpc_id, subnet_ids).await
    }
    async fn delete_transit_gateway_attachment(
        &self,
        region: &str,
        attachment_id: &str,
    ) -> Result<(), ProviderError> {
        tgw::delete_attachment(&self.client(region), attachment_id).await
    }
}
