//! What this control plane offers for dedicated cloud gateways: providers, their regions and
//! zones, Konnect's instance sizes with what each runs as at the provider, and the gateway
//! versions a configuration may ask for. `GET /v2/cloud-gateways/availability.json` shows
//! exactly this, and the API accepts exactly this, so the document never promises what a
//! request would be refused.

use crate::store::CloudProvider;

/// One of Konnect's instance sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceSize {
    /// Konnect's name: `small`, `medium` or `large`.
    pub name: &'static str,
    /// The EC2 type a node of this size runs as on AWS.
    pub aws_instance_type: &'static str,
    /// Virtual CPUs of that type.
    pub v_cpu: u32,
    /// Memory of that type, GB.
    pub gb_memory: u32,
    /// Requests per second one node of this size is sized for: what autopilot divides the
    /// measured rate by.
    pub rps_per_node: u64,
}

/// The sizes, smallest first. Burstable `t3.small` for small (cheap, fine for low steady
/// traffic); compute-optimised `c6i` for medium and large, whose CPU credits cannot run out
/// under sustained load. Local nodes are all the same `fleetgate-dp` process whatever the size.
pub const INSTANCE_SIZES: [InstanceSize; 3] = [
    InstanceSize {
        name: "small",
        aws_instance_type: "t3.small",
        v_cpu: 2,
        gb_memory: 2,
        rps_per_node: 500,
    },
    InstanceSize {
        name: "medium",
        aws_instance_type: "c6i.large",
        v_cpu: 2,
        gb_memory: 4,
        rps_per_node: 2_000,
    },
    InstanceSize {
        name: "large",
        aws_instance_type: "c6i.xlarge",
        v_cpu: 4,
        gb_memory: 8,
        rps_per_node: 5_000,
    },
];

/// The size with this Konnect name.
pub fn instance_size(name: &str) -> Option<&'static InstanceSize> {
    INSTANCE_SIZES.iter().find(|s| s.name == name)
}

/// The provider's instance type for a Konnect size name (a stored name that is not a size is
/// passed through, so an unexpected row still reaches the provider's own error).
pub fn provider_instance_type(provider: CloudProvider, size: &str) -> String {
    match (provider, instance_size(size)) {
        (CloudProvider::Aws, Some(s)) => s.aws_instance_type.to_string(),
        (CloudProvider::Local, Some(_)) => "local".to_string(),
        (_, None) => size.to_string(),
    }
}

/// The gateway (node software) versions a configuration may run: this build's
/// `MAJOR.MINOR`, since every node the provisioner launches is this build's `fleetgate-dp`.
pub fn gateway_versions() -> Vec<String> {
    vec![current_gateway_version()]
}

/// This build's `MAJOR.MINOR`, the version a configuration runs when it names none.
pub fn current_gateway_version() -> String {
    let mut parts = env!("CARGO_PKG_VERSION").split('.');
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    format!("{major}.{minor}")
}

/// One region of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The provider's region id, e.g. `us-east-1`.
    pub id: &'static str,
    /// Human-readable name.
    pub name: &'static str,
    /// Zone names a network may use.
    pub availability_zones: &'static [&'static str],
}

/// The local provider's single region: the machine the control plane runs on.
pub const LOCAL_REGIONS: [Region; 1] = [Region {
    id: "local",
    name: "This machine",
    availability_zones: &["local-a", "local-b", "local-c"],
}];

/// AWS regions offered (zone names; the provider maps them to its subnets).
pub const AWS_REGIONS: [Region; 6] = [
    Region {
        id: "us-east-1",
        name: "N. Virginia",
        availability_zones: &[
            "us-east-1a",
            "us-east-1b",
            "us-east-1c",
            "us-east-1d",
            "us-east-1e",
            "us-east-1f",
        ],
    },
    Region {
        id: "us-east-2",
        name: "Ohio",
        availability_zones: &["us-east-2a", "us-east-2b", "us-east-2c"],
    },
    Region {
        id: "us-west-2",
        name: "Oregon",
        availability_zones: &["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"],
    },
    Region {
        id: "eu-west-1",
        name: "Ireland",
        availability_zones: &["eu-west-1a", "eu-west-1b", "eu-west-1c"],
    },
    Region {
        id: "eu-central-1",
        name: "Frankfurt",
        availability_zones: &["eu-central-1a", "eu-central-1b", "eu-central-1c"],
    },
    Region {
        id: "ap-southeast-2",
        name: "Sydney",
        availability_zones: &["ap-southeast-2a", "ap-southeast-2b", "ap-southeast-2c"],
    },
];

/// The regions of a provider.
pub fn regions(provider: CloudProvider) -> &'static [Region] {
    match provider {
        CloudProvider::Aws => &AWS_REGIONS,
        CloudProvider::Local => &LOCAL_REGIONS,
    }
}

/// A region of a provider by id.
pub fn region(provider: CloudProvider, id: &str) -> Option<&'static Region> {
    regions(provider).iter().find(|r| r.id == id)
}

/// Most nodes one dataplane group may run.
pub const MAX_INSTANCES: u32 = 20;

/// Konnect's control-plane geos a configuration may name.
pub const CONTROL_PLANE_GEOS: [&str; 6] = ["us", "eu", "au", "me", "in", "sg"];

/// Konnect's API access modes.
pub const API_ACCESS: [&str; 3] = ["private", "public", "private+public"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_provider_types_and_unknown_names_pass_through() {
        assert_eq!(
            provider_instance_type(CloudProvider::Aws, "small"),
            "t3.small"
        );
        assert_eq!(
            provider_instance_type(CloudProvider::Aws, "large"),
            "c6i.xlarge"
        );
        assert_eq!(
            provider_instance_type(CloudProvider::Local, "medium"),
            "local"
        );
        assert_eq!(
            provider_instance_type(CloudProvider::Aws, "m5.large"),
            "m5.large"
        );
    }

    #[test]
    fn the_current_version_is_offered() {
        assert!(gateway_versions().contains(&current_gateway_version()));
        assert_eq!(current_gateway_version().split('.').count(), 2);
    }
}
