-- Telemetry ingest, analytics and billing counts (docs/telemetry.md).

-- One row per ingested batch: `(node_id, seq)` is how a re-sent batch is recognised. Kept as
-- long as the 10 s analytics (a batch re-sent later than that would be counted again).
CREATE TABLE telemetry_batches (
    node_id           TEXT NOT NULL,
    -- The node's u64 seq, stored as its two's-complement i64 (values above i64::MAX wrap).
    seq               BIGINT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    received_at       BIGINT NOT NULL,
    records           BIGINT NOT NULL,
    dropped           BIGINT NOT NULL,
    PRIMARY KEY (node_id, seq)
);
CREATE INDEX telemetry_batches_received ON telemetry_batches (received_at);

-- Aggregates per bucket and dimensions; ids are text with '' for none, so the primary key
-- works alike on both backends. error_count = requests with status >= 400.

CREATE TABLE analytics_10s (
    bucket_start      BIGINT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    service_id        TEXT NOT NULL,
    route_id          TEXT NOT NULL,
    consumer_id       TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    status            BIGINT NOT NULL,
    request_count     BIGINT NOT NULL,
    error_count       BIGINT NOT NULL,
    bytes_in          BIGINT NOT NULL,
    bytes_out         BIGINT NOT NULL,
    latency_sketch    BYTEA NOT NULL,
    PRIMARY KEY (control_plane_id, bucket_start, node_id, service_id, route_id, consumer_id, status)
);
CREATE INDEX analytics_10s_bucket ON analytics_10s (bucket_start);

CREATE TABLE analytics_minute (
    bucket_start      BIGINT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    service_id        TEXT NOT NULL,
    route_id          TEXT NOT NULL,
    consumer_id       TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    status            BIGINT NOT NULL,
    request_count     BIGINT NOT NULL,
    error_count       BIGINT NOT NULL,
    bytes_in          BIGINT NOT NULL,
    bytes_out         BIGINT NOT NULL,
    latency_sketch    BYTEA NOT NULL,
    PRIMARY KEY (control_plane_id, bucket_start, node_id, service_id, route_id, consumer_id, status)
);
CREATE INDEX analytics_minute_bucket ON analytics_minute (bucket_start);

CREATE TABLE analytics_hour (
    bucket_start      BIGINT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    service_id        TEXT NOT NULL,
    route_id          TEXT NOT NULL,
    consumer_id       TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    status            BIGINT NOT NULL,
    request_count     BIGINT NOT NULL,
    error_count       BIGINT NOT NULL,
    bytes_in          BIGINT NOT NULL,
    bytes_out         BIGINT NOT NULL,
    latency_sketch    BYTEA NOT NULL,
    PRIMARY KEY (control_plane_id, bucket_start, node_id, service_id, route_id, consumer_id, status)
);
CREATE INDEX analytics_hour_bucket ON analytics_hour (bucket_start);

CREATE TABLE analytics_day (
    bucket_start      BIGINT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    service_id        TEXT NOT NULL,
    route_id          TEXT NOT NULL,
    consumer_id       TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    status            BIGINT NOT NULL,
    request_count     BIGINT NOT NULL,
    error_count       BIGINT NOT NULL,
    bytes_in          BIGINT NOT NULL,
    bytes_out         BIGINT NOT NULL,
    latency_sketch    BYTEA NOT NULL,
    PRIMARY KEY (control_plane_id, bucket_start, node_id, service_id, route_id, consumer_id, status)
);
CREATE INDEX analytics_day_bucket ON analytics_day (bucket_start);

-- Buckets whose sources changed since they were last rolled up: `granularity` names the
-- target table (minute, hour, day). Ingest bumps `generation`; the rollup deletes the mark
-- only if the generation is still the one it read, so a change during a rollup is not lost.
CREATE TABLE analytics_dirty (
    granularity       TEXT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    bucket_start      BIGINT NOT NULL,
    generation        BIGINT NOT NULL,
    PRIMARY KEY (granularity, control_plane_id, bucket_start)
);

-- A single row the rollup writes first: it takes the write lock (SQLite) or a row lock
-- (PostgreSQL, several replicas) so only one rollup pass runs at a time.
CREATE TABLE analytics_rollup_lock (
    id         BIGINT PRIMARY KEY,
    last_run   BIGINT NOT NULL
);
INSERT INTO analytics_rollup_lock (id, last_run) VALUES (1, 0);

-- API calls per organisation, control plane and UTC day of the request: written by ingest,
-- read by billing. No foreign keys: a bill must survive deleting the control plane.
CREATE TABLE billing_api_calls (
    organization_id   TEXT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    -- YYYY-MM-DD (UTC) of the record's time_ms.
    day               TEXT NOT NULL,
    count             BIGINT NOT NULL,
    PRIMARY KEY (organization_id, control_plane_id, day)
);

-- What the node reports about its telemetry buffer: records dropped (sum of the batches'
-- `dropped`, counted exactly once through dedup) and the last reported fill.
ALTER TABLE nodes ADD COLUMN telemetry_dropped BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN telemetry_buffer_fill BIGINT;
-- Bumped by every ingested batch of the node: a session caching the node's recent rows knows
-- its cache is current when the counter moved by exactly its own writes.
ALTER TABLE nodes ADD COLUMN telemetry_writes BIGINT NOT NULL DEFAULT 0;
