//! `/v2/control-planes/{id}/core-entities/…`: Kong Admin API entities of a control plane's
//! gateway config, with Kong's verbs: list, create, get by id or name, upsert (PUT), merge
//! (PATCH), delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::{
    parse_entity, CaCertificate, Certificate, Consumer, Entity, EntityKind, EntityRef,
    KeyAuthCredential, Plugin, Route, Service, Sni, Target, Upstream,
};
use serde_json::Value;
use uuid::Uuid;

use super::extract::{parse_id, JsonBody, Page, PageOf, PathParams, QueryParams};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{ensure_id, name_field, EntityRecord, EntityWrite, ReferenceRow};

/// Routes of every core entity collection.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    router = collection::<Service>(router);
    router = collection::<Route>(router);
    router = collection::<Consumer>(router);
    router = collection::<Plugin>(router);
    router = collection::<Upstream>(router);
    router = collection::<Target>(router);
    router = collection::<Certificate>(router);
    router = collection::<Sni>(router);
    router = collection::<CaCertificate>(router);
    router
        .route(
            "/v2/control-planes/{control_plane_id}/core-entities/consumers/{consumer}/key-auth",
            get(list_key_auth).post(create_key_auth),
        )
        .route(
            "/v2/control-planes/{control_plane_id}/core-entities/consumers/{consumer}/key-auth/{credential}",
            get(show_key_auth)
                .put(put_key_auth)
                .patch(patch_key_auth)
                .delete(delete_key_auth),
        )
}

/// The path of a collection, as registered and as documented.
pub fn collection_path(kind: EntityKind) -> String {
    format!(
        "/v2/control-planes/{{control_plane_id}}/core-entities/{}",
        kind.path_segment()
    )
}

fn collection<E: Entity>(router: Router<AppState>) -> Router<AppState> {
    let base = collection_path(E::KIND);
    router.route(&base, get(list::<E>).post(create::<E>)).route(
        &format!("{base}/{{entity}}"),
        get(show::<E>)
            .put(put::<E>)
            .patch(patch::<E>)
            .delete(remove::<E>),
    )
}

