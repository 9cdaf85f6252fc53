-- Dedicated cloud gateways (DESIGN.md §7): provider accounts, networks, transit-gateway
-- attachments and configurations with their dataplane groups.
--
-- Each row holds the desired state the API accepted and the observed state the reconcilers
-- last wrote (`state`, `state_reason`, the JSON `provider_metadata` / `nodes`). A delete moves
-- a row to `terminating`; the reconciler removes the cloud resources and then the row, so a
-- crash between the two leaves the row to retry from. Lists, arrays and provider metadata are
-- JSON text so both backends store them alike.

CREATE TABLE cloud_provider_accounts (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    -- `aws` or `local`.
    provider             TEXT NOT NULL,
    -- The AWS account id, or `local`.
    provider_account_id  TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (organization_id, provider, provider_account_id)
);
CREATE INDEX cloud_provider_accounts_org ON cloud_provider_accounts (organization_id, id);

CREATE TABLE cloud_networks (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    -- No cascade: an account in use cannot be deleted (the API answers 409 first).
    provider_account_id  TEXT NOT NULL REFERENCES cloud_provider_accounts(id),
    name                 TEXT NOT NULL,
    region               TEXT NOT NULL,
    availability_zones   TEXT NOT NULL,
    cidr_block           TEXT NOT NULL,
    state                TEXT NOT NULL,
    state_reason         TEXT,
    provider_metadata    TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (organization_id, name)
);
CREATE INDEX cloud_networks_org ON cloud_networks (organization_id, id);
CREATE INDEX cloud_networks_account ON cloud_networks (provider_account_id);
CREATE INDEX cloud_networks_state ON cloud_networks (state);

CREATE TABLE cloud_transit_gateways (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    -- No cascade: a network with attachments cannot be deleted (the API answers 409 first).
    network_id           TEXT NOT NULL REFERENCES cloud_networks(id),
    name                 TEXT NOT NULL,
    cidr_blocks          TEXT NOT NULL,
    -- Konnect's optional DNS settings, stored as given (JSON), NULL when absent.
    dns_config           TEXT,
    transit_gateway_id   TEXT NOT NULL,
    ram_share_arn        TEXT NOT NULL,
    state                TEXT NOT NULL,
    state_reason         TEXT,
    provider_metadata    TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (network_id, name)
);
CREATE INDEX cloud_transit_gateways_network ON cloud_transit_gateways (network_id, id);
CREATE INDEX cloud_transit_gateways_state ON cloud_transit_gateways (state);

-- One configuration per control plane. `deleted_at` is set by DELETE: the configuration is
-- gone for the API, its groups terminate, and the reconciler removes the row once they have.
-- A PUT for the same control plane revives the row.
CREATE TABLE cloud_configurations (
    id                   TEXT PRIMARY KEY,
    organization_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    -- No cascade: nodes must be terminated before their control plane goes (the API refuses
    -- to delete a control plane that still has a configuration).
    control_plane_id     TEXT NOT NULL UNIQUE REFERENCES control_planes(id),
    version              BIGINT NOT NULL,
    deleted_at           BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX cloud_configurations_org ON cloud_configurations (organization_id, id);

CREATE TABLE cloud_dataplane_groups (
    id                   TEXT PRIMARY KEY,
    configuration_id     TEXT NOT NULL REFERENCES cloud_configurations(id),
    organization_id      TEXT NOT NULL,
    control_plane_id     TEXT NOT NULL,
    provider             TEXT NOT NULL,
    region               TEXT NOT NULL,
    network_id           TEXT NOT NULL REFERENCES cloud_networks(id),
    instance_type        TEXT NOT NULL,
    requested_instances  BIGINT NOT NULL,
    state                TEXT NOT NULL,
    state_reason         TEXT,
    -- The live nodes the reconciler last observed (JSON array), `[]` until then.
    nodes                TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX cloud_dataplane_groups_configuration ON cloud_dataplane_groups (configuration_id, id);
CREATE INDEX cloud_dataplane_groups_network ON cloud_dataplane_groups (network_id);
CREATE INDEX cloud_dataplane_groups_state ON cloud_dataplane_groups (state);
