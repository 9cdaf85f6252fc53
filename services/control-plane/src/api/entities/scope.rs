//! Where an entity request acts: the caller's control plane and, on nested paths
//! (`services/{id}/routes`), the parent every entity of the request must belong to.

use fleetgate_config::{EntityKind, EntityRef};
use serde_json::Value;
use uuid::Uuid;

use crate::api::extract::parse_id;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::EntityRecord;

/// The parent of a nested path, and the child's field that points at it.
#[derive(Debug, Clone, Copy)]
pub struct Parent {
    /// The child's reference field (`service`, `consumer`, `upstream`, …).
    pub field: &'static str,
    /// The parent's kind.
    pub kind: EntityKind,
    /// The parent's id (the path may name it by name; this is the resolved id).
    pub id: Uuid,
}

/// Where an entity lives: its organisation, control plane and, for nested paths, parent.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// The caller's organisation.
    pub org: Uuid,
    /// The control plane of the path.
    pub control_plane: Uuid,
    /// The parent of a nested path.
    pub parent: Option<Parent>,
}

/// The scope of a top-level path: the control plane must be the caller's.
pub async fn scope(state: &AppState, caller: &Caller, control_plane: &str) -> ApiResult<Scope> {
    let control_plane = parse_id(control_plane, "control plane")?;
    state
        .store
        .control_plane(caller.organization_id, control_plane)
        .await?;
    Ok(Scope {
        org: caller.organization_id,
        control_plane,
        parent: None,
    })
}

/// The scope of a nested path: the parent (by id or, where Kong allows, by name) must exist
/// in the control plane, else 404.
pub async fn nested_scope(
    state: &AppState,
    caller: &Caller,
    control_plane: &str,
    parent_kind: EntityKind,
    field: &'static str,
    parent: &str,
) -> ApiResult<Scope> {
    let mut scope = scope(state, caller, control_plane).await?;
    let record = state
        .store
        .find_entity(scope.org, scope.control_plane, parent_kind, parent)
        .await?;
    scope.parent = Some(Parent {
        field,
        kind: parent_kind,
        id: record.id,
    });
    Ok(scope)
}

/// Drops the read-only timestamps clients echo back and pins the nested parent reference: a
/// body that names no parent gets the path's, one that names another parent is a 400.
pub fn prepare_body(mut body: Value, scope: &Scope) -> ApiResult<Value> {
    let Some(map) = body.as_object_mut() else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    map.remove("created_at");
    map.remove("updated_at");
    if let Some(parent) = scope.parent {
        let wanted = serde_json::to_value(EntityRef { id: parent.id }).unwrap_or(Value::Null);
        match map.get(parent.field) {
            None | Some(Value::Null) => {
                map.insert(parent.field.into(), wanted);
            }
            Some(given) if *given == wanted => {}
            Some(_) => {
                return Err(ApiError::field(
                    format!("{}.id", parent.field),
                    format!(
                        "must be the {} of the path ({})",
                        parent.kind.singular(),
                        parent.id
                    ),
                ))
            }
        }
    }
    Ok(body)
}

/// Checks that a stored entity belongs to the nested parent of the path: another parent's
/// child is not found here, exactly as if it did not exist.
pub fn check_parent(record: &EntityRecord, scope: &Scope) -> ApiResult<()> {
    if let Some(parent) = scope.parent {
        let owner = record
            .body
            .get(parent.field)
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str);
        if owner != Some(parent.id.to_string().as_str()) {
            return Err(ApiError::NotFound(format!(
                "{} {} of {} {} was not found",
                record.kind.singular(),
                record.id,
                parent.kind.singular(),
                parent.id
            )));
        }
    }
    Ok(())
}
