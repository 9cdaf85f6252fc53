-- Konnect's shapes for data-plane nodes and dp-client-certificates (docs/clustering.md):
-- a node shows `data_plane_cert_id`, the registered certificate it connected with (for a node
-- admitted through a pki CA, the CA's registration); a certificate carries Konnect's optional
-- `title`. Both are NULL for rows written before this migration.
ALTER TABLE nodes ADD COLUMN data_plane_cert_id TEXT;
ALTER TABLE dp_client_certificates ADD COLUMN title TEXT;
