-- no-transaction
-- Nothing reads `jobs_fetch_idx` since the release that fetches by
-- `jobs_fetch_due_idx`, while every change of a job's state still writes it. Dropped
-- concurrently (writes go on meanwhile), hence outside a transaction, one statement.
DROP INDEX CONCURRENTLY IF EXISTS jobs_fetch_idx;
