-- Cluster identity: the certificates data-plane nodes authenticate with, the per-control-plane
-- CA the `generate` endpoint issues from in pki mode, and each organisation's license.

-- A pinned leaf (pinned_client_certs) or a CA (pki_client_certs) registered with a control
-- plane. Only the public certificate is stored.
CREATE TABLE dp_client_certificates (
    id                  TEXT PRIMARY KEY,
    control_plane_id    TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    cert                TEXT NOT NULL,
    -- SHA-256 of the DER certificate, lowercase hex: what pinned mode compares.
    fingerprint_sha256  TEXT NOT NULL,
    -- Subject DN as x509-parser prints it: pki mode finds a leaf's CA by its issuer DN.
    subject             TEXT NOT NULL,
    not_after           BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    UNIQUE (control_plane_id, fingerprint_sha256)
);
CREATE INDEX dp_client_certificates_cp ON dp_client_certificates (control_plane_id, id);
CREATE INDEX dp_client_certificates_fingerprint ON dp_client_certificates (fingerprint_sha256);
CREATE INDEX dp_client_certificates_subject ON dp_client_certificates (subject);

-- The CA Fleetgate keeps per control plane for `dp-client-certificates/generate` in pki mode.
-- Its certificate is registered as a dp-client-certificate (certificate_id); deleting that
-- registration deletes this row too, so the next `generate` starts a fresh CA.
CREATE TABLE control_plane_cas (
    control_plane_id  TEXT PRIMARY KEY REFERENCES control_planes(id) ON DELETE CASCADE,
    certificate_id    TEXT NOT NULL,
    key_pem           TEXT NOT NULL,
    created_at        BIGINT NOT NULL
);

-- The current license of each organisation (one row; a PUT replaces it).
CREATE TABLE licenses (
    organization_id  TEXT PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    license_id       TEXT NOT NULL,
    issued_at        BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    signed_blob      TEXT NOT NULL
);
