-- no-transaction
-- The fetch reads due jobs of one kind: with `run_at` right after `kind`, the index
-- stops at the first row not yet due, so queued rows scheduled in the future (backoffs)
-- and waiting claims (left out by the predicate) cost nothing. The fetch orders by
-- `run_at, id` only: `priority` is never set. `jobs_fetch_idx` stays for the previous
-- release, which still orders by priority; a later release drops it. Built
-- concurrently (writes go on meanwhile), hence outside a transaction, one statement.
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_fetch_due_idx ON jobs (kind, run_at, id)
    WHERE state = 'queued' AND NOT waiting;
