//! The single-entity verbs of every core-entity path, top-level or nested: create, get by id
//! or name, upsert (PUT), merge (PATCH) and delete, with Kong's status codes.

use axum::http::StatusCode;
use axum::Json;
use fleetgate_config::{parse_entity, Entity, EntityKind};
use serde_json::Value;
use uuid::Uuid;

use super::scope::{check_parent, prepare_body, Scope};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{ensure_id, name_field, EntityWrite, StoreError};

fn parse<E: Entity>(body: &Value) -> ApiResult<E> {
    parse_entity::<E>(body).map_err(ApiError::fields)
}

/// POST: 201 with the stored entity.
pub async fn create<E: Entity>(
    state: &AppState,
    scope: &Scope,
    body: Value,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = prepare_body(body, scope)?;
    let mut entity: E = parse(&body)?;
    ensure_id(&mut entity);
    let record = state
        .store
        .create_entity(
            scope.org,
            scope.control_plane,
            EntityWrite::from_entity(&entity)?,
        )
        .await?;
    state
        .cluster
        .spawn_config_changed(scope.org, scope.control_plane);
    Ok((StatusCode::CREATED, Json(record.to_api_json())))
}

/// GET by id, or by name where Kong allows it.
pub async fn show<E: Entity>(state: &AppState, scope: &Scope, key: &str) -> ApiResult<Json<Value>> {
    let record = state
        .store
        .find_entity(scope.org, scope.control_plane, E::KIND, key)
        .await?;
    check_parent(&record, scope)?;
    Ok(Json(record.to_api_json()))
}

/// PUT: create or replace, answered 200 either way as Kong's and Konnect's specs say. The
/// path names the entity by id, or by name (then a new entity gets that name, as in Kong).
pub async fn put<E: Entity>(
    state: &AppState,
    scope: &Scope,
    key: &str,
    body: Value,
) -> ApiResult<Json<Value>> {
    let mut body = prepare_body(body, scope)?;
    let existing = match state
        .store
        .find_entity(scope.org, scope.control_plane, E::KIND, key)
        .await
    {
        Ok(record) => {
            check_parent(&record, scope)?;
            Some(record.id)
        }
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if Uuid::parse_str(key).is_err() {
        // Addressed by name: the path's name is the entity's name, for create and replace.
        let Some(field) = name_field(E::KIND) else {
            return Err(ApiError::NotFound(format!(
                "{} {key:?} was not found",
                E::KIND.singular()
            )));
        };
        if let Some(map) = body.as_object_mut() {
            map.entry(field.to_string())
                .or_insert_with(|| Value::String(key.to_string()));
        }
    }
    let id = match (existing, Uuid::parse_str(key)) {
        (Some(id), _) => id,
        (None, Ok(id)) => id,
        (None, Err(_)) => Uuid::new_v4(),
    };
    let mut entity: E = parse(&body)?;
    if !entity.id().is_nil() && entity.id() != id {
        return Err(ApiError::field("id", "must match the id in the path"));
    }
    entity.set_id(id);
    let (record, _created) = state
        .store
        .upsert_entity(
            scope.org,
            scope.control_plane,
            EntityWrite::from_entity(&entity)?,
        )
        .await?;
    state
        .cluster
        .spawn_config_changed(scope.org, scope.control_plane);
    Ok(Json(record.to_api_json()))
}

/// Recursive JSON merge: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

/// PATCH: merges the body into the stored entity and validates the result as a whole.
pub async fn patch<E: Entity>(
    state: &AppState,
    scope: &Scope,
    key: &str,
    patch: Value,
) -> ApiResult<Json<Value>> {
    if !patch.is_object() {
        return Err(ApiError::field("body", "must be a JSON object"));
    }
    let record = state
        .store
        .find_entity(scope.org, scope.control_plane, E::KIND, key)
        .await?;
    check_parent(&record, scope)?;
    let mut body = record.body.clone();
    // A `url` in a patch replaces the service's protocol/host/port/path, as in Kong.
    if E::KIND == EntityKind::Service && patch.get("url").is_some() {
        if let Some(map) = body.as_object_mut() {
            for field in ["protocol", "host", "port", "path"] {
                map.remove(field);
            }
        }
    }
    merge(&mut body, patch);
    let body = prepare_body(body, scope)?;
    let mut entity: E = parse(&body)?;
    if entity.id() != record.id {
        return Err(ApiError::field("id", "cannot be changed"));
    }
    entity.set_id(record.id);
    let record = state
        .store
        .update_entity(
            scope.org,
            scope.control_plane,
            EntityWrite::from_entity(&entity)?,
        )
        .await?;
    state
        .cluster
        .spawn_config_changed(scope.org, scope.control_plane);
    Ok(Json(record.to_api_json()))
}

/// DELETE: 204, also when the entity does not exist ("deleted or the resource didn't exist"
/// in Kong's and Konnect's specs), so a retried delete succeeds. Another parent's child on a
/// nested path is still a 404: the path names something that is not there.
pub async fn remove<E: Entity>(
    state: &AppState,
    scope: &Scope,
    key: &str,
) -> ApiResult<StatusCode> {
    let record = match state
        .store
        .find_entity(scope.org, scope.control_plane, E::KIND, key)
        .await
    {
        Ok(record) => record,
        Err(StoreError::NotFound(_)) => return Ok(StatusCode::NO_CONTENT),
        Err(e) => return Err(e.into()),
    };
    check_parent(&record, scope)?;
    match state
        .store
        .delete_entity(scope.org, scope.control_plane, E::KIND, record.id)
        .await
    {
        // Deleted meanwhile by another request: the outcome the caller wanted.
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state
        .cluster
        .spawn_config_changed(scope.org, scope.control_plane);
    Ok(StatusCode::NO_CONTENT)
}
