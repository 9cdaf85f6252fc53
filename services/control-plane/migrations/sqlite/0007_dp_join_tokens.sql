-- Join tokens (docs/clustering.md, "Joining with a token"): single-use, short-lived secrets a
-- node redeems on the cluster listener's `/v1/enrol` for a certificate of its own key, so no
-- private key travels in user-data.
--
-- Only the SHA-256 of a token is stored, as for API tokens. Redemption sets `used_at` with a
-- conditional UPDATE (`used_at IS NULL AND expires_at > now`), so two nodes racing with one
-- token cannot both win. Rows expired for more than a day are deleted by housekeeping.
CREATE TABLE dp_join_tokens (
    id                       TEXT PRIMARY KEY,
    organization_id          TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    control_plane_id         TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    -- SHA-256 of the token text, lowercase hex.
    token_hash               TEXT NOT NULL UNIQUE,
    -- The cloud-gateway configuration and node slot the token was minted for, when a
    -- provisioner minted it (no reference: the configuration may go before the token expires).
    configuration_id         TEXT,
    slot                     BIGINT,
    created_at               BIGINT NOT NULL,
    expires_at               BIGINT NOT NULL,
    used_at                  BIGINT,
    -- SHA-256 of the certificate issued on redemption, lowercase hex.
    certificate_fingerprint  TEXT
);
CREATE INDEX dp_join_tokens_cp ON dp_join_tokens (control_plane_id, id);
CREATE INDEX dp_join_tokens_expires ON dp_join_tokens (expires_at);
