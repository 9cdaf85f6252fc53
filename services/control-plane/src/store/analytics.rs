//! Telemetry batches, analytics aggregates and API-call counts (docs/telemetry.md).
//!
//! The aggregate tables (`analytics_10s`, `_minute`, `_hour`, `_day`) share one shape: a row per
//! bucket and dimensions with counts and a serialized [`LatencySketch`]. Sketches cannot be
//! merged in SQL, so writers read the rows they change, merge in memory, and write the merged
//! values back — inside one transaction that first takes a lock serialising every writer of the
//! same rows (see [`Store::ingest_telemetry`] and [`Store::rebuild_bucket`]).

use std::collections::HashMap;

use anyhow::Context;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{Backend, Store, StoreResult};
use crate::telemetry::sketch::LatencySketch;
use crate::telemetry::Granularity;

/// Columns of every aggregate table, in insert order.
const AGGREGATE_COLUMNS: &str = "bucket_start, control_plane_id, service_id, route_id, \
    consumer_id, node_id, status, request_count, error_count, bytes_in, bytes_out, latency_sketch";
const AGGREGATE_WIDTH: usize = 12;
/// Primary key of every aggregate table.
const AGGREGATE_KEY: &str =
    "control_plane_id, bucket_start, node_id, service_id, route_id, consumer_id, status";
/// Rows per multi-row upsert: 12 binds each stays far below both engines' parameter limits.
const UPSERT_CHUNK: usize = 1_000;

/// Aggregate rows by key. foldhash: keys are ids the control plane's own config bounds, so
/// SipHash's flooding resistance buys nothing on this hot path.
pub type AggregateMap = HashMap<AggregateKey, AggregateValues, foldhash::fast::RandomState>;

/// The dimensions of an aggregate row: ids as text, `""` for none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggregateKey {
    /// Bucket start, Unix seconds.
    pub bucket_start: i64,
    /// Control plane.
    pub control_plane_id: String,
    /// Service, `""` for none.
    pub service_id: String,
    /// Route, `""` for none.
    pub route_id: String,
    /// Consumer, `""` for none.
    pub consumer_id: String,
    /// Node.
    pub node_id: String,
    /// HTTP status.
    pub status: i64,
}

/// The measures of an aggregate row; adding two adds every measure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateValues {
    /// Requests.
    pub request_count: i64,
    /// Requests answered with status >= 400.
    pub error_count: i64,
    /// Request bytes.
    pub bytes_in: i64,
    /// Response bytes.
    pub bytes_out: i64,
    /// Latency (total, µs) of every request.
    pub latency: LatencySketch,
}

impl AggregateValues {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &AggregateValues) {
        self.request_count += other.request_count;
        self.error_count += other.error_count;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.latency.merge(&other.latency);
    }
}

/// One telemetry batch, aggregated in memory and ready to be committed.
#[derive(Debug, Clone)]
pub struct TelemetryBatchWrite {
    /// Organisation of the control plane (for billing).
    pub organization_id: Uuid,
    /// The session's control plane.
    pub control_plane_id: Uuid,
    /// The sending node.
    pub node_id: Uuid,
    /// The batch's sequence number.
    pub seq: u64,
    /// Records in the batch.
    pub records: u64,
    /// Records the node dropped before forming this batch.
    pub dropped: u64,
    /// When the batch arrived, Unix seconds.
    pub received_at: i64,
    /// 10 s aggregates of the batch (all of this control plane and node).
    pub groups: AggregateMap,
    /// API calls per UTC day (`YYYY-MM-DD`).
    pub api_calls_by_day: Vec<(String, i64)>,
}

/// A bucket whose sources changed since it was last rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBucket {
    /// Control plane.
    pub control_plane_id: String,
    /// Bucket start at the target granularity.
    pub bucket_start: i64,
    /// Change counter read with the mark.
    pub generation: i64,
}

/// Filters of an analytics read, applied in SQL.
#[derive(Debug, Clone, Default)]
pub struct AggregateFilter {
    /// `(column, values, negate)`: `column IN (values)` or `NOT IN` when `negate`.
    pub text_filters: Vec<(&'static str, Vec<String>, bool)>,
    /// `status IN (values)` or `NOT IN` when negated.
    pub status_filters: Vec<(Vec<i64>, bool)>,
}

fn dirty_name(granularity: Granularity) -> &'static str {
    granularity.name()
}

