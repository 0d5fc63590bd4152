-- ANALYZE reads 300 rows per point of a table's largest statistics target: 30,000
-- rows of `jobs` at the default 100, about 0.23 s of a core at a million rows, and
-- autovacuum analyzes the table again after every tenth of it changes — several
-- times while a pruning round deletes finished rows, each a burst the claims wait
-- behind on a small machine. At 10 it reads 3,000 rows (0.02 s). The planner's
-- choices on these tables rest on the kinds and states (ten and five values, all in
-- a most-common list of ten) and on partial indexes, which 3,000 rows describe as
-- well. A column added later must carry the same target (a test checks it).
ALTER TABLE jobs
    ALTER COLUMN id SET STATISTICS 10,
    ALTER COLUMN kind SET STATISTICS 10,
    ALTER COLUMN args SET STATISTICS 10,
    ALTER COLUMN state SET STATISTICS 10,
    ALTER COLUMN priority SET STATISTICS 10,
    ALTER COLUMN attempts SET STATISTICS 10,
    ALTER COLUMN max_attempts SET STATISTICS 10,
    ALTER COLUMN runs SET STATISTICS 10,
    ALTER COLUMN run_at SET STATISTICS 10,
    ALTER COLUMN created_at SET STATISTICS 10,
    ALTER COLUMN started_at SET STATISTICS 10,
    ALTER COLUMN finished_at SET STATISTICS 10,
    ALTER COLUMN worker_id SET STATISTICS 10,
    ALTER COLUMN result SET STATISTICS 10,
    ALTER COLUMN error SET STATISTICS 10,
    ALTER COLUMN cancel_requested SET STATISTICS 10,
    ALTER COLUMN dedupe_key SET STATISTICS 10,
    ALTER COLUMN idempotency_key SET STATISTICS 10,
    ALTER COLUMN progress SET STATISTICS 10,
    ALTER COLUMN waiting SET STATISTICS 10;
ALTER TABLE job_attempts
    ALTER COLUMN job_id SET STATISTICS 10,
    ALTER COLUMN run SET STATISTICS 10,
    ALTER COLUMN outcome SET STATISTICS 10,
    ALTER COLUMN error SET STATISTICS 10,
    ALTER COLUMN worker_id SET STATISTICS 10,
    ALTER COLUMN started_at SET STATISTICS 10,
    ALTER COLUMN finished_at SET STATISTICS 10;
