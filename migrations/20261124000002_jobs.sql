-- Pool's additions to the job queue's schema (`apalis`, created by `pool migrate`
-- before this runs). apalis owns the table; we only add indexes, a trigger and our own
-- tables, so apalis's future migrations keep applying.

-- "One active job of this kind" (reconcile, replenish): jobs that carry a `dedupe`
-- metadata key may exist once per key while queued or running. Pending rows include
-- jobs waiting for a retry, which Pool reschedules as Pending.
CREATE UNIQUE INDEX IF NOT EXISTS pool_jobs_active_dedupe_key
    ON apalis.jobs (job_type, (metadata -> 'dedupe'))
    WHERE status IN ('Pending', 'Queued', 'Running') AND metadata ? 'dedupe';

-- Job listing (newest first) and pruning by age.
CREATE INDEX IF NOT EXISTS pool_jobs_done_at_idx ON apalis.jobs (done_at) WHERE done_at IS NOT NULL;

-- `Prefer: wait=N` waiters are woken by this notification instead of polling.
CREATE OR REPLACE FUNCTION public.pool_notify_job_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pool_job_finished', NEW.id);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS pool_job_finished ON apalis.jobs;
CREATE TRIGGER pool_job_finished
    AFTER UPDATE OF status ON apalis.jobs
    FOR EACH ROW
    WHEN (NEW.status IN ('Done', 'Failed', 'Killed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION public.pool_notify_job_finished();

-- Finished rows are deleted on a schedule; keep dead tuples from slowing the fetch.
ALTER TABLE apalis.jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 200);

-- `Idempotency-Key` on claim: the same key and body within 24 h return the same job.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key          text NOT NULL,
    request_hash text NOT NULL,
    job_id       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (key)
);

-- Rate limits shared by every worker process (GCRA): `tat` is the theoretical arrival
-- time of the next call; each caller reserves a slot with one UPDATE.
CREATE TABLE IF NOT EXISTS rate_limits (
    name text NOT NULL,
    tat  timestamptz NOT NULL,
    CONSTRAINT rate_limits_pkey PRIMARY KEY (name)
);

-- Jobs that hold instance rows, so a re-run resumes its own rows instead of taking
-- new ones: the replenish that created a row, and the drain that took it.
ALTER TABLE instances
    ADD COLUMN IF NOT EXISTS created_by_job text,
    ADD COLUMN IF NOT EXISTS drain_job_id   text;
CREATE INDEX IF NOT EXISTS instances_created_by_job_idx ON instances (created_by_job) WHERE created_by_job IS NOT NULL;
CREATE INDEX IF NOT EXISTS instances_drain_job_id_idx ON instances (drain_job_id) WHERE drain_job_id IS NOT NULL;
