//! Helpers for the canonical serialisation: free-form JSON inside entities (plugin config,
//! route sources/destinations) is written with sorted object keys, so the bytes do not
//! depend on the order a client happened to send, nor on serde_json's `preserve_order`
//! feature being switched on by some other crate in the build.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// A JSON value that serialises with object keys sorted at every level.
pub(crate) struct Sorted<'a>(pub &'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    out.serialize_entry(k, &Sorted(v))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for v in items {
                    out.serialize_element(&Sorted(v))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// `serialize_with` for a `Value` field.
pub(crate) fn sorted_value<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    Sorted(value).serialize(serializer)
}

/// `serialize_with` for an `Option<Vec<Value>>` field.
pub(crate) fn sorted_values<S: Serializer>(
    values: &Option<Vec<Value>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match values {
        None => serializer.serialize_none(),
        Some(items) => {
            let mut out = serializer.serialize_seq(Some(items.len()))?;
            for v in items {
                out.serialize_element(&Sorted(v))?;
            }
            out.end()
        }
    }
}
