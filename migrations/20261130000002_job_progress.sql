-- What a run did that a re-run of the same job must know, recorded in the same
-- statement as the effect itself (e.g. the rows a drain took), so a job that crashed
-- at any point neither repeats nor skips its work. Kept by an operator retry.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress jsonb;
