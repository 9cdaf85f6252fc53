//! Core entities of a control plane's gateway config, with Kong's integrity rules: natural
//! keys are unique per control plane, references must resolve, deleting a referenced entity is
//! refused (`Restrict`) or takes its dependants with it (`Cascade`).

use std::collections::{BTreeSet, VecDeque};

use anyhow::Context;
use fleetgate_config::{Entity, EntityKind, KeyAuthCredential, OnDelete, Reference};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::billing;
use super::organizations::parse_uuid;
use super::{now_unix, Backend, Store, StoreError, StoreResult};

/// An entity ready to be written: its canonical body plus the keys and references the store
/// enforces.
#[derive(Debug, Clone)]
pub struct EntityWrite {
    /// Entity type.
    pub kind: EntityKind,
    /// Entity id (assigned).
    pub id: Uuid,
    /// The entity as JSON.
    pub body: serde_json::Value,
    /// Natural keys unique within the control plane.
    pub unique_keys: Vec<(&'static str, String)>,
    /// Entities this one points at.
    pub references: Vec<Reference>,
}

impl EntityWrite {
    /// Prepares any entity for writing.
    pub fn from_entity<E: Entity>(entity: &E) -> anyhow::Result<Self> {
        Ok(Self {
            kind: E::KIND,
            id: entity.id(),
            body: serde_json::to_value(entity)
                .with_context(|| format!("encode {}", E::KIND.singular()))?,
            unique_keys: entity.unique_keys(),
            references: entity.references(),
        })
    }
}

/// Gives a new entity a random id unless the caller chose one.
pub fn ensure_id<E: Entity>(entity: &mut E) {
    if entity.id().is_nil() {
        entity.set_id(Uuid::new_v4());
    }
}

/// A stored entity.
#[derive(Debug, Clone)]
pub struct EntityRecord {
    /// Entity type.
    pub kind: EntityKind,
    /// Entity id.
    pub id: Uuid,
    /// The entity as JSON (without timestamps).
    pub body: serde_json::Value,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

impl EntityRecord {
    /// The body with Kong's `created_at`/`updated_at` added, as the API shows it.
    pub fn to_api_json(&self) -> serde_json::Value {
        let mut body = self.body.clone();
        if let Some(map) = body.as_object_mut() {
            map.insert("created_at".into(), self.created_at.into());
            map.insert("updated_at".into(), self.updated_at.into());
        }
        body
    }
}

/// A row of the reference table, used to filter lists by parent (e.g. key-auth of a consumer).
#[derive(Debug, Clone, Copy)]
pub struct ReferenceRow {
    /// The parent's kind.
    pub to_kind: EntityKind,
    /// The parent's id.
    pub to_id: Uuid,
}

/// Kong's `tags` filter on lists: entities carrying every tag (`tags=a,b`) or any of them
/// (`tags=a/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// Every tag must be present.
    All(Vec<String>),
    /// At least one tag must be present.
    Any(Vec<String>),
}

/// What a list of entities is narrowed to, and the window after the cursor.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntityListQuery<'a> {
    /// Only entities referencing this parent (the routes of a service, …).
    pub parent: Option<ReferenceRow>,
    /// Only entities whose tags match.
    pub tags: Option<&'a TagFilter>,
    /// Only ids after this one (the previous page's last id).
    pub after: Option<&'a str>,
    /// At most this many rows.
    pub limit: i64,
}

/// The SQL condition (` AND …`) for a tag filter over `e.body`'s `tags` array, adding its
/// values to `binds`. The stored body is text on both engines, so each reads it as JSON
/// with its own function; the tag values are always bound, never spliced in.
fn tag_condition(backend: Backend, filter: &TagFilter, binds: &mut Vec<String>) -> String {
    let elements = match backend {
        Backend::Sqlite => "json_each(e.body, '$.tags') t",
        Backend::Postgres => "jsonb_array_elements_text(e.body::jsonb -> 'tags') AS t(value)",
    };
    let mut placeholders = |tags: &[String]| -> Vec<String> {
        tags.iter()
            .map(|tag| {
                binds.push(tag.clone());
                format!("${}", binds.len())
            })
            .collect()
    };
    match filter {
        TagFilter::All(tags) => placeholders(tags)
            .into_iter()
            .map(|p| format!(" AND EXISTS (SELECT 1 FROM {elements} WHERE t.value = {p})"))
            .collect(),
        TagFilter::Any(tags) => format!(
            " AND EXISTS (SELECT 1 FROM {elements} WHERE t.value IN ({}))",
            placeholders(tags).join(", ")
        ),
    }
}

