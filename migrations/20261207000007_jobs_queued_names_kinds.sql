-- The notification of jobs due now names their kinds (`a,b`), so a worker asks for
-- those alone; the transition table is read once. An empty payload still means any
-- kind, and a number the milliseconds until the first job due later. The previous
-- release wakes on any payload that is not a number and fetches every kind.
CREATE OR REPLACE FUNCTION public.pool_notify_jobs_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    due_kinds text;
    first_later timestamptz;
    any_waiting boolean;
BEGIN
    SELECT string_agg(DISTINCT kind, ',') FILTER (WHERE run_at <= now()),
           min(run_at) FILTER (WHERE run_at > now()),
           bool_or(waiting)
      INTO due_kinds, first_later, any_waiting
      FROM inserted;
    IF due_kinds IS NOT NULL THEN
        PERFORM pg_notify('pool_jobs_queued', due_kinds);
    END IF;
    IF first_later IS NOT NULL THEN
        PERFORM pg_notify('pool_jobs_queued', ceil(EXTRACT(EPOCH FROM first_later - now()) * 1000)::bigint::text);
    END IF;
    IF any_waiting THEN
        PERFORM pg_notify('pool_claims_waiting', '');
    END IF;
    RETURN NULL;
END $$;