fn read_aggregate(row: &AnyRow) -> StoreResult<(AggregateKey, AggregateValues)> {
    let sketch: Vec<u8> = row.try_get("latency_sketch")?;
    Ok((
        AggregateKey {
            bucket_start: row.try_get("bucket_start")?,
            control_plane_id: row.try_get("control_plane_id")?,
            service_id: row.try_get("service_id")?,
            route_id: row.try_get("route_id")?,
            consumer_id: row.try_get("consumer_id")?,
            node_id: row.try_get("node_id")?,
            status: row.try_get("status")?,
        },
        AggregateValues {
            request_count: row.try_get("request_count")?,
            error_count: row.try_get("error_count")?,
            bytes_in: row.try_get("bytes_in")?,
            bytes_out: row.try_get("bytes_out")?,
            latency: LatencySketch::from_bytes(&sketch).context("decode a stored sketch")?,
        },
    ))
}

/// Writes `rows` into `table`, replacing the measures of rows that exist (the caller merged
/// them already).
async fn upsert_aggregates(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    rows: &[(&AggregateKey, &AggregateValues)],
) -> StoreResult<()> {
    for chunk in rows.chunks(UPSERT_CHUNK) {
        let mut sql = Params::starting_at(backend, 1).values(
            &format!("INSERT INTO {table} ({AGGREGATE_COLUMNS})"),
            chunk.len(),
            AGGREGATE_WIDTH,
        );
        sql.push_str(&format!(
            " ON CONFLICT ({AGGREGATE_KEY}) DO UPDATE SET request_count = excluded.request_count, \
             error_count = excluded.error_count, bytes_in = excluded.bytes_in, \
             bytes_out = excluded.bytes_out, latency_sketch = excluded.latency_sketch"
        ));
        let mut query = sqlx::query(&sql);
        for (key, values) in chunk {
            query = query
                .bind(key.bucket_start)
                .bind(key.control_plane_id.as_str())
                .bind(key.service_id.as_str())
                .bind(key.route_id.as_str())
                .bind(key.consumer_id.as_str())
                .bind(key.node_id.as_str())
                .bind(key.status)
                .bind(values.request_count)
                .bind(values.error_count)
                .bind(values.bytes_in)
                .bind(values.bytes_out)
                .bind(values.latency.to_bytes());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Bind placeholders for statements with many parameters, numbered in text order.
///
/// PostgreSQL needs `$n`. SQLite gets anonymous `?`: it resolves every `$n` by a linear scan of
/// the statement's parameter names, both when parsing and when sqlx binds each argument, which
/// made a 5,000-parameter upsert quadratic (most of the ingest time). Every statement built here
/// binds its arguments in the order their placeholders appear, so `?` is equivalent.
#[derive(Debug)]
struct Params {
    backend: Backend,
    next: usize,
}

impl Params {
    /// Placeholders starting at `$first` (after that many-minus-one fixed ones).
    fn starting_at(backend: Backend, first: usize) -> Self {
        Self {
            backend,
            next: first,
        }
    }

    fn push(&mut self, sql: &mut String) {
        match self.backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => {
                sql.push('$');
                sql.push_str(&self.next.to_string());
            }
        }
        self.next += 1;
    }

    /// `p, p, …` for `n` placeholders.
    fn list(&mut self, n: usize) -> String {
        let mut sql = String::with_capacity(n * 4);
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            self.push(&mut sql);
        }
        sql
    }

    /// `head VALUES (p, …), (p, …), …` for `rows` rows of `columns` values.
    fn values(&mut self, head: &str, rows: usize, columns: usize) -> String {
        let mut sql = String::with_capacity(head.len() + rows * columns * 6);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&self.list(columns));
            sql.push(')');
        }
        sql
    }
}

