-- Claims that wait for capacity (`Prefer: wait=N` with no idle instance): queued
-- with `waiting` set and `run_at` at their deadline, so no worker fetches them. A
-- worker binds the next idle instance to the oldest waiting claim and clears the
-- flag in the same statement; the web gives up at N (or when its client leaves)
-- only while the flag is still set. Additive: the previous release writes `false`.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS waiting boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS jobs_waiting_idx ON jobs (created_at, id) WHERE waiting;
