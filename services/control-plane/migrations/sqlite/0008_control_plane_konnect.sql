-- Konnect's control-plane fields (docs/control-planes.md): `cloud_gateway` marks a control
-- plane usable by cloud gateways; `proxy_urls` are where its data planes can be reached (JSON
-- array of {host, port, protocol}, shown back as given).
ALTER TABLE control_planes ADD COLUMN cloud_gateway BIGINT NOT NULL DEFAULT 0;
ALTER TABLE control_planes ADD COLUMN proxy_urls TEXT NOT NULL DEFAULT '[]';

-- Labels one row each, so `labels=key:value,existCheck` filters are plain indexed lookups on
-- both backends; `control_planes.labels` stays the copy the API shows. Written in the same
-- transaction as the control plane.
CREATE TABLE control_plane_labels (
    control_plane_id  TEXT NOT NULL REFERENCES control_planes(id) ON DELETE CASCADE,
    key               TEXT NOT NULL,
    value             TEXT NOT NULL,
    PRIMARY KEY (control_plane_id, key)
);
CREATE INDEX control_plane_labels_key ON control_plane_labels (key, value);

INSERT INTO control_plane_labels (control_plane_id, key, value)
    SELECT control_planes.id, labels_json.key, labels_json.value
    FROM control_planes, json_each(control_planes.labels) AS labels_json;

-- Numbered lists sort by creation time within an organisation.
CREATE INDEX control_planes_org_created ON control_planes (organization_id, created_at, id);
