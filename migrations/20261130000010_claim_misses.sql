-- Claims that found no idle instance and did not wait (503 no_idle_instance) leave no
-- job, yet they are demand: the warm target's burst measure counts their arrivals
-- here beside the claim jobs. Rows older than an hour are pruned. Additive: the
-- previous release writes none, and its 503s go uncounted as before.
CREATE TABLE IF NOT EXISTS claim_misses (
    id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT claim_misses_pkey PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS claim_misses_at_idx ON claim_misses (at);
