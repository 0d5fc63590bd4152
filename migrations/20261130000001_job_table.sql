-- Pool's own job table: one lifecycle, written only by `store::jobs` (see
-- docs/ARCHITECTURE.md, "Jobs"). It replaces `apalis.jobs`, whose rows are copied here
-- once; rows the previous release writes there during a rolling deploy are moved by
-- the workers (`store::jobs::legacy`). `apalis.jobs` itself is left in place.

CREATE TABLE IF NOT EXISTS jobs (
    id               text        NOT NULL,
    kind             text        NOT NULL,
    args             jsonb       NOT NULL,
    state            text        NOT NULL DEFAULT 'queued',
    -- Higher runs first within a kind (claims are fetched with their own slots anyway).
    priority         smallint    NOT NULL DEFAULT 0,
    -- Runs of the current lifetime; an operator retry resets it. Every start (also
    -- a rescue of a dead worker's run) counts, and the count fences outcomes: a
    -- run may only finish the job while `attempts` is still its own number.
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    -- Runs ever started, never reset: a run that sees `runs > 1` may meet its own
    -- earlier side effects (a claim's 409 rule).
    runs             integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    worker_id        text,
    result           jsonb,
    error            text,
    cancel_requested boolean     NOT NULL DEFAULT false,
    dedupe_key       text,
    idempotency_key  text,
    CONSTRAINT jobs_pkey PRIMARY KEY (id),
    CONSTRAINT jobs_state_check CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT jobs_attempts_check CHECK (attempts >= 0 AND max_attempts >= 1 AND runs >= attempts)
);

-- The fetch: due queued jobs of one kind, in order.
CREATE INDEX IF NOT EXISTS jobs_fetch_idx ON jobs (kind, priority DESC, run_at, id) WHERE state = 'queued';
-- "One active job of this kind" (reconcile, replenish).
CREATE UNIQUE INDEX IF NOT EXISTS jobs_active_dedupe_key
    ON jobs (kind, dedupe_key) WHERE state IN ('queued', 'running') AND dedupe_key IS NOT NULL;
-- "One job ever per key" (cron ticks), until pruned.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_key ON jobs (kind, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Rescue of a dead worker's runs.
CREATE INDEX IF NOT EXISTS jobs_running_worker_idx ON jobs (worker_id) WHERE state = 'running';
-- Pruning by age.
CREATE INDEX IF NOT EXISTS jobs_finished_at_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 200);

-- Worker processes, for rescue: a process whose `last_seen` is older than the rescue
-- timeout is dead or stalled, and its running jobs are taken back.
CREATE TABLE IF NOT EXISTS job_workers (
    id         text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_workers_pkey PRIMARY KEY (id)
);

-- Workers sleep on this channel; one notification per statement that inserted jobs.
CREATE OR REPLACE FUNCTION public.pool_notify_jobs_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('pool_jobs_queued', '');
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS jobs_queued ON jobs;
CREATE TRIGGER jobs_queued AFTER INSERT ON jobs REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION public.pool_notify_jobs_queued();

-- `Prefer: wait` and metrics: `<id> <kind> <state> <queue wait ms> <run ms>`.
CREATE OR REPLACE FUNCTION public.pool_notify_job_done() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pool_job_finished', concat_ws(' ',
        NEW.id, NEW.kind, NEW.state,
        COALESCE(round(EXTRACT(EPOCH FROM (NEW.started_at - NEW.run_at)) * 1000)::bigint, -1),
        COALESCE(round(EXTRACT(EPOCH FROM (NEW.finished_at - NEW.started_at)) * 1000)::bigint, -1)));
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS jobs_finished ON jobs;
CREATE TRIGGER jobs_finished AFTER UPDATE OF state ON jobs FOR EACH ROW
    WHEN (NEW.state IN ('succeeded', 'failed', 'cancelled') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION public.pool_notify_job_done();

-- Payload bytes that are not JSON (they never were, for Pool's rows) become a value
-- no handler decodes, so the job fails after its attempts with a clear error.
CREATE OR REPLACE FUNCTION public.pool_bytes_to_jsonb(bytes bytea) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN convert_from(bytes, 'UTF8')::jsonb;
EXCEPTION WHEN others THEN
    RETURN jsonb_build_object('undecodable', encode(bytes, 'base64'));
END $$;

-- The rows of the previous release, in Pool's states. Its `Running` rows are queued
-- again: their workers belong to the release being replaced, and handlers are
-- idempotent. The same mapping moves rows written later (`store::jobs::legacy`).
CREATE OR REPLACE FUNCTION public.pool_adopt_apalis_jobs(only_waiting boolean) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE moved bigint := 0;
BEGIN
    IF to_regclass('apalis.jobs') IS NULL THEN
        RETURN 0;
    END IF;
    WITH taken AS (
        DELETE FROM apalis.jobs a WHERE a.id IN (
            SELECT id FROM apalis.jobs
            WHERE NOT only_waiting OR status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts)
            FOR UPDATE SKIP LOCKED)
        RETURNING a.*
    ), mapped AS (
        SELECT t.*, CASE
            WHEN t.status IN ('Pending', 'Queued', 'Running') THEN 'queued'
            WHEN t.status = 'Failed' AND t.attempts < t.max_attempts THEN 'queued'
            WHEN t.status = 'Done' THEN 'succeeded'
            WHEN t.status = 'Killed' AND COALESCE(t.metadata ? 'cancelled', false) THEN 'cancelled'
            ELSE 'failed' END AS new_state
        FROM taken t
    ), ins AS (
        INSERT INTO jobs (id, kind, args, state, attempts, max_attempts, runs, run_at, created_at, started_at,
                          finished_at, result, error, cancel_requested, dedupe_key, idempotency_key)
        SELECT id, job_type, public.pool_bytes_to_jsonb(job), new_state,
               LEAST(attempts, GREATEST(max_attempts, 1)), GREATEST(max_attempts, 1), attempts,
               CASE WHEN new_state = 'queued' AND status = 'Running' THEN now() ELSE run_at END,
               LEAST(run_at, COALESCE(lock_at, run_at), COALESCE(done_at, run_at)),
               CASE WHEN new_state = 'queued' THEN NULL ELSE lock_at END,
               CASE WHEN new_state = 'queued' THEN NULL ELSE COALESCE(done_at, now()) END,
               last_result -> 'Ok', last_result ->> 'Err', false,
               CASE WHEN new_state = 'queued' THEN metadata -> 'dedupe' END, idempotency_key
        FROM mapped
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO moved FROM ins;
    RETURN moved;
END $$;

SELECT public.pool_adopt_apalis_jobs(false);