/// Marks `buckets` of `granularity` as needing a rebuild (or bumps their generation).
async fn mark_dirty(
    conn: &mut AnyConnection,
    backend: Backend,
    granularity: Granularity,
    control_plane_id: &str,
    buckets: &[i64],
) -> StoreResult<()> {
    if buckets.is_empty() {
        return Ok(());
    }
    let mut sql = Params::starting_at(backend, 1).values(
        "INSERT INTO analytics_dirty (granularity, control_plane_id, bucket_start, generation)",
        buckets.len(),
        4,
    );
    sql.push_str(
        " ON CONFLICT (granularity, control_plane_id, bucket_start) \
         DO UPDATE SET generation = analytics_dirty.generation + 1",
    );
    let mut query = sqlx::query(&sql);
    for bucket in buckets {
        query = query
            .bind(dirty_name(granularity))
            .bind(control_plane_id)
            .bind(*bucket)
            .bind(1i64);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// How far behind the newest bucket a [`NodeRowCache`] keeps rows: nodes flush every second,
/// so only the current and the previous bucket normally change.
const CACHE_WINDOW_SECS: i64 = 60;

/// One node's recent 10 s rows as committed by this session, so ingest can merge a batch
/// without reading them back.
///
/// Valid only while nobody else writes the node's rows: every ingest bumps the node row's
/// `telemetry_writes` (under the node-row lock), and the cache is used only if the counter is
/// exactly one past the value of its own last commit; otherwise it is dropped and the rows
/// are read from the database.
#[derive(Debug, Default)]
pub struct NodeRowCache {
    writes: Option<i64>,
    /// Buckets whose rows of this node are all in `rows` (a bucket absent from `rows` but
    /// listed here has no rows yet).
    buckets: std::collections::HashSet<i64>,
    rows: AggregateMap,
    /// Buckets and rows read during the current transaction, kept if it commits.
    pending: Option<(Vec<i64>, AggregateMap)>,
}

impl NodeRowCache {
    fn invalidate(&mut self) {
        self.writes = None;
        self.buckets.clear();
        self.rows.clear();
        self.pending = None;
    }

    fn committed(&mut self, writes: Option<i64>, merged: AggregateMap) {
        let Some(writes) = writes else {
            self.invalidate();
            return;
        };
        self.writes = Some(writes);
        if let Some((buckets, loaded)) = self.pending.take() {
            self.buckets.extend(buckets);
            self.rows.extend(loaded);
        }
        self.rows.extend(merged);
        if let Some(newest) = self.buckets.iter().max().copied() {
            let oldest = newest - CACHE_WINDOW_SECS;
            self.buckets.retain(|b| *b >= oldest);
            self.rows.retain(|k, _| k.bucket_start >= oldest);
        }
    }
}

impl Store {
    /// Commits one telemetry batch: returns `false` (and changes nothing) when `(node_id, seq)`
    /// was ingested before.
    ///
    /// Order matters: the batch row is written first, so on SQLite the transaction holds the
    /// write lock before it reads anything; then the node row is updated, which on PostgreSQL
    /// locks it until commit and so serialises batches of one node (even across control-plane
    /// replicas) — the read-merge-write of that node's aggregate rows cannot interleave.
    ///
    /// `cache` (one per data-plane session) holds the node's recent 10 s rows as last
    /// committed, so the steady state reads nothing back; it is used only when the node's
    /// write counter shows no one else wrote since (see [`NodeRowCache`]).
    pub async fn ingest_telemetry(
        &self,
        batch: TelemetryBatchWrite,
        cache: &mut NodeRowCache,
    ) -> StoreResult<bool> {
        let result = self.ingest_telemetry_inner(batch, cache).await;
        if result.is_err() {
            // The transaction rolled back: what the cache saw may not be what is stored.
            cache.invalidate();
        }
        result
    }

    async fn ingest_telemetry_inner(
        &self,
        mut batch: TelemetryBatchWrite,
        cache: &mut NodeRowCache,
    ) -> StoreResult<bool> {
        let cp = batch.control_plane_id.to_string();
        let node = batch.node_id.to_string();
        let api_calls_by_day = std::mem::take(&mut batch.api_calls_by_day);
        let org = batch.organization_id.to_string();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO telemetry_batches (node_id, seq, control_plane_id, received_at, records, \
             dropped) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (node_id, seq) DO NOTHING",
        )
        .bind(node.as_str())
        // The u64 seq's bits as an i64: distinct seqs stay distinct.
        .bind(batch.seq as i64)
        .bind(cp.as_str())
        .bind(batch.received_at)
        .bind(i64::try_from(batch.records).unwrap_or(i64::MAX))
        .bind(i64::try_from(batch.dropped).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.commit().await?;
            return Ok(false);
        }
        let writes: Option<i64> = sqlx::query_scalar(
            "UPDATE nodes SET telemetry_dropped = telemetry_dropped + $1, \
             telemetry_writes = telemetry_writes + 1 \
             WHERE control_plane_id = $2 AND id = $3 RETURNING telemetry_writes",
        )
        .bind(i64::try_from(batch.dropped).unwrap_or(i64::MAX))
        .bind(cp.as_str())
        .bind(node.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        match writes {
            Some(w) if cache.writes == Some(w - 1) => {}
            // Someone else wrote this node's rows (another session or replica), or there is
            // no node row to count writes: start over from the database.
            _ => cache.invalidate(),
        }

        let mut merged =
            AggregateMap::with_capacity_and_hasher(batch.groups.len(), Default::default());
        if !batch.groups.is_empty() {
            let mut buckets: Vec<i64> = batch.groups.keys().map(|k| k.bucket_start).collect();
            buckets.sort_unstable();
            buckets.dedup();
            let unknown: Vec<i64> = buckets
                .iter()
                .copied()
                .filter(|b| !cache.buckets.contains(b))
                .collect();
            let mut loaded = AggregateMap::default();
            if !unknown.is_empty() {
                // The rows this node already has in these buckets: a few hundred, one query.
                let mut params = Params::starting_at(self.backend(), 1);
                let (p1, p2) = (params.list(1), params.list(1));
                let sql = format!(
                    "SELECT {AGGREGATE_COLUMNS} FROM analytics_10s WHERE control_plane_id = {p1} \
                     AND node_id = {p2} AND bucket_start IN ({})",
                    params.list(unknown.len())
                );
                let mut query = sqlx::query(&sql).bind(cp.as_str()).bind(node.as_str());
                for b in &unknown {
                    query = query.bind(*b);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    let (key, values) = read_aggregate(&row)?;
                    loaded.insert(key, values);
                }
            }
            for (key, new) in batch.groups {
                // Taken out of the cache: `committed` puts the merged rows back, and a failed
                // transaction drops the whole cache anyway.
                let values = match cache.rows.remove(&key).or_else(|| loaded.remove(&key)) {
                    Some(mut old) => {
                        old.merge(&new);
                        old
                    }
                    None => new,
                };
                merged.insert(key, values);
            }
            let rows: Vec<(&AggregateKey, &AggregateValues)> = merged.iter().collect();
            upsert_aggregates(
                &mut tx,
                self.backend(),
                Granularity::TenSeconds.table(),
                &rows,
            )
            .await?;
            let mut minutes: Vec<i64> = buckets
                .iter()
                .map(|b| Granularity::Minute.floor(*b))
                .collect();
            minutes.dedup();
            mark_dirty(&mut tx, self.backend(), Granularity::Minute, &cp, &minutes).await?;
            cache.pending = Some((buckets, loaded));
        }

        if !api_calls_by_day.is_empty() {
            let mut sql = Params::starting_at(self.backend(), 1).values(
                "INSERT INTO billing_api_calls (organization_id, control_plane_id, day, count)",
                api_calls_by_day.len(),
                4,
            );
            sql.push_str(
                " ON CONFLICT (organization_id, control_plane_id, day) \
                 DO UPDATE SET count = billing_api_calls.count + excluded.count",
            );
            let mut query = sqlx::query(&sql);
            for (day, count) in &api_calls_by_day {
                query = query
                    .bind(org.as_str())
                    .bind(cp.as_str())
                    .bind(day.as_str())
                    .bind(*count);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        cache.committed(writes, merged);
        Ok(true)
    }

    /// Up to `limit` buckets of `target` starting in `[from, until)` waiting for a rebuild,
    /// oldest first.
    pub async fn dirty_buckets(
        &self,
        target: Granularity,
        from: i64,
        until: i64,
        limit: i64,
    ) -> StoreResult<Vec<DirtyBucket>> {
        let rows = sqlx::query(
            "SELECT control_plane_id, bucket_start, generation FROM analytics_dirty \
             WHERE granularity = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             ORDER BY bucket_start, control_plane_id LIMIT $4",
        )
        .bind(dirty_name(target))
        .bind(from)
        .bind(until)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DirtyBucket {
                    control_plane_id: row.try_get("control_plane_id")?,
                    bucket_start: row.try_get("bucket_start")?,
                    generation: row.try_get("generation")?,
                })
            })
            .collect()
    }

    /// Rebuilds one `target` bucket of a control plane from all of its finer source rows (so
    /// running it twice gives the same rows), clears the dirty mark if nothing changed
    /// meanwhile, and marks the next coarser bucket dirty.
    pub async fn rebuild_bucket(
        &self,
        target: Granularity,
        bucket: &DirtyBucket,
        now: i64,
    ) -> StoreResult<usize> {
        let Some(source) = target.source() else {
            return Ok(0);
        };
        let mut tx = self.begin_write().await?;
        // Taken first: one rebuild at a time (the write lock on SQLite, a row lock shared by
        // every replica on PostgreSQL).
        sqlx::query("UPDATE analytics_rollup_lock SET last_run = $1 WHERE id = 1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let cp = bucket.control_plane_id.as_str();
        let end = bucket.bucket_start + target.seconds();
        let rows = sqlx::query(&format!(
            "SELECT {AGGREGATE_COLUMNS} FROM {} WHERE control_plane_id = $1 \
             AND bucket_start >= $2 AND bucket_start < $3",
            source.table()
        ))
        .bind(cp)
        .bind(bucket.bucket_start)
        .bind(end)
        .fetch_all(&mut *tx)
        .await?;
        let mut groups = AggregateMap::default();
        for row in &rows {
            let (mut key, values) = read_aggregate(row)?;
            key.bucket_start = bucket.bucket_start;
            groups.entry(key).or_default().merge(&values);
        }
        sqlx::query(&format!(
            "DELETE FROM {} WHERE control_plane_id = $1 AND bucket_start = $2",
            target.table()
        ))
        .bind(cp)
        .bind(bucket.bucket_start)
        .execute(&mut *tx)
        .await?;
        let rows: Vec<_> = groups.iter().collect();
        upsert_aggregates(&mut tx, self.backend(), target.table(), &rows).await?;
        sqlx::query(
            "DELETE FROM analytics_dirty WHERE granularity = $1 AND control_plane_id = $2 \
             AND bucket_start = $3 AND generation = $4",
        )
        .bind(dirty_name(target))
        .bind(cp)
        .bind(bucket.bucket_start)
        .bind(bucket.generation)
        .execute(&mut *tx)
        .await?;
        if let Some(next) = target.target() {
            mark_dirty(
                &mut tx,
                self.backend(),
                next,
                cp,
                &[next.floor(bucket.bucket_start)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Deletes buckets of `granularity` older than `horizon` (Unix seconds); for 10 s also the
    /// dedup records of batches received before it. Returns the rows deleted.
    pub async fn prune_analytics(
        &self,
        granularity: Granularity,
        horizon: i64,
    ) -> StoreResult<u64> {
        let mut deleted = sqlx::query(&format!(
            "DELETE FROM {} WHERE bucket_start < $1",
            granularity.table()
        ))
        .bind(horizon)
        .execute(self.pool())
        .await?
        .rows_affected();
        if granularity == Granularity::TenSeconds {
            deleted += sqlx::query("DELETE FROM telemetry_batches WHERE received_at < $1")
                .bind(horizon)
                .execute(self.pool())
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    /// Aggregate rows of the organisation's control planes at `granularity` with
    /// `start <= bucket_start < end`, filtered.
    pub async fn analytics_rows(
        &self,
        org: Uuid,
        granularity: Granularity,
        start: i64,
        end: i64,
        filter: &AggregateFilter,
    ) -> StoreResult<Vec<(AggregateKey, AggregateValues)>> {
        let mut params = Params::starting_at(self.backend(), 1);
        let (p1, p2, p3) = (params.list(1), params.list(1), params.list(1));
        let mut sql = format!(
            "SELECT {AGGREGATE_COLUMNS} FROM {} WHERE control_plane_id IN \
             (SELECT id FROM control_planes WHERE organization_id = {p1}) \
             AND bucket_start >= {p2} AND bucket_start < {p3}",
            granularity.table()
        );
        for (column, values, negate) in &filter.text_filters {
            let not = if *negate { "NOT " } else { "" };
            sql.push_str(&format!(
                " AND {column} {not}IN ({})",
                params.list(values.len())
            ));
        }
        for (values, negate) in &filter.status_filters {
            let not = if *negate { "NOT " } else { "" };
            sql.push_str(&format!(
                " AND status {not}IN ({})",
                params.list(values.len())
            ));
        }
        let mut query = sqlx::query(&sql)
            .bind(org.to_string())
            .bind(start)
            .bind(end);
        for (_, values, _) in &filter.text_filters {
            for v in values {
                query = query.bind(v.as_str());
            }
        }
        for (values, _) in &filter.status_filters {
            for v in values {
                query = query.bind(*v);
            }
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(read_aggregate).collect()
    }

    /// API calls of an organisation per day, `(control_plane_id, day, count)`, for days in
    /// `[first_day, last_day]` (`YYYY-MM-DD`).
    pub async fn api_calls(
        &self,
        org: Uuid,
        first_day: &str,
        last_day: &str,
    ) -> StoreResult<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT control_plane_id, day, count FROM billing_api_calls \
             WHERE organization_id = $1 AND day >= $2 AND day <= $3 \
             ORDER BY day, control_plane_id",
        )
        .bind(org.to_string())
        .bind(first_day)
        .bind(last_day)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}
