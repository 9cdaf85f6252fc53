-- Dev portals and the billing history of services and published portals.
--
-- Billing counts "how many existed at the same time", so it needs history, not just the
-- current rows: every service and every portal publication is an interval
-- [created_at, deleted_at) in Unix seconds, NULL while it is still open. The interval tables
-- have no foreign keys on purpose: a bill for last month must survive deleting the control
-- plane or portal today.
CREATE TABLE portals (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    -- 0 or 1 (an integer so both backends decode it alike).
    published        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);
CREATE INDEX portals_org ON portals (organization_id, id);

CREATE TABLE portal_publications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  TEXT NOT NULL,
    portal_id        TEXT NOT NULL,
    published_at     BIGINT NOT NULL,
    unpublished_at   BIGINT
);
-- A portal is published at most once at a time.
CREATE UNIQUE INDEX portal_publications_open ON portal_publications (portal_id)
    WHERE unpublished_at IS NULL;
CREATE INDEX portal_publications_org ON portal_publications (organization_id, published_at);

CREATE TABLE service_lifetimes (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id   TEXT NOT NULL,
    control_plane_id  TEXT NOT NULL,
    service_id        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    deleted_at        BIGINT
);
-- A service exists at most once at a time in its control plane.
CREATE UNIQUE INDEX service_lifetimes_open ON service_lifetimes (control_plane_id, service_id)
    WHERE deleted_at IS NULL;
CREATE INDEX service_lifetimes_org ON service_lifetimes (organization_id, created_at);

-- Services that existed before billing history was kept start their interval at their
-- creation time.
INSERT INTO service_lifetimes (organization_id, control_plane_id, service_id, created_at)
SELECT cp.organization_id, e.control_plane_id, e.id, e.created_at
FROM core_entities e JOIN control_planes cp ON cp.id = e.control_plane_id
WHERE e.kind = 'services';
