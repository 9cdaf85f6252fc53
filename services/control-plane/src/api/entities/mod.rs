//! `/v2/control-planes/{id}/core-entities/…`: Kong Admin API entities of a control plane's
//! gateway config, with Kong's verbs (list, create, get by id or name, upsert with PUT,
//! merge with PATCH, delete), Kong's list shape (`size`, `offset`, `tags` ->
//! `{data, offset, next}`), the nested collections Kong's SDKs use
//! (`services/{id}/routes`, `upstreams/{id}/targets`, …) and Kong's 401 body.

mod listing;
mod scope;
mod unauthorized;
mod writes;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use fleetgate_config::{
    CaCertificate, Certificate, Consumer, Entity, EntityKind, KeyAuthCredential, Plugin, Route,
    Service, Sni, Target, Upstream,
};
use serde_json::Value;

pub use listing::{LIST_PARAMS, MAX_FILTER_TAGS};
pub use unauthorized::{kong_unauthorized, GatewayUnauthorizedError};

use super::extract::{JsonBody, PathParams, QueryParams};
use super::paging::KongList;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use scope::{nested_scope, scope, Scope};

/// Where every core-entity path starts.
pub const BASE: &str = "/v2/control-planes/{control_plane_id}/core-entities";

/// Routes of every core entity collection, top-level and nested.
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
    router = nested::<Route>(router, SERVICE_ROUTES);
    router = nested::<Plugin>(router, SERVICE_PLUGINS);
    router = nested::<Plugin>(router, ROUTE_PLUGINS);
    router = nested::<Plugin>(router, CONSUMER_PLUGINS);
    router = nested::<KeyAuthCredential>(router, CONSUMER_KEY_AUTH);
    router = nested::<Target>(router, UPSTREAM_TARGETS);
    router
        .route(KEY_AUTHS, get(list_key_auths))
        .route(&format!("{KEY_AUTHS}/{{entity}}"), get(show_key_auth))
        // Last, so it covers every route above.
        .layer(axum::middleware::map_response(kong_unauthorized))
}

/// The path of a collection, as registered and as documented.
pub fn collection_path(kind: EntityKind) -> String {
    format!("{BASE}/{}", kind.path_segment())
}

/// Key-auth credentials of every consumer (read-only; they are written under their consumer).
pub const KEY_AUTHS: &str = "/v2/control-planes/{control_plane_id}/core-entities/key-auths";

/// A collection nested under a parent entity, as Kong's Admin API and Konnect mount them:
/// `{parent collection}/{parent id or name}/{segment}`. Its entities reference the parent
/// through `field`.
#[derive(Debug, Clone, Copy)]
pub struct Nesting {
    /// The parent's kind.
    pub parent: EntityKind,
    /// The child's reference field.
    pub field: &'static str,
    /// The path segment after the parent.
    pub segment: &'static str,
}

impl Nesting {
    /// Name of the parent's path parameter (`service`, `consumer`, …).
    pub fn parent_param(&self) -> &'static str {
        self.field
    }

    /// The collection's path, as registered and as documented.
    pub fn path(&self) -> String {
        format!(
            "{BASE}/{}/{{{}}}/{}",
            self.parent.collection(),
            self.parent_param(),
            self.segment
        )
    }

    /// The list's path relative to the `core-entities` base, for `next`.
    fn relative(&self, scope: &Scope) -> String {
        let parent = scope.parent.map(|p| p.id.to_string()).unwrap_or_default();
        format!("/{}/{parent}/{}", self.parent.collection(), self.segment)
    }

    async fn scope(
        &self,
        state: &AppState,
        caller: &Caller,
        cp: &str,
        parent: &str,
    ) -> ApiResult<Scope> {
        nested_scope(state, caller, cp, self.parent, self.field, parent).await
    }
}

/// `services/{service}/routes`.
pub const SERVICE_ROUTES: Nesting = Nesting {
    parent: EntityKind::Service,
    field: "service",
    segment: "routes",
};
/// `services/{service}/plugins`.
pub const SERVICE_PLUGINS: Nesting = Nesting {
    parent: EntityKind::Service,
    field: "service",
    segment: "plugins",
};
/// `routes/{route}/plugins`.
pub const ROUTE_PLUGINS: Nesting = Nesting {
    parent: EntityKind::Route,
    field: "route",
    segment: "plugins",
};
/// `consumers/{consumer}/plugins`.
pub const CONSUMER_PLUGINS: Nesting = Nesting {
    parent: EntityKind::Consumer,
    field: "consumer",
    segment: "plugins",
};
/// `consumers/{consumer}/key-auth`.
pub const CONSUMER_KEY_AUTH: Nesting = Nesting {
    parent: EntityKind::Consumer,
    field: "consumer",
    segment: "key-auth",
};
/// `upstreams/{upstream}/targets`.
pub const UPSTREAM_TARGETS: Nesting = Nesting {
    parent: EntityKind::Upstream,
    field: "upstream",
    segment: "targets",
};

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

