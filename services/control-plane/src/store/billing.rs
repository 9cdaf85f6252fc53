//! Billing history and the monthly usage computed from it (rules: [`crate::billing`]).
//!
//! Service lifetimes are written by the entity writes themselves, in their transaction, so the
//! history can never disagree with the config: a service that was committed has an open
//! lifetime, a rolled-back write leaves none.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::entities::{multi_row_insert, INSERT_CHUNK};
use super::organizations::parse_uuid;
use super::{now_unix, Store, StoreResult};
use crate::billing::{peak, Lifetime, Peak, Period};

/// Where the store takes "now" from for billing history (service lifetimes, portal
/// publications) and for cutting the running month. Tests pin it to build exact timelines.
#[derive(Debug)]
pub struct Clock {
    /// Pinned Unix seconds, or `i64::MIN` for the system clock.
    pinned: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            pinned: AtomicI64::new(i64::MIN),
        }
    }
}

impl Clock {
    /// The current Unix second.
    pub fn now(&self) -> i64 {
        match self.pinned.load(Ordering::SeqCst) {
            i64::MIN => now_unix(),
            pinned => pinned,
        }
    }

    /// Makes `now` return `unix_seconds` until pinned again or released.
    pub fn pin(&self, unix_seconds: i64) {
        self.pinned.store(unix_seconds, Ordering::SeqCst);
    }

    /// Goes back to the system clock.
    pub fn release(&self) {
        self.pinned.store(i64::MIN, Ordering::SeqCst);
    }
}

/// Usage of one control plane in a period.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ControlPlaneUsage {
    /// The control plane (it may have been deleted since).
    pub control_plane_id: Uuid,
    /// Its current name; absent when it has been deleted.
    pub control_plane_name: Option<String>,
    /// Peak number of this control plane's services existing at the same instant.
    pub gateway_services: i64,
    /// First Unix second at which that peak was reached; absent when it is 0.
    pub gateway_services_peak_at: Option<i64>,
    /// API calls reported for this control plane on the days of the period.
    pub api_calls: i64,
}

/// One service's lifetime, as listed to explain a peak.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServiceLifetime {
    /// The control plane it belongs (belonged) to.
    pub control_plane_id: Uuid,
    /// The service's id.
    pub service_id: Uuid,
    /// First second it existed (Unix seconds).
    pub created_at: i64,
    /// First second it no longer existed; absent while it exists.
    pub deleted_at: Option<i64>,
}

/// An organisation's usage in one month.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// The month, `YYYY-MM` (UTC).
    pub period: String,
    /// The organisation billed.
    pub organization_id: Uuid,
    /// First second of the period (Unix seconds, UTC).
    pub period_start: i64,
    /// First second after the period (exclusive).
    pub period_end: i64,
    /// End (exclusive) of what was measured: `period_end` for a past month, the second after
    /// now for the running month, `period_start` for a future one.
    pub measured_until: i64,
    /// Whether the period is over (its counts can no longer change, except API calls still
    /// arriving from data planes that were disconnected).
    pub complete: bool,
    /// Peak number of services existing at the same instant, organisation-wide.
    pub gateway_services: i64,
    /// First Unix second at which that peak was reached; absent when it is 0.
    pub gateway_services_peak_at: Option<i64>,
    /// Total API calls of the period.
    pub api_calls: i64,
    /// Peak number of dev portals published at the same instant.
    pub active_portals: i64,
    /// First Unix second at which that peak was reached; absent when it is 0.
    pub active_portals_peak_at: Option<i64>,
    /// The same per control plane (every current control plane, plus deleted ones that had
    /// services or API calls in the period), by id.
    pub control_planes: Vec<ControlPlaneUsage>,
    /// With `include=peak_services`: the services that existed at
    /// `gateway_services_peak_at`, the ones `gateway_services` counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_services: Option<Vec<ServiceLifetime>>,
}

