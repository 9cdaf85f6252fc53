//! CIDR rules for networks and transit-gateway attachments (docs/cloud-gateways.md), as pure functions
//! the API calls before storing anything, and the carving of a network's range into one subnet
//! per availability zone.
//!
//! - A network's `cidr_block` is /16 to /23, inside one of the private ranges 10/8,
//!   100.64/10, 172.16/12, 192.168/16, 198.18/15.
//! - An attachment's `cidr_blocks` are the customer's ranges: each inside a private range, none
//!   overlapping the network, each other, or another attachment of the same network (the
//!   message names the conflicting attachment). Their size is the customer's business.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use uuid::Uuid;

/// The private IPv4 ranges a network or customer CIDR may come from.
pub const PRIVATE_RANGES: [(Ipv4Addr, u8); 5] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
];

/// Smallest network prefix (largest network) allowed.
pub const NETWORK_MIN_PREFIX: u8 = 16;
/// Largest network prefix (smallest network) allowed.
pub const NETWORK_MAX_PREFIX: u8 = 23;
/// AWS refuses subnets smaller than /28.
const SUBNET_MAX_PREFIX: u8 = 28;

/// A rule broken by a CIDR, naming the field (`cidr_block`, `cidr_blocks[1]`) so the API can
/// put it in its field-level error list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CidrError {
    /// The field, as the API names it.
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl CidrError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Another attachment of the same network, as the API has it stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingAttachment {
    /// Its Fleetgate id.
    pub id: Uuid,
    /// Its name (the message names it).
    pub name: String,
    /// Its CIDRs.
    pub cidr_blocks: Vec<Ipv4Net>,
}

/// Parses and checks a network's `cidr_block`.
pub fn validate_network_cidr(cidr_block: &str) -> Result<Ipv4Net, CidrError> {
    const FIELD: &str = "cidr_block";
    let net = parse_network(FIELD, cidr_block)?;
    if !(NETWORK_MIN_PREFIX..=NETWORK_MAX_PREFIX).contains(&net.prefix_len()) {
        return Err(CidrError::new(
            FIELD,
            format!(
                "{net} is a /{}; a network must be between /{NETWORK_MIN_PREFIX} and /{NETWORK_MAX_PREFIX}",
                net.prefix_len()
            ),
        ));
    }
    require_private(FIELD, net)?;
    Ok(net)
}

/// Parses and checks an attachment's `cidr_blocks` against its network and the network's other
/// attachments. `attachment_id` is the attachment being created or updated: its own stored
/// entry in `existing` is skipped, so an update does not conflict with itself.
pub fn validate_attachment_cidrs(
    network_cidr: Ipv4Net,
    attachment_id: Uuid,
    cidr_blocks: &[String],
    existing: &[ExistingAttachment],
) -> Result<Vec<Ipv4Net>, CidrError> {
    if cidr_blocks.is_empty() {
        return Err(CidrError::new(
            "cidr_blocks",
            "at least one CIDR block is required",
        ));
    }
    let mut parsed: Vec<Ipv4Net> = Vec::with_capacity(cidr_blocks.len());
    for (i, raw) in cidr_blocks.iter().enumerate() {
        let field = format!("cidr_blocks[{i}]");
        let net = parse_network(&field, raw)?;
        require_private(&field, net)?;
        if overlaps(net, network_cidr) {
            return Err(CidrError::new(
                field,
                format!("{net} overlaps the network's own range {network_cidr}"),
            ));
        }
        if let Some((j, other)) = parsed.iter().enumerate().find(|(_, p)| overlaps(net, **p)) {
            return Err(CidrError::new(
                field,
                format!("{net} overlaps cidr_blocks[{j}] ({other}) of the same attachment"),
            ));
        }
        for attachment in existing.iter().filter(|a| a.id != attachment_id) {
            if let Some(other) = attachment
                .cidr_blocks
                .iter()
                .find(|other| overlaps(net, **other))
            {
                return Err(CidrError::new(
                    field,
                    format!(
                        "{net} overlaps {other} of transit gateway attachment {:?} ({}) on the same network",
                        attachment.name, attachment.id
                    ),
                ));
            }
        }
        parsed.push(net);
    }
    Ok(parsed)
}

