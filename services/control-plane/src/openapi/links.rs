//! OpenAPI links from the operations that create a resource to the ones that use its id, so a
//! client generator or a stateful fuzzer (schemathesis) can follow them: without them, every
//! operation under `/{id}` is only ever called with made-up ids and answers 404.
//!
//! Derived from the paths rather than written by hand, so a new collection is linked as soon
//! as it is documented: an operation that creates under `P` (POST answering 201, or a PUT on a
//! collection such as cloud-gateway configurations) links to every operation whose path is
//! `P/{name}...` and whose other path parameters all appear in `P` too.

use std::collections::BTreeMap;

use utoipa::openapi::link::{Link, LinkBuilder};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::RefOr;

/// utoipa 5 serialises a link's `operationId` under its Rust name; the document functions
/// rename it.
pub(super) const MISNAMED_OPERATION_ID: &str = "operation_id";

/// Renames a YAML link's `operation_id` to OpenAPI's `operationId`, keeping its place.
pub(super) fn rename_operation_id(link: &mut serde_norway::Value) {
    let Some(map) = link.as_mapping_mut() else {
        return;
    };
    let renamed: serde_norway::Mapping = std::mem::take(map)
        .into_iter()
        .map(|(key, value)| {
            if key.as_str() == Some(MISNAMED_OPERATION_ID) {
                ("operationId".into(), value)
            } else {
                (key, value)
            }
        })
        .collect();
    *map = renamed;
}

/// The path parameters of a path, in order.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The status of the answer that carries the new resource, if this operation creates one.
fn creating_status(method: &HttpMethod, path: &str, op: &Operation) -> Option<&'static str> {
    let responses = &op.responses.responses;
    match method {
        HttpMethod::Post if responses.contains_key("201") => Some("201"),
        // A PUT on a collection (its last segment is no parameter) sets desired state and
        // answers with the resource, id included.
        HttpMethod::Put if !path.ends_with('}') && responses.contains_key("200") => Some("200"),
        _ => None,
    }
}

/// Where the new id is in the answer: `/item/id` for Konnect's `{item}` wrappers, else `/id`.
fn id_pointer(op: &Operation, status: &str) -> &'static str {
    let wrapped = op
        .responses
        .responses
        .get(status)
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|r| {
            r.pointer("/content/application~1json/schema/properties/item")
                .cloned()
        })
        .is_some();
    if wrapped {
        "/item/id"
    } else {
        "/id"
    }
}

/// Links to add to one operation: its path, its index under that path, the answer's status,
/// and the named links.
type PlannedLinks = (String, usize, &'static str, Vec<(String, RefOr<Link>)>);

/// Adds the links to every creating operation's success answer.
pub(super) fn link_created_ids(paths: &mut BTreeMap<String, Vec<(HttpMethod, Operation)>>) {
    // Computed first, applied after, since the targets live in the same map.
    let mut planned: Vec<PlannedLinks> = Vec::new();
    for (path, ops) in paths.iter() {
        let base_params = path_params(path);
        for (index, (method, op)) in ops.iter().enumerate() {
            let Some(status) = creating_status(method, path, op) else {
                continue;
            };
            let pointer = id_pointer(op, status);
            let prefix = format!("{path}/{{");
            let mut links = Vec::new();
            for (target_path, target_ops) in paths.iter() {
                let Some(rest) = target_path.strip_prefix(&prefix) else {
                    continue;
                };
                let Some((id_param, _)) = rest.split_once('}') else {
                    continue;
                };
                let fillable = path_params(target_path)
                    .iter()
                    .all(|p| *p == id_param || base_params.contains(p));
                if !fillable {
                    continue;
                }
                for (_, target) in target_ops {
                    let Some(target_id) = target.operation_id.clone() else {
                        continue;
                    };
                    let mut link = LinkBuilder::new()
                        .operation_id(target_id.clone())
                        .parameter(id_param, format!("$response.body#{pointer}"));
                    for param in &base_params {
                        link = link.parameter(*param, format!("$request.path.{param}"));
                    }
                    links.push((target_id, RefOr::T(link.build())));
                }
            }
            if !links.is_empty() {
                planned.push((path.clone(), index, status, links));
            }
        }
    }
    for (path, index, status, links) in planned {
        let Some((_, op)) = paths.get_mut(&path).and_then(|ops| ops.get_mut(index)) else {
            continue;
        };
        if let Some(RefOr::T(response)) = op.responses.responses.get_mut(status) {
            response.links.extend(links);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::document_json;

    #[test]
    fn creating_operations_link_to_the_ones_using_their_ids() {
        let doc = document_json();
        let create_service = &doc["paths"]
            ["/v2/control-planes/{control_plane_id}/core-entities/services"]["post"]["responses"]
            ["201"]["links"];
        let get = &create_service["get_service"];
        assert_eq!(get["operationId"], "get_service");
        assert_eq!(get["parameters"]["entity"], "$response.body#/id");
        assert_eq!(
            get["parameters"]["control_plane_id"],
            "$request.path.control_plane_id"
        );
        let create_cp = &doc["paths"]["/v2/control-planes"]["post"]["responses"]["201"]["links"];
        assert!(
            create_cp["list_services"].is_object(),
            "a new control plane links to its core entities: {create_cp}"
        );
    }
}