/// Where an entity lives: its control plane and, for nested routes, the parent it must
/// reference (a consumer for key-auth credentials).
struct Scope {
    org: Uuid,
    control_plane: Uuid,
    parent: Option<(&'static str, EntityKind, Uuid)>,
}

async fn scope(state: &AppState, caller: &Caller, control_plane: &str) -> ApiResult<Scope> {
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

async fn scope_with_consumer(
    state: &AppState,
    caller: &Caller,
    control_plane: &str,
    consumer: &str,
) -> ApiResult<Scope> {
    let mut scope = scope(state, caller, control_plane).await?;
    let consumer = state
        .store
        .find_entity(
            scope.org,
            scope.control_plane,
            EntityKind::Consumer,
            consumer,
        )
        .await?;
    scope.parent = Some(("consumer", EntityKind::Consumer, consumer.id));
    Ok(scope)
}

/// Drops the read-only timestamps clients echo back and pins the nested parent reference.
fn prepare_body(mut body: Value, scope: &Scope) -> ApiResult<Value> {
    let Some(map) = body.as_object_mut() else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    map.remove("created_at");
    map.remove("updated_at");
    if let Some((field, kind, id)) = scope.parent {
        let wanted = serde_json::to_value(EntityRef { id }).unwrap_or(Value::Null);
        match map.get(field) {
            None | Some(Value::Null) => {
                map.insert(field.into(), wanted);
            }
            Some(given) if *given == wanted => {}
            Some(_) => {
                return Err(ApiError::field(
                    format!("{field}.id"),
                    format!("must be the {} of the path ({id})", kind.singular()),
                ))
            }
        }
    }
    Ok(body)
}

fn parse<E: Entity>(body: &Value) -> ApiResult<E> {
    parse_entity::<E>(body).map_err(ApiError::fields)
}

/// Checks that a stored entity belongs to the nested parent of the path.
fn check_parent(record: &EntityRecord, scope: &Scope) -> ApiResult<()> {
    if let Some((field, kind, id)) = scope.parent {
        let owner = record
            .body
            .get(field)
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str);
        if owner != Some(id.to_string().as_str()) {
            return Err(ApiError::NotFound(format!(
                "{} {} of {} {id} was not found",
                record.kind.singular(),
                record.id,
                kind.singular()
            )));
        }
    }
    Ok(())
}

async fn do_list<E: Entity>(
    state: &AppState,
    scope: &Scope,
    query: &QueryParams,
) -> ApiResult<Json<PageOf<Value>>> {
    let page = Page::from_query(query)?;
    let parent = scope
        .parent
        .map(|(_, to_kind, to_id)| ReferenceRow { to_kind, to_id });
    let records = state
        .store
        .list_entities(
            scope.org,
            scope.control_plane,
            E::KIND,
            parent,
            page.after.as_deref(),
            page.fetch_limit(),
        )
        .await?;
    let items: Vec<Value> = records.iter().map(EntityRecord::to_api_json).collect();
    Ok(Json(page.finish(items, |v| {
        v.get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    })))
}

async fn do_create<E: Entity>(
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

async fn do_show<E: Entity>(state: &AppState, scope: &Scope, key: &str) -> ApiResult<Json<Value>> {
    let record = state
        .store
        .find_entity(scope.org, scope.control_plane, E::KIND, key)
        .await?;
    check_parent(&record, scope)?;
    Ok(Json(record.to_api_json()))
}

/// PUT: create or replace. The path names the entity by id, or by name (then a new entity
/// gets that name, as in Kong).
async fn do_put<E: Entity>(
    state: &AppState,
    scope: &Scope,
    key: &str,
    body: Value,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
        Err(crate::store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let by_name = Uuid::parse_str(key).is_err();
    if by_name {
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
    let (record, created) = state
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
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record.to_api_json())))
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

async fn do_patch<E: Entity>(
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

async fn do_delete<E: Entity>(state: &AppState, scope: &Scope, key: &str) -> ApiResult<StatusCode> {
    let record = state
        .store
        .find_entity(scope.org, scope.control_plane, E::KIND, key)
        .await?;
    check_parent(&record, scope)?;
    state
        .store
        .delete_entity(scope.org, scope.control_plane, E::KIND, record.id)
        .await?;
    state
        .cluster
        .spawn_config_changed(scope.org, scope.control_plane);
    Ok(StatusCode::NO_CONTENT)
}

async fn list<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    query: QueryParams,
) -> ApiResult<Json<PageOf<Value>>> {
    let scope = scope(&state, &caller, &cp).await?;
    do_list::<E>(&state, &scope, &query).await
}

async fn create<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    do_create::<E>(&state, &scope, body).await
}

async fn show<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    let scope = scope(&state, &caller, &cp).await?;
    do_show::<E>(&state, &scope, &key).await
}

async fn put<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    do_put::<E>(&state, &scope, &key, body).await
}

async fn patch<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    do_patch::<E>(&state, &scope, &key, body).await
}

async fn remove<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    do_delete::<E>(&state, &scope, &key).await
}

async fn list_key_auth(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, consumer)): PathParams<(String, String)>,
    query: QueryParams,
) -> ApiResult<Json<PageOf<Value>>> {
    let scope = scope_with_consumer(&state, &caller, &cp, &consumer).await?;
    do_list::<KeyAuthCredential>(&state, &scope, &query).await
}

async fn create_key_auth(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, consumer)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_write()?;
    let scope = scope_with_consumer(&state, &caller, &cp, &consumer).await?;
    do_create::<KeyAuthCredential>(&state, &scope, body).await
}

async fn show_key_auth(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, consumer, key)): PathParams<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let scope = scope_with_consumer(&state, &caller, &cp, &consumer).await?;
    do_show::<KeyAuthCredential>(&state, &scope, &key).await
}

async fn put_key_auth(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, consumer, key)): PathParams<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_write()?;
    let scope = scope_with_consumer(&state, &caller, &cp, &consumer).await?;
    do_put::<KeyAuthCredential>(&state, &scope, &key, body).await
}

async fn patch_key_auth(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, consumer, key)): PathParams<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require_write()?;
    let scope = scope_with_consumer(&state, &caller, &cp, &consumer).await?;
    do_patch::<KeyAuthCredential>(&state, &scope, &key, body).await
}

async fn delete_key_auth(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, consumer, key)): PathParams<(String, String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let scope = scope_with_consumer(&state, &caller, &cp, &consumer).await?;
    do_delete::<KeyAuthCredential>(&state, &scope, &key).await
}
