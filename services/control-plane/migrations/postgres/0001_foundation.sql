-- Organisations, API tokens, control planes and the core entities of their gateway config.
-- Every integer is 64-bit so the same queries decode identically on SQLite and PostgreSQL.
CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    role             TEXT NOT NULL,
    -- SHA-256 of the whole token; the token itself is never stored.
    token_hash       TEXT NOT NULL UNIQUE,
    -- The first characters of the token, so a user can tell tokens apart.
    display_prefix   TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT
);
CREATE INDEX api_tokens_org ON api_tokens (organization_id, id);

CREATE TABLE control_planes (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    labels           TEXT NOT NULL,
    cluster_type     TEXT NOT NULL,
    auth_type        TEXT NOT NULL,
    -- Bumped by every write to the control plane's gateway config, in the same transaction.
    config_version   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);
CREATE INDEX control_planes_org ON control_planes (organization_id, id);

-- Core entities are stored as their canonical JSON; natural keys and references are kept in
-- side tables so uniqueness and referential integrity are enforced on both backends alike.
CREATE TABLE core_entities (
    control_plane_id  TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,
    id                TEXT NOT NULL,
    body              TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (control_plane_id, kind, id)
);

CREATE TABLE entity_unique_keys (
    control_plane_id  TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    kind              TEXT NOT NULL,
    field             TEXT NOT NULL,
    value             TEXT NOT NULL,
    entity_id         TEXT NOT NULL,
    PRIMARY KEY (control_plane_id, kind, field, value)
);
CREATE INDEX entity_unique_keys_owner ON entity_unique_keys (control_plane_id, kind, entity_id);

CREATE TABLE entity_references (
    control_plane_id  TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    from_kind         TEXT NOT NULL,
    from_id           TEXT NOT NULL,
    field             TEXT NOT NULL,
    to_kind           TEXT NOT NULL,
    to_id             TEXT NOT NULL,
    on_delete         TEXT NOT NULL,
    PRIMARY KEY (control_plane_id, from_kind, from_id, field)
);
CREATE INDEX entity_references_target ON entity_references (control_plane_id, to_kind, to_id);
