//! A dataplane group's `autoscale` and `environment` in Konnect's shapes: parsed by hand from
//! JSON so every problem names its exact field (`dataplane_groups[0].autoscale.base_rps`),
//! which serde's untagged enums cannot do.

use fleetgate_config::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloud::catalogue::{self, INSTANCE_SIZES, MAX_INSTANCES};
use crate::store::{Autoscale as StoredAutoscale, EnvironmentVariable};

/// How many nodes a group runs, as shown (Konnect's `ConfigurationDataPlaneGroupAutoscale`:
/// `static` carries `instance_type` and `requested_instances`, `autopilot` carries `base_rps`
/// and `max_rps`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Autoscale {
    /// `static` or `autopilot`.
    pub kind: String,
    /// Static: `small`, `medium` or `large`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Static: nodes to run, 0 to 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_instances: Option<u32>,
    /// Autopilot: requests per second always carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_rps: Option<u32>,
    /// Autopilot: requests per second it may grow to (10 x `base_rps` unless given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rps: Option<u32>,
}

impl From<&StoredAutoscale> for Autoscale {
    fn from(a: &StoredAutoscale) -> Self {
        match a {
            StoredAutoscale::Static {
                instance_type,
                requested_instances,
            } => Self {
                kind: "static".into(),
                instance_type: Some(instance_type.clone()),
                requested_instances: Some(*requested_instances),
                base_rps: None,
                max_rps: None,
            },
            StoredAutoscale::Autopilot { base_rps, max_rps } => Self {
                kind: "autopilot".into(),
                instance_type: None,
                requested_instances: None,
                base_rps: Some(*base_rps),
                max_rps: Some(*max_rps),
            },
        }
    }
}

/// One node environment variable (Konnect's `ConfigurationDataPlaneGroupEnvironmentField`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentField {
    /// `KONG_…` (as Konnect) or `FLEETGATE_…`, 6 to 120 characters of letters, digits and `_`.
    pub name: String,
    /// 1 to 120 characters.
    pub value: String,
}

/// Prefixes a node environment variable may have: Konnect's `KONG_`, which Konnect clients
/// send, and Fleetgate's own `FLEETGATE_` (what `fleetgate-dp` reads).
pub const ENVIRONMENT_PREFIXES: [&str; 2] = ["KONG_", "FLEETGATE_"];

fn push(errors: &mut Vec<FieldError>, field: String, reason: impl Into<String>) {
    errors.push(FieldError {
        field,
        reason: reason.into(),
    });
}

/// A whole number in `min..=max` at `object[key]`, or an error naming `prefix.key`.
fn number(
    object: &serde_json::Map<String, Value>,
    prefix: &str,
    key: &str,
    range: (u32, u32),
    errors: &mut Vec<FieldError>,
) -> Option<u32> {
    let field = format!("{prefix}.{key}");
    match object.get(key) {
        None => {
            push(errors, field, "is required");
            None
        }
        Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (range.0..=range.1).contains(&n) => Some(n),
            _ => {
                push(
                    errors,
                    field,
                    format!(
                        "{v} is out of range; use a whole number from {} to {}",
                        range.0, range.1
                    ),
                );
                None
            }
        },
    }
}

/// Parses `autoscale` at `prefix` (e.g. `dataplane_groups[0].autoscale`).
pub fn autoscale(
    prefix: &str,
    raw: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<StoredAutoscale> {
    let Some(object) = raw.as_object() else {
        push(errors, prefix.into(), "must be an object with a kind");
        return None;
    };
    let kind = object.get("kind").and_then(Value::as_str);
    let allowed: &[&str] = match kind {
        Some("static") => &["kind", "instance_type", "requested_instances"],
        Some("autopilot") => &["kind", "base_rps", "max_rps"],
        _ => {
            push(
                errors,
                format!("{prefix}.kind"),
                "must be static or autopilot",
            );
            return None;
        }
    };
    let start = errors.len();
    for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
        push(
            errors,
            format!("{prefix}.{key}"),
            format!(
                "is not a field of {} autoscale; use {}",
                kind.unwrap_or_default(),
                allowed.join(", ")
            ),
        );
    }
    let parsed = if kind == Some("static") {
        let size = match object.get("instance_type").and_then(Value::as_str) {
            Some(name) if catalogue::instance_size(name).is_some() => Some(name.to_string()),
            other => {
                let names: Vec<&str> = INSTANCE_SIZES.iter().map(|s| s.name).collect();
                push(
                    errors,
                    format!("{prefix}.instance_type"),
                    match other {
                        None => "is required".to_string(),
                        Some(name) => format!("{name:?} is not one of {}", names.join(", ")),
                    },
                );
                None
            }
        };
        let requested = number(
            object,
            prefix,
            "requested_instances",
            (0, MAX_INSTANCES),
            errors,
        );
        match (size, requested) {
            (Some(instance_type), Some(requested_instances)) => Some(StoredAutoscale::Static {
                instance_type,
                requested_instances,
            }),
            _ => None,
        }
    } else {
        let base = number(object, prefix, "base_rps", (1, u32::MAX / 10), errors);
        let max = match (base, object.contains_key("max_rps")) {
            (Some(base), true) => number(object, prefix, "max_rps", (base, u32::MAX), errors),
            // Konnect's default: ten times the base.
            (Some(base), false) => Some(base * 10),
            (None, _) => None,
        };
        match (base, max) {
            (Some(base_rps), Some(max_rps)) => {
                Some(StoredAutoscale::Autopilot { base_rps, max_rps })
            }
            _ => None,
        }
    };
    if errors.len() == start {
        parsed
    } else {
        None
    }
}

