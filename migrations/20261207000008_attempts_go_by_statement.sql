-- A job's attempts go with it by one statement per `DELETE`, not by the foreign key's
-- cascade, which ran a query per deleted row (most of a pruning batch's time). Any
-- release's `DELETE FROM jobs` keeps taking the attempts along, so the previous
-- release, still running during a deploy, prunes as it did. Attempts are written only
-- by the statement that ends a run of their job, which holds that job's row, so the
-- foreign key's check on insert guarded nothing a writer could get wrong.
CREATE OR REPLACE FUNCTION public.pool_delete_job_attempts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- `= ANY(ARRAY(...))`: probes of the attempts' primary key, never a join the
    -- planner could turn into a scan of the table.
    DELETE FROM job_attempts WHERE job_id = ANY(ARRAY(SELECT id FROM deleted));
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS jobs_deleted ON jobs;
CREATE TRIGGER jobs_deleted AFTER DELETE ON jobs REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION public.pool_delete_job_attempts();

ALTER TABLE job_attempts DROP CONSTRAINT IF EXISTS job_attempts_job_fkey;
