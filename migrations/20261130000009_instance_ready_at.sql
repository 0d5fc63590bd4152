-- When an instance became idle, so the warm target's lead time (create → idle, p90
-- of the last hour) is read exactly from the rows rather than from histogram buckets.
-- Additive: the previous release leaves it NULL, and such rows are not counted.
ALTER TABLE instances ADD COLUMN IF NOT EXISTS ready_at timestamptz;
CREATE INDEX IF NOT EXISTS instances_ready_at_idx ON instances (ready_at)
    WHERE ready_at IS NOT NULL AND created_by_job IS NOT NULL;
