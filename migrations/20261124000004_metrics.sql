-- Counters that worker processes add to (upstream calls by target and code,
-- rate-limit waits), so one `/metrics` of any web process shows the whole fleet.
CREATE TABLE IF NOT EXISTS pool_counters (
    name   text NOT NULL,
    labels text NOT NULL,
    value  double precision NOT NULL DEFAULT 0,
    CONSTRAINT pool_counters_pkey PRIMARY KEY (name, labels)
);

-- The finish notification now carries what metrics need after the job id:
-- `<id> <kind> <status> <queue wait ms> <run ms>` (-1 when unknown).
CREATE OR REPLACE FUNCTION public.pool_notify_job_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pool_job_finished', concat_ws(' ',
        NEW.id, NEW.job_type, NEW.status,
        COALESCE(round(EXTRACT(EPOCH FROM (NEW.lock_at - NEW.run_at)) * 1000)::bigint, -1),
        COALESCE(round(EXTRACT(EPOCH FROM (NEW.done_at - NEW.lock_at)) * 1000)::bigint, -1)));
    RETURN NULL;
END $$;
