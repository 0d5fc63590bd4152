-- A statement that inserts jobs due later (a claim's top-up, a moment after it) also
-- notifies `pool_jobs_queued` with the milliseconds until the first of them is due,
-- so a worker with nothing else to do wakes for it then instead of at its next poll.
-- An empty payload still means "due now". The previous release wakes on any payload.
CREATE OR REPLACE FUNCTION public.pool_notify_jobs_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    first_later timestamptz;
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE run_at <= now()) THEN
        PERFORM pg_notify('pool_jobs_queued', '');
    END IF;
    SELECT min(run_at) INTO first_later FROM inserted WHERE run_at > now();
    IF first_later IS NOT NULL THEN
        PERFORM pg_notify('pool_jobs_queued', ceil(EXTRACT(EPOCH FROM first_later - now()) * 1000)::bigint::text);
    END IF;
    IF EXISTS (SELECT 1 FROM inserted WHERE waiting) THEN
        PERFORM pg_notify('pool_claims_waiting', '');
    END IF;
    RETURN NULL;
END $$;
