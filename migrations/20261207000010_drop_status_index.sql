-- no-transaction
-- `instances_status_id_idx` (status, id) serves every lookup by status that
-- `idx_instances_status` did. Dropped concurrently (writes go on meanwhile), hence
-- outside a transaction, one statement.
DROP INDEX CONCURRENTLY IF EXISTS idx_instances_status;
