-- Data-plane nodes seen by the cluster listener (Konnect's `/nodes`). A node row outlives its
-- connection so operators can see stale nodes; the purge task removes rows unseen for longer
-- than `--node-purge-after`.
CREATE TABLE nodes (
    control_plane_id  TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    id                TEXT NOT NULL,
    hostname          TEXT NOT NULL,
    version           TEXT NOT NULL,
    -- Unix seconds of the last frame heard from the node.
    last_ping         BIGINT NOT NULL,
    -- Hash of the config the node reported running (hello, applied, ping).
    config_hash       TEXT NOT NULL,
    -- `normal` or `incompatible`; in_sync/out_of_sync/rejected are derived when read, against
    -- the control plane's latest hash, so they never go stale.
    sync_status       TEXT NOT NULL,
    sync_reason       TEXT,
    -- The last hash the node refused, and why: never pushed to this node again.
    rejected_hash     TEXT,
    rejected_errors   TEXT NOT NULL,
    -- 0 or 1 (an integer so both backends decode it alike).
    connected         BIGINT NOT NULL,
    -- notAfter of the client certificate the node connected with, Unix seconds.
    cert_expiry       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (control_plane_id, id)
);
CREATE INDEX nodes_last_ping ON nodes (last_ping);
