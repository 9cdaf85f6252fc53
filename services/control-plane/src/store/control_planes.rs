//! Control planes: the unit a gateway config (and later its data-plane nodes) belongs to.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::organizations::parse_uuid;
use super::{Store, StoreError, StoreResult, Window};

/// A stored control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneRecord {
    /// Control plane id.
    pub id: Uuid,
    /// Owning organisation.
    pub organization_id: Uuid,
    /// Unique name within the organisation.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Konnect's cluster type as it was sent (`CLUSTER_TYPE_CONTROL_PLANE` or
    /// `CLUSTER_TYPE_HYBRID`: both are Fleetgate's hybrid control plane). Never changes.
    pub cluster_type: String,
    /// `pinned_client_certs` or `pki_client_certs`.
    pub auth_type: String,
    /// Whether cloud gateways may run this control plane's config.
    pub cloud_gateway: bool,
    /// Where the control plane's data planes can be reached, as the user registered them.
    pub proxy_urls: Vec<ProxyUrl>,
    /// Bumped by every config write.
    pub config_version: i64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds (config writes included).
    pub updated_at: i64,
}

/// A URL the data planes of a control plane can be reached at (Konnect's `ProxyURL`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"host": "example.com", "port": 443, "protocol": "https"}))]
pub struct ProxyUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port, 1 to 65535.
    pub port: u16,
    /// `http` or `https`.
    pub protocol: String,
}

/// Fields of a new control plane.
#[derive(Debug, Clone)]
pub struct NewControlPlane {
    /// Unique name within the organisation.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Cluster type.
    pub cluster_type: String,
    /// How data planes authenticate.
    pub auth_type: String,
    /// Usable by cloud gateways.
    pub cloud_gateway: bool,
    /// Where its data planes can be reached.
    pub proxy_urls: Vec<ProxyUrl>,
}

/// A partial update; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New labels (replaces all).
    pub labels: Option<BTreeMap<String, String>>,
    /// New auth type.
    pub auth_type: Option<String>,
    /// New proxy URLs (replaces all).
    pub proxy_urls: Option<Vec<ProxyUrl>>,
}

/// One condition of a label filter (`labels=key:value,existCheck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelMatch {
    /// The label is set to exactly this value.
    Equals {
        /// Label key.
        key: String,
        /// Label value.
        value: String,
    },
    /// The label is set, to any value.
    Exists {
        /// Label key.
        key: String,
    },
}

/// Which control planes a list shows and in which order; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneFilter {
    /// Name equals.
    pub name_eq: Option<String>,
    /// Name differs.
    pub name_neq: Option<String>,
    /// Name contains (ASCII case-insensitive).
    pub name_contains: Option<String>,
    /// Id is one of these.
    pub ids: Option<Vec<Uuid>>,
    /// Cluster type is one of these.
    pub cluster_types: Option<Vec<String>>,
    /// Cluster type differs.
    pub cluster_type_neq: Option<String>,
    /// Usable by cloud gateways, or not.
    pub cloud_gateway: Option<bool>,
    /// Label conditions.
    pub labels: Vec<LabelMatch>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