/// Splits a network's range into one equal subnet per zone (the next power of two pieces;
/// zone `i` gets piece `i`). A /16 over 3 zones gives three /18s.
pub fn carve_subnets(network: Ipv4Net, zones: usize) -> Result<Vec<Ipv4Net>, CidrError> {
    if zones == 0 {
        return Err(CidrError::new(
            "availability_zones",
            "at least one availability zone is required",
        ));
    }
    // ceil(log2(zones)) extra prefix bits give at least `zones` pieces.
    let extra_bits = usize::BITS - (zones - 1).leading_zeros();
    let prefix = u32::from(network.prefix_len()) + extra_bits;
    if prefix > u32::from(SUBNET_MAX_PREFIX) {
        return Err(CidrError::new(
            "availability_zones",
            format!(
                "{network} is too small for {zones} zones: each subnet would be smaller than /{SUBNET_MAX_PREFIX}"
            ),
        ));
    }
    let prefix = u8::try_from(prefix)
        .map_err(|_| CidrError::new("availability_zones", format!("too many zones ({zones})")))?;
    let subnets = network.subnets(prefix).map_err(|e| {
        CidrError::new(
            "cidr_block",
            format!("cannot split {network} into /{prefix}: {e}"),
        )
    })?;
    Ok(subnets.take(zones).collect())
}

fn parse_network(field: &str, raw: &str) -> Result<Ipv4Net, CidrError> {
    let net: Ipv4Net = raw.trim().parse().map_err(|_| {
        CidrError::new(
            field,
            format!("{raw:?} is not an IPv4 CIDR block like 10.0.0.0/16"),
        )
    })?;
    if net.addr() != net.network() {
        return Err(CidrError::new(
            field,
            format!(
                "{raw} has host bits set; the block starts at {}",
                net.trunc()
            ),
        ));
    }
    Ok(net)
}

fn require_private(field: &str, net: Ipv4Net) -> Result<(), CidrError> {
    let inside = PRIVATE_RANGES.iter().any(|(addr, len)| {
        Ipv4Net::new(*addr, *len)
            .map(|range| range.contains(&net))
            .unwrap_or(false)
    });
    if inside {
        Ok(())
    } else {
        Err(CidrError::new(
            field,
            format!("{net} is not inside a private range ({})", PrivateRanges),
        ))
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b) || b.contains(&a)
}

struct PrivateRanges;

