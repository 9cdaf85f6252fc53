//! Node software versions and CP/DP compatibility rules (docs/architecture.md).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{truncate_for_log, ProtocolError, Result};

/// Version of the wire protocol itself (the `v1` in `/v1/outlet`). Distinct
/// from [`Version`], which is the node *software* version.
pub const PROTOCOL_VERSION: u32 = 1;

/// A `MAJOR.MINOR.PATCH` software version, as sent in `node_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Breaking-change counter; CP and DP must agree on it.
    pub major: u64,
    /// Feature counter; a DP may lag the CP but never lead it.
    pub minor: u64,
    /// Fix counter; ignored for compatibility.
    pub patch: u64,
}

impl Version {
    /// Builds a version from its parts.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `MAJOR.MINOR.PATCH`. A SemVer pre-release/build suffix
    /// (`-rc.1`, `+abc`) is accepted and ignored because dev builds carry
    /// one, and compatibility is decided on major/minor only.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| ProtocolError::InvalidVersion {
            input: truncate_for_log(input),
            reason: reason.to_owned(),
        };
        let core = input.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let mut next = |what: &str| -> Result<u64> {
            let part = parts
                .next()
                .ok_or_else(|| invalid("expected MAJOR.MINOR.PATCH"))?;
            // `u64::from_str` accepts a leading '+', which is not a version.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(&format!("{what} must be a non-negative integer")));
            }
            part.parse()
                .map_err(|_| invalid(&format!("{what} is out of range")))
        };
        let version = Self::new(next("major")?, next("minor")?, next("patch")?);
        if parts.next().is_some() {
            return Err(invalid("expected exactly three components"));
        }
        Ok(version)
    }
}

impl FromStr for Version {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Outcome of [`compatibility`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compatibility {
    /// Same major and minor; send configs as-is.
    Compatible,
    /// Same major, DP has an older minor: accepted, but the CP must strip
    /// config fields the DP's minor does not know before sending.
    CompatibleOlder,
    /// The CP must refuse the DP (send `refused { reason }` and close).
    Incompatible {
        /// Human-readable reason, suitable for `refused`.
        reason: String,
    },
}

/// Decides whether a CP at `cp` may serve a DP at `dp`. Same major is
/// required; a DP with a newer minor is refused because it may rely on
/// config fields the CP cannot produce; an older DP is served with stripped
/// configs. Patch levels never matter.
pub fn compatibility(cp: &Version, dp: &Version) -> Compatibility {
    if cp.major != dp.major {
        return Compatibility::Incompatible {
            reason: format!(
                "data plane version {dp} has a different major version than control plane version {cp}; major versions must match"
            ),
        };
    }
    match dp.minor.cmp(&cp.minor) {
        std::cmp::Ordering::Equal => Compatibility::Compatible,
        std::cmp::Ordering::Less => Compatibility::CompatibleOlder,
        std::cmp::Ordering::Greater => Compatibility::Incompatible {
            reason: format!(
                "data plane version {dp} is newer than control plane version {cp}; upgrade the control plane first"
            ),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let v = Version::parse("3.10.2").unwrap();
        assert_eq!(v, Version::new(3, 10, 2));
        assert_eq!(v.to_string(), "3.10.2");
        assert_eq!(
            "1.2.3-rc.1+abc".parse::<Version>().unwrap(),
            Version::new(1, 2, 3)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "a.b.c",
            "1..3",
            "+1.2.3",
            "1.-2.3",
            " 1.2.3",
            "99999999999999999999.0.0",
        ] {
            let err = Version::parse(bad).unwrap_err();
            assert!(
                matches!(err, ProtocolError::InvalidVersion { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn compatibility_table() {
        let v = Version::new;
        let cases = [
            // (cp, dp, expected kind)
            (v(1, 2, 0), v(1, 2, 0), "compatible"),
            (v(1, 2, 0), v(1, 2, 9), "compatible"),
            (v(1, 2, 9), v(1, 2, 0), "compatible"),
            (v(1, 2, 0), v(1, 1, 5), "older"),
            (v(1, 2, 0), v(1, 0, 0), "older"),
            (v(1, 2, 0), v(1, 3, 0), "incompatible"),
            (v(1, 2, 0), v(2, 2, 0), "incompatible"),
            (v(2, 0, 0), v(1, 9, 9), "incompatible"),
        ];
        for (cp, dp, want) in cases {
            let got = compatibility(&cp, &dp);
            let kind = match &got {
                Compatibility::Compatible => "compatible",
                Compatibility::CompatibleOlder => "older",
                Compatibility::Incompatible { .. } => "incompatible",
            };
            assert_eq!(kind, want, "cp {cp} dp {dp}: {got:?}");
        }
    }

    #[test]
    fn incompatible_reasons_are_clear() {
        let Compatibility::Incompatible { reason } =
            compatibility(&Version::new(1, 2, 0), &Version::new(1, 3, 0))
        else {
            panic!("expected incompatible");
        };
        assert!(
            reason.contains("1.3.0") && reason.contains("1.2.0") && reason.contains("newer"),
            "{reason}"
        );
        let Compatibility::Incompatible { reason } =
            compatibility(&Version::new(2, 0, 0), &Version::new(1, 0, 0))
        else {
            panic!("expected incompatible");
        };
        assert!(reason.contains("major"), "{reason}");
    }
}