async fn list<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    query: QueryParams,
) -> ApiResult<Json<KongList<Value>>> {
    let scope = scope(&state, &caller, &cp).await?;
    listing::list::<E>(
        &state,
        &scope,
        &query,
        &format!("/{}", E::KIND.path_segment()),
    )
    .await
}

async fn create<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    writes::create::<E>(&state, &scope, body).await
}

async fn show<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    let scope = scope(&state, &caller, &cp).await?;
    writes::show::<E>(&state, &scope, &key).await
}

async fn put<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    writes::put::<E>(&state, &scope, &key, body).await
}

async fn patch<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    writes::patch::<E>(&state, &scope, &key, body).await
}

async fn remove<E: Entity>(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require_write()?;
    let scope = scope(&state, &caller, &cp).await?;
    writes::remove::<E>(&state, &scope, &key).await
}

/// A nested collection: the same verbs as a top-level one, each first resolving the parent
/// of the path (404 when it is not there) and keeping to its children.
fn nested<E: Entity>(router: Router<AppState>, nest: Nesting) -> Router<AppState> {
    let base = nest.path();
    router
        .route(
            &base,
            get(
                move |State(state): State<AppState>,
                      caller: Caller,
                      PathParams((cp, parent)): PathParams<(String, String)>,
                      query: QueryParams| async move {
                    let scope = nest.scope(&state, &caller, &cp, &parent).await?;
                    listing::list::<E>(&state, &scope, &query, &nest.relative(&scope)).await
                },
            )
            .post(
                move |State(state): State<AppState>,
                      caller: Caller,
                      PathParams((cp, parent)): PathParams<(String, String)>,
                      JsonBody(body): JsonBody| async move {
                    caller.require_write()?;
                    let scope = nest.scope(&state, &caller, &cp, &parent).await?;
                    writes::create::<E>(&state, &scope, body).await
                },
            ),
        )
        .route(
            &format!("{base}/{{entity}}"),
            get(
                move |State(state): State<AppState>,
                      caller: Caller,
                      PathParams((cp, parent, key)): PathParams<(String, String, String)>| async move {
                    let scope = nest.scope(&state, &caller, &cp, &parent).await?;
                    writes::show::<E>(&state, &scope, &key).await
                },
            )
            .put(
                move |State(state): State<AppState>,
                      caller: Caller,
                      PathParams((cp, parent, key)): PathParams<(String, String, String)>,
                      JsonBody(body): JsonBody| async move {
                    caller.require_write()?;
                    let scope = nest.scope(&state, &caller, &cp, &parent).await?;
                    writes::put::<E>(&state, &scope, &key, body).await
                },
            )
            .patch(
                move |State(state): State<AppState>,
                      caller: Caller,
                      PathParams((cp, parent, key)): PathParams<(String, String, String)>,
                      JsonBody(body): JsonBody| async move {
                    caller.require_write()?;
                    let scope = nest.scope(&state, &caller, &cp, &parent).await?;
                    writes::patch::<E>(&state, &scope, &key, body).await
                },
            )
            .delete(
                move |State(state): State<AppState>,
                      caller: Caller,
                      PathParams((cp, parent, key)): PathParams<(String, String, String)>| async move {
                    caller.require_write()?;
                    let scope = nest.scope(&state, &caller, &cp, &parent).await?;
                    writes::remove::<E>(&state, &scope, &key).await
                },
            ),
        )
}

async fn list_key_auths(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(cp): PathParams<String>,
    query: QueryParams,
) -> ApiResult<Json<KongList<Value>>> {
    let scope = scope(&state, &caller, &cp).await?;
    listing::list::<KeyAuthCredential>(&state, &scope, &query, "/key-auths").await
}

async fn show_key_auth(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((cp, key)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    let scope = scope(&state, &caller, &cp).await?;
    writes::show::<KeyAuthCredential>(&state, &scope, &key).await
}
