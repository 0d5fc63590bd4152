-- What the operator surface reads (issue 11): every attempt's outcome, paused job
-- kinds, and per-minute metric rows for the dashboard's charts. Additive only: the
-- previous release neither reads nor writes these tables.

-- One row per run that did not succeed (a succeeded run is the job row itself).
-- `run` is the job's `runs` at that run: unique per job, never reset by a retry.
CREATE TABLE IF NOT EXISTS job_attempts (
    job_id      text        NOT NULL,
    run         integer     NOT NULL,
    outcome     text        NOT NULL,
    error       text,
    worker_id   text,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_attempts_pkey PRIMARY KEY (job_id, run),
    CONSTRAINT job_attempts_job_fkey FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE,
    CONSTRAINT job_attempts_outcome_check CHECK (outcome IN ('retry', 'failed', 'cancelled', 'lost'))
);

-- A paused kind's jobs stay queued: no worker fetches them until it is resumed.
CREATE TABLE IF NOT EXISTS job_kind_pauses (
    kind      text        NOT NULL,
    paused_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_kind_pauses_pkey PRIMARY KEY (kind)
);

-- Per-minute sums that every process adds to (counters: `count`; histograms: also
-- `sum` and `buckets`, counts per bucket of `metrics::BUCKETS`; gauges: the last
-- sample in `count`). Pruned after a retention, so bounded.
CREATE TABLE IF NOT EXISTS metric_minutes (
    minute  timestamptz      NOT NULL,
    name    text             NOT NULL,
    labels  text             NOT NULL DEFAULT '',
    count   double precision NOT NULL DEFAULT 0,
    sum     double precision NOT NULL DEFAULT 0,
    buckets bigint[],
    CONSTRAINT metric_minutes_pkey PRIMARY KEY (minute, name, labels)
);
