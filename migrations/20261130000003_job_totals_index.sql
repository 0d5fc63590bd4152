-- Totals per kind and state (the job list, /metrics) come from this index alone
-- (index-only scans) instead of the table's rows with their payloads and results.
CREATE INDEX IF NOT EXISTS jobs_kind_state_idx ON jobs (kind, state);