/// The field Kong lets callers use instead of the id in a path (`/services/{name}`).
pub fn name_field(kind: EntityKind) -> Option<&'static str> {
    match kind {
        EntityKind::Service | EntityKind::Route | EntityKind::Upstream | EntityKind::Sni => {
            Some("name")
        }
        EntityKind::Consumer => Some("username"),
        _ => None,
    }
}

fn kind_of(collection: &str) -> StoreResult<EntityKind> {
    EntityKind::from_collection(collection)
        .with_context(|| format!("decode stored entity kind {collection:?}"))
        .map_err(StoreError::Internal)
}

fn record_from_row(row: &sqlx::any::AnyRow) -> StoreResult<EntityRecord> {
    let body: String = row.try_get("body")?;
    Ok(EntityRecord {
        kind: kind_of(&row.try_get::<String, _>("kind")?)?,
        id: parse_uuid(row.try_get("id")?)?,
        body: serde_json::from_str(&body).context("decode stored entity body")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn on_delete_str(mode: OnDelete) -> &'static str {
    match mode {
        OnDelete::Restrict => "restrict",
        OnDelete::Cascade => "cascade",
    }
}

/// Starts a config write: bumps the version (taking the per-control-plane write lock) and
/// proves the control plane belongs to the organisation.
async fn bump_version(conn: &mut AnyConnection, org: Uuid, cp: Uuid) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE control_planes SET config_version = config_version + 1, updated_at = $1 \
         WHERE id = $2 AND organization_id = $3",
    )
    .bind(now_unix())
    .bind(cp.to_string())
    .bind(org.to_string())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("control plane {cp}")));
    }
    Ok(())
}

async fn fetch_record(
    conn: &mut AnyConnection,
    cp: Uuid,
    kind: EntityKind,
    id: Uuid,
) -> StoreResult<Option<EntityRecord>> {
    let row = sqlx::query(
        "SELECT kind, id, body, created_at, updated_at FROM core_entities \
         WHERE control_plane_id = $1 AND kind = $2 AND id = $3",
    )
    .bind(cp.to_string())
    .bind(kind.collection())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(record_from_row).transpose()
}

/// A short human label for an entity in conflict messages: `route 'checkout' (id)`.
async fn describe(
    conn: &mut AnyConnection,
    cp: Uuid,
    kind: EntityKind,
    id: Uuid,
) -> StoreResult<String> {
    let row = sqlx::query(
        "SELECT value FROM entity_unique_keys WHERE control_plane_id = $1 AND kind = $2 \
         AND entity_id = $3 AND field IN ('name', 'username') ORDER BY field LIMIT 1",
    )
    .bind(cp.to_string())
    .bind(kind.collection())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => format!(
            "{} '{}' ({id})",
            kind.singular(),
            row.try_get::<String, _>(0)?
        ),
        None => format!("{} {id}", kind.singular()),
    })
}