const COLUMNS: &str = "id, organization_id, name, description, labels, cluster_type, auth_type, \
                       cloud_gateway, proxy_urls, config_version, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> StoreResult<ControlPlaneRecord> {
    let labels: String = row.try_get("labels")?;
    let proxy_urls: String = row.try_get("proxy_urls")?;
    Ok(ControlPlaneRecord {
        id: parse_uuid(row.try_get("id")?)?,
        organization_id: parse_uuid(row.try_get("organization_id")?)?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        labels: serde_json::from_str(&labels).context("decode stored control plane labels")?,
        cluster_type: row.try_get("cluster_type")?,
        auth_type: row.try_get("auth_type")?,
        cloud_gateway: row.try_get::<i64, _>("cloud_gateway")? != 0,
        proxy_urls: serde_json::from_str(&proxy_urls)
            .context("decode stored control plane proxy URLs")?,
        config_version: row.try_get("config_version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn name_taken(name: &str) -> StoreError {
    StoreError::Conflict {
        message: format!("a control plane named {name:?} already exists in this organization"),
        field: Some("name".into()),
    }
}

fn map_unique(err: sqlx::Error, name: &str) -> StoreError {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => name_taken(name),
        other => other.into(),
    }
}

/// Replaces the label rows the list filters use with `labels`.
async fn write_labels(
    conn: &mut AnyConnection,
    id: Uuid,
    labels: &BTreeMap<String, String>,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM control_plane_labels WHERE control_plane_id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    for (key, value) in labels {
        sqlx::query(
            "INSERT INTO control_plane_labels (control_plane_id, key, value) VALUES ($1, $2, $3)",
        )
        .bind(id.to_string())
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A bound value of a dynamically built query.
enum Arg {
    Text(String),
    Int(i64),
}

/// Adds `arg` and returns its placeholder.
fn param(args: &mut Vec<Arg>, arg: Arg) -> String {
    args.push(arg);
    format!("${}", args.len())
}

/// `LIKE` pattern for "contains `needle`", with `\` escaping the wildcards.
fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::from("%");
    for c in needle.to_ascii_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The `WHERE` condition of a filtered list and its arguments.
fn conditions(org: Uuid, filter: &ControlPlaneFilter) -> (String, Vec<Arg>) {
    let mut args = Vec::new();
    let mut clauses = vec![format!(
        "organization_id = {}",
        param(&mut args, Arg::Text(org.to_string()))
    )];
    if let Some(name) = &filter.name_eq {
        clauses.push(format!(
            "name = {}",
            param(&mut args, Arg::Text(name.clone()))
        ));
    }
    if let Some(name) = &filter.name_neq {
        clauses.push(format!(
            "name <> {}",
            param(&mut args, Arg::Text(name.clone()))
        ));
    }
    if let Some(needle) = &filter.name_contains {
        // LOWER on both sides: SQLite's LIKE ignores ASCII case and PostgreSQL's does not.
        clauses.push(format!(
            "LOWER(name) LIKE {} ESCAPE '\\'",
            param(&mut args, Arg::Text(contains_pattern(needle)))
        ));
    }
    if let Some(ids) = &filter.ids {
        let list: Vec<String> = ids
            .iter()
            .map(|id| param(&mut args, Arg::Text(id.to_string())))
            .collect();
        clauses.push(one_of("id", &list));
    }
    if let Some(types) = &filter.cluster_types {
        let list: Vec<String> = types
            .iter()
            .map(|t| param(&mut args, Arg::Text(t.clone())))
            .collect();
        clauses.push(one_of("cluster_type", &list));
    }
    if let Some(cluster_type) = &filter.cluster_type_neq {
        clauses.push(format!(
            "cluster_type <> {}",
            param(&mut args, Arg::Text(cluster_type.clone()))
        ));
    }
    if let Some(cloud_gateway) = filter.cloud_gateway {
        clauses.push(format!(
            "cloud_gateway = {}",
            param(&mut args, Arg::Int(i64::from(cloud_gateway)))
        ));
    }
    for label in &filter.labels {
        let (key, value) = match label {
            LabelMatch::Equals { key, value } => (key, Some(value)),
            LabelMatch::Exists { key } => (key, None),
        };
        let mut clause = format!(
            "EXISTS (SELECT 1 FROM control_plane_labels l WHERE l.control_plane_id = \
             control_planes.id AND l.key = {}",
            param(&mut args, Arg::Text(key.clone()))
        );
        if let Some(value) = value {
            clause.push_str(&format!(
                " AND l.value = {}",
                param(&mut args, Arg::Text(value.clone()))
            ));
        }
        clause.push(')');
        clauses.push(clause);
    }
    (clauses.join(" AND "), args)
}

/// Binds `args` in order to a query or scalar query.
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Text(text) => query.bind(text.clone()),
                Arg::Int(int) => query.bind(*int),
            };
        }
        query
    }};
}

async fn fetch(conn: &mut AnyConnection, org: Uuid, id: Uuid) -> StoreResult<ControlPlaneRecord> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM control_planes WHERE organization_id = $1 AND id = $2"
    ))
    .bind(org.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => from_row(&row),
        None => Err(StoreError::NotFound(format!("control plane {id}"))),
    }
}

