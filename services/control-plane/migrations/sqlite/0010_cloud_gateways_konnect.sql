-- Cloud gateways in Konnect's shapes (docs/cloud-gateways.md).
--
-- `entity_version` counts the changes of a network or transit gateway (Konnect's field; a
-- configuration keeps using its `version` column for it). A configuration gains Konnect's
-- `control_plane_geo`, the node version it runs (`gateway_version`) and `api_access`. A
-- dataplane group stores Konnect's instance-type name (`small`, `medium`, `large`; the
-- provider type is derived from it), its autoscale kind with the autopilot bounds, the node
-- environment variables (JSON `[{name, value}]`) and the last autopilot decision (JSON, NULL
-- until one was made).

ALTER TABLE cloud_networks ADD COLUMN entity_version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE cloud_transit_gateways ADD COLUMN entity_version BIGINT NOT NULL DEFAULT 1;

ALTER TABLE cloud_configurations ADD COLUMN control_plane_geo TEXT NOT NULL DEFAULT 'us';
ALTER TABLE cloud_configurations ADD COLUMN gateway_version TEXT NOT NULL DEFAULT '0.1';
ALTER TABLE cloud_configurations ADD COLUMN api_access TEXT NOT NULL DEFAULT 'private+public';

ALTER TABLE cloud_dataplane_groups ADD COLUMN autoscale_kind TEXT NOT NULL DEFAULT 'static';
ALTER TABLE cloud_dataplane_groups ADD COLUMN base_rps BIGINT;
ALTER TABLE cloud_dataplane_groups ADD COLUMN max_rps BIGINT;
ALTER TABLE cloud_dataplane_groups ADD COLUMN environment TEXT NOT NULL DEFAULT '[]';
ALTER TABLE cloud_dataplane_groups ADD COLUMN autopilot TEXT;

-- Provider instance types stored before become Konnect's size names.
UPDATE cloud_dataplane_groups SET instance_type = CASE
    WHEN instance_type IN ('small', 'medium', 'large') THEN instance_type
    WHEN instance_type LIKE '%.medium' OR instance_type LIKE '%.large' THEN 'medium'
    WHEN instance_type LIKE '%.xlarge' OR instance_type LIKE '%.2xlarge' THEN 'large'
    ELSE 'small' END;