/// Checks references and natural keys of `write`, then stores it (insert or replace).
async fn write_entity(
    conn: &mut AnyConnection,
    cp: Uuid,
    write: &EntityWrite,
    existing: Option<&EntityRecord>,
) -> StoreResult<EntityRecord> {
    let cp_s = cp.to_string();
    let id_s = write.id.to_string();
    for reference in &write.references {
        if fetch_record(conn, cp, reference.kind, reference.id)
            .await?
            .is_none()
        {
            return Err(StoreError::InvalidReference {
                field: format!("{}.id", reference.field),
                reason: format!(
                    "no {} with id {} exists in this control plane",
                    reference.kind.singular(),
                    reference.id
                ),
            });
        }
    }
    for (field, value) in &write.unique_keys {
        let owner = sqlx::query(
            "SELECT entity_id FROM entity_unique_keys WHERE control_plane_id = $1 AND kind = $2 \
             AND field = $3 AND value = $4",
        )
        .bind(&cp_s)
        .bind(write.kind.collection())
        .bind(*field)
        .bind(value)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(owner) = owner {
            let owner: String = owner.try_get(0)?;
            if owner != id_s {
                return Err(StoreError::Conflict {
                    message: format!(
                        "a {} with {field} '{value}' already exists ({owner})",
                        write.kind.singular()
                    ),
                    field: Some((*field).to_string()),
                });
            }
        }
    }
    let now = now_unix();
    let created_at = existing.map_or(now, |old| old.created_at);
    let mut stored = write.body.clone();
    if write.kind == EntityKind::KeyAuthCredential {
        // Data planes refuse the key from `created_at + ttl` on.
        KeyAuthCredential::stamp_expiry(&mut stored, created_at);
    }
    let body = serde_json::to_string(&stored).context("encode entity body")?;
    match existing {
        Some(_) => {
            clear_side_rows(conn, cp, write.kind, write.id).await?;
            sqlx::query(
                "UPDATE core_entities SET body = $1, updated_at = $2 \
                 WHERE control_plane_id = $3 AND kind = $4 AND id = $5",
            )
            .bind(&body)
            .bind(now)
            .bind(&cp_s)
            .bind(write.kind.collection())
            .bind(&id_s)
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO core_entities (control_plane_id, kind, id, body, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&cp_s)
            .bind(write.kind.collection())
            .bind(&id_s)
            .bind(&body)
            .bind(now)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
    }
    insert_side_rows(conn, cp, std::slice::from_ref(write)).await?;
    Ok(EntityRecord {
        kind: write.kind,
        id: write.id,
        body: stored,
        created_at,
        updated_at: now,
    })
}

async fn clear_side_rows(
    conn: &mut AnyConnection,
    cp: Uuid,
    kind: EntityKind,
    id: Uuid,
) -> StoreResult<()> {
    sqlx::query(
        "DELETE FROM entity_unique_keys WHERE control_plane_id = $1 AND kind = $2 \
         AND entity_id = $3",
    )
    .bind(cp.to_string())
    .bind(kind.collection())
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM entity_references WHERE control_plane_id = $1 AND from_kind = $2 \
         AND from_id = $3",
    )
    .bind(cp.to_string())
    .bind(kind.collection())
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT: well under both engines' bind-parameter limits.
pub(super) const INSERT_CHUNK: usize = 400;

/// `INSERT INTO … VALUES ($1, $2), ($3, $4), …` for `rows` rows of `columns` values. Written by
/// hand because sqlx's `QueryBuilder` over the `Any` driver emits `?` placeholders, which
/// PostgreSQL rejects; `$n` is understood by both engines.
pub(super) fn multi_row_insert(head: &str, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(head.len() + rows * columns * 6);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..columns {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + col + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

async fn insert_side_rows(
    conn: &mut AnyConnection,
    cp: Uuid,
    writes: &[EntityWrite],
) -> StoreResult<()> {
    let cp_s = cp.to_string();
    let keys: Vec<_> = writes
        .iter()
        .flat_map(|w| w.unique_keys.iter().map(move |(f, v)| (w, *f, v)))
        .collect();
    for chunk in keys.chunks(INSERT_CHUNK) {
        let sql = multi_row_insert(
            "INSERT INTO entity_unique_keys (control_plane_id, kind, field, value, entity_id)",
            chunk.len(),
            5,
        );
        let mut query = sqlx::query(&sql);
        for (w, field, value) in chunk {
            query = query
                .bind(cp_s.clone())
                .bind(w.kind.collection())
                .bind(*field)
                .bind((*value).clone())
                .bind(w.id.to_string());
        }
        query.execute(&mut *conn).await?;
    }
    let refs: Vec<_> = writes
        .iter()
        .flat_map(|w| w.references.iter().map(move |r| (w, r)))
        .collect();
    for chunk in refs.chunks(INSERT_CHUNK) {
        let sql = multi_row_insert(
            "INSERT INTO entity_references (control_plane_id, from_kind, from_id, field, \
             to_kind, to_id, on_delete)",
            chunk.len(),
            7,
        );
        let mut query = sqlx::query(&sql);
        for (w, r) in chunk {
            query = query
                .bind(cp_s.clone())
                .bind(w.kind.collection())
                .bind(w.id.to_string())
                .bind(r.field.as_ref())
                .bind(r.kind.collection())
                .bind(r.id.to_string())
                .bind(on_delete_str(r.on_delete));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    /// Finds an entity by id, or by its name where Kong allows that (`/services/{name}`).
    pub async fn find_entity(
        &self,
        org: Uuid,
        cp: Uuid,
        kind: EntityKind,
        id_or_name: &str,
    ) -> StoreResult<EntityRecord> {
        self.control_plane(org, cp).await?;
        let mut conn = self.pool().acquire().await?;
        let not_found = || StoreError::NotFound(format!("{} {id_or_name:?}", kind.singular()));
        if let Ok(id) = Uuid::parse_str(id_or_name) {
            if let Some(record) = fetch_record(&mut conn, cp, kind, id).await? {
                return Ok(record);
            }
        }
        let Some(field) = name_field(kind) else {
            return Err(not_found());
        };
        let owner = sqlx::query(
            "SELECT entity_id FROM entity_unique_keys WHERE control_plane_id = $1 AND kind = $2 \
             AND field = $3 AND value = $4",
        )
        .bind(cp.to_string())
        .bind(kind.collection())
        .bind(field)
        .bind(id_or_name)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(owner) = owner else {
            return Err(not_found());
        };
        let id = parse_uuid(owner.try_get(0)?)?;
        fetch_record(&mut conn, cp, kind, id)
            .await?
            .ok_or_else(not_found)
    }

    /// Lists entities of a kind in id order after the cursor: only those that reference
    /// `parent` when given, and only those whose `tags` match the filter. Both filters run in
    /// SQL, so a page is always `limit` matching rows however few entities match.
    pub async fn list_entities(
        &self,
        org: Uuid,
        cp: Uuid,
        kind: EntityKind,
        query: EntityListQuery<'_>,
    ) -> StoreResult<Vec<EntityRecord>> {
        self.control_plane(org, cp).await?;
        let mut binds = vec![cp.to_string(), kind.collection().to_string()];
        let mut sql = String::from(
            "SELECT e.kind, e.id, e.body, e.created_at, e.updated_at FROM core_entities e",
        );
        if query.parent.is_some() {
            sql.push_str(
                " JOIN entity_references r ON r.control_plane_id = e.control_plane_id \
                 AND r.from_kind = e.kind AND r.from_id = e.id",
            );
        }
        sql.push_str(" WHERE e.control_plane_id = $1 AND e.kind = $2");
        if let Some(parent) = query.parent {
            binds.push(parent.to_kind.collection().to_string());
            binds.push(parent.to_id.to_string());
            sql.push_str(&format!(
                " AND r.to_kind = ${} AND r.to_id = ${}",
                binds.len() - 1,
                binds.len()
            ));
        }
        if let Some(filter) = query.tags {
            sql.push_str(&tag_condition(self.backend(), filter, &mut binds));
        }
        binds.push(query.after.unwrap_or("").to_string());
        sql.push_str(&format!(
            " AND e.id > ${} ORDER BY e.id LIMIT ${}",
            binds.len(),
            binds.len() + 1
        ));
        let mut statement = sqlx::query(&sql);
        for value in binds {
            statement = statement.bind(value);
        }
        let rows = statement.bind(query.limit).fetch_all(self.pool()).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Creates an entity; its id must be new.
    pub async fn create_entity(
        &self,
        org: Uuid,
        cp: Uuid,
        write: EntityWrite,
    ) -> StoreResult<EntityRecord> {
        let mut tx = self.begin_write().await?;
        bump_version(&mut tx, org, cp).await?;
        if fetch_record(&mut tx, cp, write.kind, write.id)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict {
                message: format!(
                    "a {} with id {} already exists",
                    write.kind.singular(),
                    write.id
                ),
                field: Some("id".into()),
            });
        }
        let record = write_entity(&mut tx, cp, &write, None).await?;
        if write.kind == EntityKind::Service {
            billing::open_services(&mut tx, org, cp, &[write.id], self.clock().now()).await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    /// Creates or replaces an entity (Kong's PUT). Returns the record and whether it was new.
    pub async fn upsert_entity(
        &self,
        org: Uuid,
        cp: Uuid,
        write: EntityWrite,
    ) -> StoreResult<(EntityRecord, bool)> {
        let mut tx = self.begin_write().await?;
        bump_version(&mut tx, org, cp).await?;
        let existing = fetch_record(&mut tx, cp, write.kind, write.id).await?;
        let record = write_entity(&mut tx, cp, &write, existing.as_ref()).await?;
        if write.kind == EntityKind::Service && existing.is_none() {
            billing::open_services(&mut tx, org, cp, &[write.id], self.clock().now()).await?;
        }
        tx.commit().await?;
        Ok((record, existing.is_none()))
    }

    /// Replaces an existing entity (PATCH after merging); fails if it vanished meanwhile.
    pub async fn update_entity(
        &self,
        org: Uuid,
        cp: Uuid,
        write: EntityWrite,
    ) -> StoreResult<EntityRecord> {
        let mut tx = self.begin_write().await?;
        bump_version(&mut tx, org, cp).await?;
        let Some(existing) = fetch_record(&mut tx, cp, write.kind, write.id).await? else {
            return Err(StoreError::NotFound(format!(
                "{} {}",
                write.kind.singular(),
                write.id
            )));
        };
        let record = write_entity(&mut tx, cp, &write, Some(&existing)).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Deletes an entity and whatever Kong deletes with it (plugins of a consumer, targets of
    /// an upstream, …); refuses with a conflict naming the referencing entities when a
    /// `Restrict` reference (a route's service) points at it.
    pub async fn delete_entity(
        &self,
        org: Uuid,
        cp: Uuid,
        kind: EntityKind,
        id: Uuid,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        bump_version(&mut tx, org, cp).await?;
        if fetch_record(&mut tx, cp, kind, id).await?.is_none() {
            return Err(StoreError::NotFound(format!("{} {id}", kind.singular())));
        }
        let cp_s = cp.to_string();
        let mut doomed: BTreeSet<(EntityKind, Uuid)> = BTreeSet::from([(kind, id)]);
        let mut queue = VecDeque::from([(kind, id)]);
        let mut blockers: Vec<(EntityKind, Uuid)> = Vec::new();
        while let Some((k, i)) = queue.pop_front() {
            let rows = sqlx::query(
                "SELECT from_kind, from_id, on_delete FROM entity_references \
                 WHERE control_plane_id = $1 AND to_kind = $2 AND to_id = $3 ORDER BY from_id",
            )
            .bind(&cp_s)
            .bind(k.collection())
            .bind(i.to_string())
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let from = (
                    kind_of(&row.try_get::<String, _>(0)?)?,
                    parse_uuid(row.try_get(1)?)?,
                );
                let mode: String = row.try_get(2)?;
                if mode == "cascade" {
                    if doomed.insert(from) {
                        queue.push_back(from);
                    }
                } else if !blockers.contains(&from) {
                    blockers.push(from);
                }
            }
        }
        blockers.retain(|b| !doomed.contains(b));
        if !blockers.is_empty() {
            let mut names = Vec::new();
            for (k, i) in &blockers {
                names.push(describe(&mut tx, cp, *k, *i).await?);
            }
            let subject = describe(&mut tx, cp, kind, id).await?;
            return Err(StoreError::Conflict {
                message: format!(
                    "{subject} is still referenced by {}; delete or re-point them first",
                    names.join(", ")
                ),
                field: None,
            });
        }
        for (k, i) in &doomed {
            clear_side_rows(&mut tx, cp, *k, *i).await?;
            sqlx::query(
                "DELETE FROM core_entities WHERE control_plane_id = $1 AND kind = $2 AND id = $3",
            )
            .bind(&cp_s)
            .bind(k.collection())
            .bind(i.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let services: Vec<Uuid> = doomed
            .iter()
            .filter(|(k, _)| *k == EntityKind::Service)
            .map(|(_, i)| *i)
            .collect();
        billing::close_services(&mut tx, cp, &services, self.clock().now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the whole gateway config of a control plane in one transaction (declarative
    /// import): either every entity is written or none is. Returns the new config version.
    pub async fn replace_config(
        &self,
        org: Uuid,
        cp: Uuid,
        writes: Vec<EntityWrite>,
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        bump_version(&mut tx, org, cp).await?;
        let cp_s = cp.to_string();
        for table in ["entity_references", "entity_unique_keys", "core_entities"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE control_plane_id = $1"))
                .bind(&cp_s)
                .execute(&mut *tx)
                .await?;
        }
        let now = now_unix();
        let bodies = writes
            .iter()
            .map(|w| {
                if w.kind == EntityKind::KeyAuthCredential {
                    // An imported key's ttl counts from the import, which creates it.
                    let mut body = w.body.clone();
                    KeyAuthCredential::stamp_expiry(&mut body, now);
                    serde_json::to_string(&body)
                } else {
                    serde_json::to_string(&w.body)
                }
                .map(|b| (w, b))
            })
            .collect::<Result<Vec<_>, _>>()
            .context("encode entity bodies")?;
        for chunk in bodies.chunks(INSERT_CHUNK) {
            let sql = multi_row_insert(
                "INSERT INTO core_entities (control_plane_id, kind, id, body, created_at, \
                 updated_at)",
                chunk.len(),
                6,
            );
            let mut query = sqlx::query(&sql);
            for (w, body) in chunk {
                query = query
                    .bind(cp_s.clone())
                    .bind(w.kind.collection())
                    .bind(w.id.to_string())
                    .bind(body.clone())
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        insert_side_rows(&mut tx, cp, &writes).await?;
        let services = writes
            .iter()
            .filter(|w| w.kind == EntityKind::Service)
            .map(|w| w.id)
            .collect();
        billing::sync_services(&mut tx, org, cp, &services, self.clock().now()).await?;
        let version: i64 = sqlx::query("SELECT config_version FROM control_planes WHERE id = $1")
            .bind(&cp_s)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(version)
    }

    /// Every entity of the control plane with the config version they belong to. The version
    /// is read before and after; a write in between means a retry, so the pair is consistent
    /// on every backend without needing a snapshot isolation level.
    pub async fn load_config(
        &self,
        org: Uuid,
        cp: Uuid,
    ) -> StoreResult<(i64, Vec<(EntityKind, serde_json::Value)>)> {
        for _ in 0..20 {
            let before = self.config_version(org, cp).await?;
            let rows = sqlx::query(
                "SELECT kind, body FROM core_entities WHERE control_plane_id = $1 ORDER BY kind, id",
            )
            .bind(cp.to_string())
            .fetch_all(self.pool())
            .await?;
            let after = self.config_version(org, cp).await?;
            if before != after {
                continue;
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let kind = kind_of(&row.try_get::<String, _>(0)?)?;
                let body: String = row.try_get(1)?;
                out.push((
                    kind,
                    serde_json::from_str(&body).context("decode stored entity body")?,
                ));
            }
            return Ok((before, out));
        }
        Err(StoreError::Internal(anyhow::anyhow!(
            "load a consistent config of control plane {cp}: it kept changing"
        )))
    }
}
