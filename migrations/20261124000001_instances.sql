-- Pool's instances table. Written to also adopt the original Node service's table
-- in place (SPEC §9): it may already exist, with or without legacy columns, and with
-- no migration history. Every step is therefore "if not exists" / relaxing, and no
-- row or column value is dropped.

CREATE TABLE IF NOT EXISTS instances (
    id              text PRIMARY KEY,
    name            text,
    url             text,
    status          text NOT NULL DEFAULT 'provisioning',
    agent_name      text,
    conversation_id text,
    invite_url      text,
    instructions    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz
);

-- Columns Pool adds. Defaults are safe for rows written by the original service.
ALTER TABLE instances
    ADD COLUMN IF NOT EXISTS service_id        text,
    ADD COLUMN IF NOT EXISTS deploy_status     text,
    ADD COLUMN IF NOT EXISTS claim_job_id      text,
    ADD COLUMN IF NOT EXISTS join_url          text,
    ADD COLUMN IF NOT EXISTS last_error        text,
    ADD COLUMN IF NOT EXISTS missing_batches   integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS status_changed_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at        timestamptz NOT NULL DEFAULT now();

-- The original marks created-but-not-ready rows `starting`.
UPDATE instances SET status = 'provisioning' WHERE status = 'starting';
ALTER TABLE instances ALTER COLUMN status SET DEFAULT 'provisioning';

-- Legacy NOT NULL constraints would block Pool's inserts (it writes the row before the
-- provider call, when name and service id are not known yet). Relax, never drop.
DO $$
DECLARE col text;
BEGIN
    FOR col IN
        SELECT column_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'instances'
          AND is_nullable = 'NO'
          AND column_name NOT IN ('id', 'status', 'created_at', 'missing_batches',
                                  'status_changed_at', 'updated_at')
    LOOP
        EXECUTE format('ALTER TABLE instances ALTER COLUMN %I DROP NOT NULL', col);
    END LOOP;
END $$;

ALTER TABLE instances DROP CONSTRAINT IF EXISTS instances_status_check;
ALTER TABLE instances ADD CONSTRAINT instances_status_check CHECK (status IN
    ('provisioning', 'idle', 'claiming', 'claimed', 'crashed', 'draining'));

-- A claiming/claimed row records which claim job took it; one job binds one row.
CREATE UNIQUE INDEX IF NOT EXISTS instances_claim_job_id_key
    ON instances (claim_job_id) WHERE claim_job_id IS NOT NULL;
-- Claim takes the oldest idle row; counts group by status.
CREATE INDEX IF NOT EXISTS instances_idle_created_idx
    ON instances (created_at, id) WHERE status = 'idle';
CREATE INDEX IF NOT EXISTS idx_instances_status ON instances (status);