impl Store {
    /// Creates a control plane in the organisation.
    pub async fn create_control_plane(
        &self,
        org: Uuid,
        new: NewControlPlane,
    ) -> StoreResult<ControlPlaneRecord> {
        let now = self.clock().now();
        let record = ControlPlaneRecord {
            id: Uuid::new_v4(),
            organization_id: org,
            name: new.name,
            description: new.description,
            labels: new.labels,
            cluster_type: new.cluster_type,
            auth_type: new.auth_type,
            cloud_gateway: new.cloud_gateway,
            proxy_urls: new.proxy_urls,
            config_version: 0,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO control_planes (id, organization_id, name, description, labels, \
             cluster_type, auth_type, cloud_gateway, proxy_urls, config_version, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(record.id.to_string())
        .bind(org.to_string())
        .bind(&record.name)
        .bind(&record.description)
        .bind(serde_json::to_string(&record.labels).context("encode labels")?)
        .bind(&record.cluster_type)
        .bind(&record.auth_type)
        .bind(i64::from(record.cloud_gateway))
        .bind(serde_json::to_string(&record.proxy_urls).context("encode proxy URLs")?)
        .bind(record.config_version)
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, &record.name))?;
        write_labels(&mut tx, record.id, &record.labels).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// One control plane of the organisation; another organisation's is "not found".
    pub async fn control_plane(&self, org: Uuid, id: Uuid) -> StoreResult<ControlPlaneRecord> {
        let mut conn = self.pool().acquire().await?;
        fetch(&mut conn, org, id).await
    }

    /// A window of the organisation's control planes that pass `filter`, oldest first (or
    /// newest first), and how many pass it in all.
    pub async fn list_control_planes(
        &self,
        org: Uuid,
        filter: &ControlPlaneFilter,
        window: Window,
    ) -> StoreResult<(Vec<ControlPlaneRecord>, i64)> {
        let (condition, args) = conditions(org, filter);
        let direction = if filter.newest_first { "DESC" } else { "ASC" };
        let limit = args.len() + 1;
        let offset = args.len() + 2;
        let select = format!(
            "SELECT {COLUMNS} FROM control_planes WHERE {condition} \
             ORDER BY created_at {direction}, id {direction} LIMIT ${limit} OFFSET ${offset}"
        );
        let count = format!("SELECT COUNT(*) FROM control_planes WHERE {condition}");
        // Both in one transaction, so the total describes the same rows as the page.
        let mut tx = self.pool().begin().await?;
        let rows = bind_all!(sqlx::query(&select), &args)
            .bind(window.limit)
            .bind(window.offset)
            .fetch_all(&mut *tx)
            .await?;
        let total: i64 = bind_all!(sqlx::query_scalar(&count), &args)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            rows.iter().map(from_row).collect::<StoreResult<_>>()?,
            total,
        ))
    }

    /// Applies a partial update.
    pub async fn update_control_plane(
        &self,
        org: Uuid,
        id: Uuid,
        update: ControlPlaneUpdate,
    ) -> StoreResult<ControlPlaneRecord> {
        let mut tx = self.begin_write().await?;
        let mut record = fetch(&mut tx, org, id).await?;
        if let Some(name) = update.name {
            record.name = name;
        }
        if let Some(description) = update.description {
            record.description = description;
        }
        let labels_changed = update.labels.is_some();
        if let Some(labels) = update.labels {
            record.labels = labels;
        }
        if let Some(auth_type) = update.auth_type {
            record.auth_type = auth_type;
        }
        if let Some(proxy_urls) = update.proxy_urls {
            record.proxy_urls = proxy_urls;
        }
        record.updated_at = self.clock().now();
        sqlx::query(
            "UPDATE control_planes SET name = $1, description = $2, labels = $3, auth_type = $4, \
             proxy_urls = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&record.name)
        .bind(&record.description)
        .bind(serde_json::to_string(&record.labels).context("encode labels")?)
        .bind(&record.auth_type)
        .bind(serde_json::to_string(&record.proxy_urls).context("encode proxy URLs")?)
        .bind(record.updated_at)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, &record.name))?;
        if labels_changed {
            write_labels(&mut tx, id, &record.labels).await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    /// Deletes a control plane with its whole gateway config.
    pub async fn delete_control_plane(&self, org: Uuid, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let cp = id.to_string();
        // Its cloud-gateway nodes must be gone first, or they would be orphaned.
        let cloud = sqlx::query(
            "SELECT id FROM cloud_configurations WHERE control_plane_id = $1 AND organization_id = $2",
        )
            .bind(&cp)
            .bind(org.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if cloud.is_some() {
            return Err(StoreError::Conflict {
                message: format!(
                    "control plane {id} has a cloud-gateway configuration; delete it and wait \
                     until its nodes are gone"
                ),
                field: None,
            });
        }
        let done = sqlx::query("DELETE FROM control_planes WHERE organization_id = $1 AND id = $2")
            .bind(org.to_string())
            .bind(&cp)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("control plane {id}")));
        }
        // Explicit deletes rather than relying on ON DELETE CASCADE, which SQLite only honours
        // when the foreign_keys pragma is on for that connection.
        for table in [
            "entity_references",
            "entity_unique_keys",
            "core_entities",
            "control_plane_cas",
            "dp_client_certificates",
            "control_plane_labels",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE control_plane_id = $1"))
                .bind(&cp)
                .execute(&mut *tx)
                .await?;
        }
        // Its services stop counting for billing now; their history stays.
        super::billing::close_all_services(&mut tx, id, self.clock().now()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The control plane's current config version, scoped to the organisation.
    pub async fn config_version(&self, org: Uuid, id: Uuid) -> StoreResult<i64> {
        let row = sqlx::query(
            "SELECT config_version FROM control_planes WHERE organization_id = $1 AND id = $2",
        )
        .bind(org.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => Ok(row.try_get("config_version")?),
            None => Err(StoreError::NotFound(format!("control plane {id}"))),
        }
    }
}

/// `column IN (…)`; an empty list (an `oeq` of nothing, or id filters that share no id)
/// matches no row, where SQL would refuse `IN ()`.
fn one_of(column: &str, placeholders: &[String]) -> String {
    if placeholders.is_empty() {
        "1 = 0".to_string()
    } else {
        format!("{column} IN ({})", placeholders.join(", "))
    }
}
