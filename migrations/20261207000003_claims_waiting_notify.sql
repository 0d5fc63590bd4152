-- A statement that inserts a waiting claim also notifies `pool_claims_waiting`: the
-- workers' matchers sleep on it while no claim waits, instead of passing four times a
-- second (issue 21). The previous release ignores the channel.
CREATE OR REPLACE FUNCTION public.pool_notify_jobs_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted) THEN
        PERFORM pg_notify('pool_jobs_queued', '');
    END IF;
    IF EXISTS (SELECT 1 FROM inserted WHERE waiting) THEN
        PERFORM pg_notify('pool_claims_waiting', '');
    END IF;
    RETURN NULL;
END $$;
