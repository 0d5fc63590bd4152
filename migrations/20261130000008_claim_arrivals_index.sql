-- The warm target reads recent claim arrivals (the most claims within one lead time);
-- a small partial index keeps that read off the rest of the job table.
CREATE INDEX IF NOT EXISTS jobs_claims_created_idx ON jobs (created_at) WHERE kind = 'claim_and_provision';