/// Checks `environment` at `prefix`: names with an allowed prefix, letters, digits and `_`,
/// each once; values 1 to 120 characters.
pub fn environment(
    prefix: &str,
    given: Vec<EnvironmentField>,
    errors: &mut Vec<FieldError>,
) -> Vec<EnvironmentVariable> {
    let mut seen = std::collections::HashSet::new();
    for (i, var) in given.iter().enumerate() {
        let name = &var.name;
        let well_formed = (6..=120).contains(&name.len())
            && ENVIRONMENT_PREFIXES.iter().any(|p| name.starts_with(p))
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !well_formed {
            push(
                errors,
                format!("{prefix}[{i}].name"),
                format!(
                    "{name:?} must start with {} and hold 6 to 120 letters, digits or _",
                    ENVIRONMENT_PREFIXES.join(" or ")
                ),
            );
        } else if !seen.insert(name.as_str()) {
            push(errors, format!("{prefix}[{i}].name"), "is listed twice");
        }
        if var.value.is_empty() || var.value.chars().count() > 120 {
            push(
                errors,
                format!("{prefix}[{i}].value"),
                "must be 1 to 120 characters",
            );
        }
    }
    given
        .into_iter()
        .map(|v| EnvironmentVariable {
            name: v.name,
            value: v.value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn autoscale_kinds_parse_and_max_rps_defaults_to_ten_times_base() {
        let mut errors = Vec::new();
        let stat = autoscale(
            "a",
            &json!({"kind": "static", "instance_type": "small", "requested_instances": 2}),
            &mut errors,
        );
        assert_eq!(
            stat,
            Some(StoredAutoscale::Static {
                instance_type: "small".into(),
                requested_instances: 2
            })
        );
        let auto = autoscale(
            "a",
            &json!({"kind": "autopilot", "base_rps": 100}),
            &mut errors,
        );
        assert_eq!(
            auto,
            Some(StoredAutoscale::Autopilot {
                base_rps: 100,
                max_rps: 1000
            })
        );
        assert!(errors.is_empty());
    }

    #[test]
    fn autoscale_problems_name_their_field() {
        let mut errors = Vec::new();
        autoscale(
            "g.autoscale",
            &json!({"kind": "static", "instance_type": "t3.small", "requested_instances": 21}),
            &mut errors,
        );
        autoscale(
            "h.autoscale",
            &json!({"kind": "autopilot", "base_rps": 100, "max_rps": 10, "instance_type": "small"}),
            &mut errors,
        );
        autoscale("i.autoscale", &json!({"kind": "dynamic"}), &mut errors);
        assert_eq!(
            fields(&errors),
            vec![
                "g.autoscale.instance_type",
                "g.autoscale.requested_instances",
                "h.autoscale.instance_type",
                "h.autoscale.max_rps",
                "i.autoscale.kind"
            ]
        );
    }

    #[test]
    fn environment_names_need_a_known_prefix_once() {
        let mut errors = Vec::new();
        let var = |name: &str, value: &str| EnvironmentField {
            name: name.into(),
            value: value.into(),
        };
        let kept = environment(
            "env",
            vec![
                var("KONG_LOG_LEVEL", "info"),
                var("FLEETGATE_LOG", "debug"),
                var("PATH", "/bin"),
                var("KONG_LOG_LEVEL", "debug"),
                var("KONG_X-Y", ""),
            ],
            &mut errors,
        );
        assert_eq!(kept.len(), 5);
        assert_eq!(
            fields(&errors),
            vec!["env[2].name", "env[3].name", "env[4].name", "env[4].value"]
        );
    }
}
