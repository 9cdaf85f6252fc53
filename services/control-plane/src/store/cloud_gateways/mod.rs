//! Dedicated cloud gateways (docs/cloud-gateways.md): provider accounts, networks, transit-gateway
//! attachments and configurations with their dataplane groups.
//!
//! Rows hold the desired state the API accepted and the observed state the reconcilers last
//! wrote. A delete moves a row to `terminating`; the reconciler removes the cloud resources
//! and then the row ([`reconcile`] has the functions it uses). Once a row is terminating, an
//! observation can no longer move it back to another state, so a reconcile pass that started
//! before the delete cannot undo it.

mod configurations;
mod networks;
mod provider_accounts;
mod reconcile;
mod transit_gateways;

pub use configurations::{
    AutopilotDecision, Autoscale, ConfigurationRecord, DataplaneGroupRecord, DesiredConfiguration,
    DesiredDataplaneGroup, EnvironmentVariable, AUTOPILOT_SIZE, AUTOSCALE_AUTOPILOT,
    AUTOSCALE_STATIC,
};
pub use networks::{NetworkRecord, NewNetwork};
pub use provider_accounts::{CloudProvider, NewProviderAccount, ProviderAccountRecord};
pub use reconcile::CloudResource;
pub use transit_gateways::{NewTransitGateway, TransitGatewayRecord};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::AnyConnection;
use uuid::Uuid;

use super::StoreResult;

/// The state every delete moves a row to.
pub(crate) const TERMINATING: &str = "terminating";
/// The state of a row whose cloud resources are all gone.
pub(crate) const TERMINATED: &str = "terminated";

fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> StoreResult<String> {
    Ok(serde_json::to_string(value).with_context(|| format!("encode {what}"))?)
}

fn from_json<T: DeserializeOwned>(raw: &str, what: &str) -> StoreResult<T> {
    Ok(serde_json::from_str(raw).with_context(|| format!("decode stored {what}"))?)
}

/// Takes the write lock on rows of `table` before the checks of a write transaction: a no-op
/// update holds the row lock on PostgreSQL (concurrent writers of the same network queue here)
/// and the database write lock on SQLite (a later read-then-write cannot fail with a busy
/// snapshot). Answers how many rows it matched.
async fn claim(conn: &mut AnyConnection, table: &str, id: Uuid) -> StoreResult<u64> {
    let done = sqlx::query(&format!(
        "UPDATE {table} SET updated_at = updated_at WHERE id = $1"
    ))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Decodes a stored state name through the provisioner's serde names (the contract names).
fn parse_state<T: DeserializeOwned>(raw: &str) -> StoreResult<T> {
    Ok(
        serde_json::from_value(serde_json::Value::String(raw.to_string()))
            .with_context(|| format!("decode stored state {raw:?}"))?,
    )
}
