-- no-transaction
-- A statement that names an instance by id and the status it expects
-- (`id = $1 AND status = 'claiming'`) may be planned on the status index, every row
-- of the table costing the same to the planner. On `(status)` alone that walked every
-- entry left by earlier claims of that status, dead or alive, and the walk grew with
-- the claims served; on `(status, id)` it is one descent, whichever index is chosen.
-- Built concurrently (writes go on meanwhile), hence outside a transaction, one
-- statement.
CREATE INDEX CONCURRENTLY IF NOT EXISTS instances_status_id_idx ON instances (status, id);