impl fmt::Display for PrivateRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (addr, len)) in PRIVATE_RANGES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{addr}/{len}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test CIDR")
    }

    #[test]
    fn network_cidrs_inside_every_private_range_at_both_size_limits_are_accepted() {
        for ok in [
            "10.0.0.0/16",
            "10.255.254.0/23",
            "100.64.0.0/16",
            "172.16.0.0/16",
            "172.31.0.0/23",
            "192.168.0.0/16",
            "198.18.0.0/16",
            "198.19.2.0/23",
        ] {
            assert_eq!(validate_network_cidr(ok), Ok(net(ok)), "{ok}");
        }
    }

    #[test]
    fn network_cidrs_breaking_a_rule_are_refused_with_the_reason() {
        for (bad, says) in [
            ("10.0.0.0/15", "between /16 and /23"),
            ("10.0.0.0/24", "between /16 and /23"),
            ("8.8.0.0/16", "not inside a private range"),
            ("172.32.0.0/16", "not inside a private range"),
            ("100.128.0.0/16", "not inside a private range"),
            ("198.20.0.0/16", "not inside a private range"),
            (
                "10.0.0.1/16",
                "host bits set; the block starts at 10.0.0.0/16",
            ),
            ("10.0.0.0", "not an IPv4 CIDR block"),
            ("fd00::/16", "not an IPv4 CIDR block"),
            ("ten/16", "not an IPv4 CIDR block"),
        ] {
            let err = validate_network_cidr(bad).expect_err(bad);
            assert_eq!(err.field, "cidr_block");
            assert!(err.message.contains(says), "{bad}: {err}");
        }
    }

    fn existing() -> Vec<ExistingAttachment> {
        vec![ExistingAttachment {
            id: Uuid::from_u128(7),
            name: "prod-vpc".into(),
            cidr_blocks: vec![net("10.20.0.0/16"), net("192.168.10.0/24")],
        }]
    }

    #[test]
    fn attachment_cidrs_that_fit_are_accepted() {
        let got = validate_attachment_cidrs(
            net("10.0.0.0/16"),
            Uuid::from_u128(1),
            &["10.30.0.0/16".into(), "192.168.11.0/24".into()],
            &existing(),
        );
        assert_eq!(got, Ok(vec![net("10.30.0.0/16"), net("192.168.11.0/24")]));
    }

    #[test]
    fn an_overlap_with_another_attachment_names_that_attachment() {
        let err = validate_attachment_cidrs(
            net("10.0.0.0/16"),
            Uuid::from_u128(1),
            &["10.30.0.0/16".into(), "10.20.128.0/20".into()],
            &existing(),
        )
        .expect_err("overlap");
        assert_eq!(err.field, "cidr_blocks[1]");
        assert!(err.message.contains("10.20.0.0/16"), "{err}");
        assert!(err.message.contains("\"prod-vpc\""), "{err}");
        assert!(
            err.message.contains("00000000-0000-0000-0000-000000000007"),
            "{err}"
        );
    }

    #[test]
    fn an_update_does_not_conflict_with_its_own_stored_blocks() {
        let got = validate_attachment_cidrs(
            net("10.0.0.0/16"),
            Uuid::from_u128(7),
            &["10.20.0.0/16".into()],
            &existing(),
        );
        assert_eq!(got, Ok(vec![net("10.20.0.0/16")]));
    }

    #[test]
    fn attachment_cidrs_breaking_other_rules_are_refused() {
        for (blocks, field, says) in [
            (vec![], "cidr_blocks", "at least one"),
            (
                vec!["10.0.128.0/17"],
                "cidr_blocks[0]",
                "overlaps the network",
            ),
            (vec!["10.0.0.0/8"], "cidr_blocks[0]", "overlaps the network"),
            (vec!["8.8.8.0/24"], "cidr_blocks[0]", "private range"),
            (
                vec!["10.40.0.0/16", "10.40.1.0/24"],
                "cidr_blocks[1]",
                "overlaps cidr_blocks[0] (10.40.0.0/16)",
            ),
            (vec!["10.40.0.1/16"], "cidr_blocks[0]", "host bits"),
        ] {
            let blocks: Vec<String> = blocks.into_iter().map(String::from).collect();
            let err = validate_attachment_cidrs(
                net("10.0.0.0/16"),
                Uuid::from_u128(1),
                &blocks,
                &existing(),
            )
            .expect_err("refused");
            assert_eq!(err.field, field, "{blocks:?}");
            assert!(err.message.contains(says), "{blocks:?}: {err}");
        }
    }

    #[test]
    fn carving_gives_one_equal_subnet_per_zone() {
        assert_eq!(
            carve_subnets(net("10.0.0.0/16"), 3),
            Ok(vec![
                net("10.0.0.0/18"),
                net("10.0.64.0/18"),
                net("10.0.128.0/18")
            ])
        );
        assert_eq!(
            carve_subnets(net("10.0.0.0/16"), 1),
            Ok(vec![net("10.0.0.0/16")])
        );
        assert_eq!(
            carve_subnets(net("10.0.0.0/16"), 2),
            Ok(vec![net("10.0.0.0/17"), net("10.0.128.0/17")])
        );
        let six = carve_subnets(net("192.168.0.0/23"), 6).expect("six zones");
        assert_eq!(six.len(), 6);
        assert!(six.iter().all(|s| s.prefix_len() == 26));
        assert!(carve_subnets(net("10.0.0.0/16"), 0).is_err());
        let err = carve_subnets(net("192.168.0.0/23"), 40).expect_err("too small");
        assert!(err.message.contains("too small"), "{err}");
    }
}
