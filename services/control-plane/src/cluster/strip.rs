//! Config fields an older data plane does not know, removed before the config is sent to it
//! (docs/architecture.md: for an older node the control plane removes fields that version does
//! not know).
//!
//! Every field added to the gateway config model after the first release gets one line in
//! [`REGISTRY`]. A data plane whose minor version is older than a field's `introduced_in`
//! receives the config without that field; nodes at this control plane's minor get the shared
//! frame untouched.

use anyhow::Context;
use bytes::Bytes;
use fleetgate_config::{EntityKind, GatewayConfig};
use fleetgate_protocol::{CpMessage, Version};
use serde_json::Value;

use super::hub::PushFrame;

/// A config field and the version that introduced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripRule {
    /// First version whose data planes understand the field.
    pub introduced_in: Version,
    /// Entity collection the field belongs to.
    pub kind: EntityKind,
    /// Top-level field of the entity.
    pub field: &'static str,
}

/// Fields added after 0.1.0. Empty while every field dates from the first release.
pub const REGISTRY: &[StripRule] = &[];

/// Whether a data plane at `dp` may lack fields a control plane at `cp` sends.
pub fn needs_stripping(cp: Version, dp: Version) -> bool {
    dp.major == cp.major && dp.minor < cp.minor && rules_for(REGISTRY, dp).next().is_some()
}

fn rules_for(rules: &[StripRule], dp: Version) -> impl Iterator<Item = &StripRule> {
    rules
        .iter()
        .filter(move |r| (r.introduced_in.major, r.introduced_in.minor) > (dp.major, dp.minor))
}

/// Removes, in place, every field of `rules` that a data plane at `dp` does not know.
/// Returns how many values were removed.
pub fn strip_config(config: &mut Value, dp: Version, rules: &[StripRule]) -> usize {
    let mut removed = 0;
    for rule in rules_for(rules, dp) {
        let Some(items) = config
            .get_mut(rule.kind.collection())
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for item in items {
            if let Some(map) = item.as_object_mut() {
                removed += usize::from(map.remove(rule.field).is_some());
            }
        }
    }
    removed
}

/// Builds the stripped `reconfigure` frame of `frame` for a data plane at `dp`.
pub fn strip_frame(frame: &PushFrame, dp: Version) -> anyhow::Result<PushFrame> {
    strip_frame_with(frame, dp, REGISTRY)
}

fn strip_frame_with(
    frame: &PushFrame,
    dp: Version,
    rules: &[StripRule],
) -> anyhow::Result<PushFrame> {
    let CpMessage::Reconfigure {
        version,
        config_hash,
        mut config,
        control_plane_id,
    } = fleetgate_protocol::decode_binary(&frame.frame).context("decode the shared frame")?
    else {
        anyhow::bail!("the shared frame is not a reconfigure message");
    };
    if strip_config(&mut config, dp, rules) == 0 {
        return Ok(PushFrame {
            version,
            hash: config_hash,
            frame: frame.frame.clone(),
        });
    }
    // The older node checks the hash of what it receives, so the hash is recomputed over the
    // stripped config rather than copied from the full one.
    let hash = serde_json::from_value::<GatewayConfig>(config.clone())
        .map(|c| {
            let mut c = c;
            c.sort_canonical();
            c.hash().to_string()
        })
        .unwrap_or(config_hash);
    let message = CpMessage::Reconfigure {
        version,
        config_hash: hash.clone(),
        config,
        control_plane_id,
    };
    let bytes = fleetgate_protocol::encode_binary(&message).context("encode the stripped frame")?;
    Ok(PushFrame {
        version,
        hash,
        frame: Bytes::from(bytes),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: &[StripRule] = &[StripRule {
        introduced_in: Version::new(0, 3, 0),
        kind: EntityKind::Service,
        field: "tls_verify",
    }];

    #[test]
    fn strips_only_fields_newer_than_the_node() {
        let config = json!({"services": [{"id": "a", "tls_verify": true, "host": "x"}]});
        let mut old = config.clone();
        assert_eq!(strip_config(&mut old, Version::new(0, 2, 9), RULES), 1);
        assert_eq!(old, json!({"services": [{"id": "a", "host": "x"}]}));
        let mut same = config.clone();
        assert_eq!(strip_config(&mut same, Version::new(0, 3, 0), RULES), 0);
        assert_eq!(same, config);
    }

    #[test]
    fn current_registry_strips_nothing_for_this_release() {
        let cp = super::super::hub::control_plane_version();
        assert!(!needs_stripping(cp, cp));
    }

    #[test]
    fn stripped_frame_keeps_version_and_drops_the_field() {
        let message = CpMessage::Reconfigure {
            version: 7,
            config_hash: "h".into(),
            config: json!({"services": [{"id": "a", "tls_verify": true}]}),
            control_plane_id: None,
        };
        let frame = PushFrame {
            version: 7,
            hash: "h".into(),
            frame: Bytes::from(fleetgate_protocol::encode_binary(&message).unwrap()),
        };
        let stripped = strip_frame_with(&frame, Version::new(0, 1, 0), RULES).unwrap();
        let CpMessage::Reconfigure {
            version, config, ..
        } = fleetgate_protocol::decode_binary(&stripped.frame).unwrap()
        else {
            panic!("not a reconfigure");
        };
        assert_eq!(version, 7);
        assert!(config["services"][0].get("tls_verify").is_none());
    }
}