/// Starts the lifetimes of newly created services.
pub(super) async fn open_services(
    conn: &mut AnyConnection,
    org: Uuid,
    cp: Uuid,
    services: &[Uuid],
    now: i64,
) -> StoreResult<()> {
    let (org_s, cp_s) = (org.to_string(), cp.to_string());
    for chunk in services.chunks(INSERT_CHUNK) {
        let sql = multi_row_insert(
            "INSERT INTO service_lifetimes (organization_id, control_plane_id, service_id, \
             created_at)",
            chunk.len(),
            4,
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query
                .bind(org_s.clone())
                .bind(cp_s.clone())
                .bind(id.to_string())
                .bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Ends the lifetimes of deleted services.
pub(super) async fn close_services(
    conn: &mut AnyConnection,
    cp: Uuid,
    services: &[Uuid],
    now: i64,
) -> StoreResult<()> {
    for chunk in services.chunks(INSERT_CHUNK) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "UPDATE service_lifetimes SET deleted_at = $1 WHERE control_plane_id = $2 \
             AND deleted_at IS NULL AND service_id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(now).bind(cp.to_string());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Ends every open service lifetime of a control plane (it is being deleted).
pub(super) async fn close_all_services(
    conn: &mut AnyConnection,
    cp: Uuid,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE service_lifetimes SET deleted_at = $1 WHERE control_plane_id = $2 \
         AND deleted_at IS NULL",
    )
    .bind(now)
    .bind(cp.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Makes the open lifetimes of a control plane match `current` (after a whole-config
/// replace): services no longer there end, new ones start, kept ones (same id) run on.
pub(super) async fn sync_services(
    conn: &mut AnyConnection,
    org: Uuid,
    cp: Uuid,
    current: &BTreeSet<Uuid>,
    now: i64,
) -> StoreResult<()> {
    let rows = sqlx::query(
        "SELECT service_id FROM service_lifetimes WHERE control_plane_id = $1 \
         AND deleted_at IS NULL",
    )
    .bind(cp.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut open = BTreeSet::new();
    for row in rows {
        open.insert(parse_uuid(row.try_get(0)?)?);
    }
    let removed: Vec<Uuid> = open.difference(current).copied().collect();
    let added: Vec<Uuid> = current.difference(&open).copied().collect();
    close_services(conn, cp, &removed, now).await?;
    open_services(conn, org, cp, &added, now).await
}

/// Reads an optional BIGINT column as `Option<i64>`.
fn optional_time(row: &sqlx::any::AnyRow, column: &str) -> StoreResult<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(column)?)
}

impl Store {
    /// The store's clock (pinned by tests).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The organisation's usage in `period`, by the rules of [`crate::billing`]; with
    /// `list_peak_services`, also the services counted at the organisation's peak.
    pub async fn billing_usage(
        &self,
        org: Uuid,
        period: Period,
        list_peak_services: bool,
    ) -> StoreResult<Usage> {
        let (start, end) = (period.start(), period.end());
        // The running month is measured up to and including the current second.
        let until = end.min(self.clock.now().saturating_add(1)).max(start);
        let org_s = org.to_string();

        let rows = sqlx::query(
            "SELECT control_plane_id, service_id, created_at, deleted_at FROM service_lifetimes \
             WHERE organization_id = $1 AND created_at < $2 \
             AND (deleted_at IS NULL OR deleted_at > $3)",
        )
        .bind(&org_s)
        .bind(until)
        .bind(start)
        .fetch_all(self.pool())
        .await?;
        let mut lifetimes = Vec::with_capacity(rows.len());
        for row in &rows {
            lifetimes.push(ServiceLifetime {
                control_plane_id: parse_uuid(row.try_get("control_plane_id")?)?,
                service_id: parse_uuid(row.try_get("service_id")?)?,
                created_at: row.try_get("created_at")?,
                deleted_at: optional_time(row, "deleted_at")?,
            });
        }
        let life = |l: &ServiceLifetime| Lifetime {
            start: l.created_at,
            end: l.deleted_at,
        };
        let mut by_cp: BTreeMap<Uuid, Vec<Lifetime>> = BTreeMap::new();
        for l in &lifetimes {
            by_cp.entry(l.control_plane_id).or_default().push(life(l));
        }
        let services = peak(lifetimes.iter().map(life), start, until);
        let peak_services = list_peak_services.then(|| match services.at {
            Some(at) => {
                let mut at_peak: Vec<ServiceLifetime> = lifetimes
                    .iter()
                    .filter(|l| l.created_at <= at && l.deleted_at.is_none_or(|d| d > at))
                    .cloned()
                    .collect();
                at_peak.sort_by_key(|l| (l.control_plane_id, l.service_id));
                at_peak
            }
            None => Vec::new(),
        });

        let rows = sqlx::query(
            "SELECT published_at, unpublished_at FROM portal_publications \
             WHERE organization_id = $1 AND published_at < $2 \
             AND (unpublished_at IS NULL OR unpublished_at > $3)",
        )
        .bind(&org_s)
        .bind(until)
        .bind(start)
        .fetch_all(self.pool())
        .await?;
        let mut publications = Vec::with_capacity(rows.len());
        for row in &rows {
            publications.push(Lifetime {
                start: row.try_get("published_at")?,
                end: optional_time(row, "unpublished_at")?,
            });
        }
        let portals = peak(publications, start, until);

        // A month that has not started has no usage, whatever a skewed data-plane clock said.
        let mut calls: BTreeMap<Uuid, i64> = BTreeMap::new();
        if until > start {
            let (first_day, last_day) = period.day_range();
            // SUM of BIGINT is NUMERIC on PostgreSQL; the cast keeps one decodable type.
            let rows = sqlx::query(
                "SELECT control_plane_id, CAST(SUM(count) AS BIGINT) AS calls \
                 FROM billing_api_calls WHERE organization_id = $1 AND day >= $2 AND day <= $3 \
                 GROUP BY control_plane_id",
            )
            .bind(&org_s)
            .bind(first_day)
            .bind(last_day)
            .fetch_all(self.pool())
            .await?;
            for row in &rows {
                calls.insert(
                    parse_uuid(row.try_get("control_plane_id")?)?,
                    row.try_get("calls")?,
                );
            }
        }

        let rows = sqlx::query("SELECT id, name FROM control_planes WHERE organization_id = $1")
            .bind(&org_s)
            .fetch_all(self.pool())
            .await?;
        let mut names: BTreeMap<Uuid, String> = BTreeMap::new();
        for row in &rows {
            names.insert(parse_uuid(row.try_get("id")?)?, row.try_get("name")?);
        }
        let ids: BTreeSet<Uuid> = names
            .keys()
            .chain(calls.keys())
            .chain(by_cp.keys())
            .copied()
            .collect();
        let control_planes = ids
            .into_iter()
            .map(|id| {
                let Peak { count, at } = by_cp
                    .get(&id)
                    .map(|l| peak(l.iter().copied(), start, until))
                    .unwrap_or_default();
                ControlPlaneUsage {
                    control_plane_id: id,
                    control_plane_name: names.get(&id).cloned(),
                    gateway_services: count,
                    gateway_services_peak_at: at,
                    api_calls: calls.get(&id).copied().unwrap_or(0),
                }
            })
            .collect();
        Ok(Usage {
            period: period.to_string(),
            organization_id: org,
            period_start: start,
            period_end: end,
            measured_until: until,
            complete: until == end,
            gateway_services: services.count,
            gateway_services_peak_at: services.at,
            api_calls: calls.values().sum(),
            active_portals: portals.count,
            active_portals_peak_at: portals.at,
            control_planes,
            peak_services,
        })
    }
}
