//! The control plane's store: one API over SQLite (embedded default) and PostgreSQL.
//!
//! Queries are written once in the SQL both backends understand and run through sqlx's `Any`
//! driver. Every write is one transaction. Writes that touch a control plane's gateway config
//! start by bumping that control plane's `config_version`: on PostgreSQL the row lock this takes
//! serialises writers of one control plane, on SQLite the write lock does, so the
//! check-then-insert steps of referential integrity below cannot race.

mod analytics;
mod billing;
mod cloud_gateways;
mod control_planes;
mod dp_certificates;
mod entities;
mod join_tokens;
mod licenses;
mod nodes;
mod organizations;
mod portals;

pub use analytics::{
    AggregateFilter, AggregateKey, AggregateMap, AggregateValues, DirtyBucket, NodeRowCache,
    TelemetryBatchWrite,
};
pub use billing::{Clock, ControlPlaneUsage, ServiceLifetime, Usage};
pub use cloud_gateways::{
    AutopilotDecision, Autoscale, CloudProvider, CloudResource, ConfigurationRecord,
    DataplaneGroupRecord, DesiredConfiguration, DesiredDataplaneGroup, EnvironmentVariable,
    NetworkRecord, NewNetwork, NewProviderAccount, NewTransitGateway, ProviderAccountRecord,
    TransitGatewayRecord, AUTOPILOT_SIZE, AUTOSCALE_AUTOPILOT, AUTOSCALE_STATIC,
};
pub use control_planes::{
    ControlPlaneFilter, ControlPlaneRecord, ControlPlaneUpdate, LabelMatch, NewControlPlane,
    ProxyUrl,
};
pub use dp_certificates::{
    CertificateOwner, ControlPlaneCa, DpCertificateRecord, NewDpCertificate,
};
pub use entities::{
    ensure_id, name_field, EntityListQuery, EntityRecord, EntityWrite, ReferenceRow, TagFilter,
};
pub use join_tokens::{JoinTokenRecord, JoinTokenRefusal, NewJoinToken, JOIN_TOKEN_PREFIX};
pub use licenses::LicenseRecord;
pub use nodes::{
    NodeHeartbeat, NodeHello, NodeRecord, NODE_STATUS_INCOMPATIBLE, NODE_STATUS_NORMAL,
};
pub use organizations::{Organization, Role, TokenRecord};
pub use portals::{NewPortal, PortalRecord, PortalUpdate};

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database engine sits behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL server (how the control plane scales out).
    Postgres,
}

/// Errors a caller of the store must branch on; everything else is an internal failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist (or belongs to another organisation).
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule or a reference forbids the write.
    #[error("{message}")]
    Conflict {
        /// Human-readable description naming the conflicting entities.
        message: String,
        /// The field that conflicts, when one does.
        field: Option<String>,
    },
    /// A reference points at an entity that does not exist.
    #[error("{field}: {reason}")]
    InvalidReference {
        /// The referencing field, e.g. `service.id`.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// Anything else: the database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict {
                    message: "the resource conflicts with an existing one".into(),
                    field: None,
                };
            }
        }
        StoreError::Internal(anyhow::Error::new(err).context("run a database query"))
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The control plane's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Shared by clones, so a test pinning it affects the server's copy too.
    clock: Arc<Clock>,
}

impl Store {
    /// Connects to `database_url` (`sqlite://…` or `postgres://…`) and applies migrations.
    pub async fn connect(database_url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else if database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!(
                "unsupported database URL scheme in {}: expected sqlite:// or postgres://",
                redact_url(database_url)
            );
        };
        let options = AnyConnectOptions::from_str(database_url)
            .with_context(|| format!("parse database URL {}", redact_url(database_url)))?
            .disable_statement_logging();
        let max = match backend {
            // One writer at a time anyway; a small pool avoids lock contention on the file.
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed during a write; the busy timeout makes a
                        // second writer wait for the lock instead of failing at once.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("connect to database {}", redact_url(database_url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .context("apply database migrations")?;
        Ok(Self {
            pool,
            backend,
            clock: Arc::default(),
        })
    }

    /// The SQLite URL of the embedded default database inside `data_dir` (created if missing).
    pub fn sqlite_url_in(data_dir: &Path) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("fleetgate.db").display()
        )
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Cheap round trip used by `/readyz`.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("ping the database")?;
        Ok(())
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at `BEGIN`
    /// (`BEGIN IMMEDIATE`): a deferred transaction that read first and then writes while
    /// another connection wrote meanwhile (a reconcile pass, heartbeats, the purge task)
    /// fails at once with "database is locked", because SQLite cannot wait for that
    /// upgrade; taking the lock up front makes it wait (`busy_timeout`) instead.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Closes every connection (used on shutdown and by tests).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Which rows of an ordered list to read: Konnect's numbered pages in SQL terms.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return at most.
    pub limit: i64,
}

/// Current time as Unix seconds, the unit Kong's Admin API uses for timestamps.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A database URL with any password replaced, safe for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}")
                } else {
                    format!("{scheme}://{user}@{host}")
                }
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
    }
}
