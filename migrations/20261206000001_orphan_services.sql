-- The real services API is not idempotent on create and may leave a service running
-- after a destroy it answered 200 for. Such services no row owns are orphans: kept
-- here until they are gone at the provider, so operators see what still costs money.
-- create_requested_at / create_answered_at tell a provision's re-run whether an
-- earlier create-instance may still be running upstream (asked, never answered).
-- Additive: the previous release neither reads nor writes any of it.
ALTER TABLE instances ADD COLUMN IF NOT EXISTS create_requested_at timestamptz;
ALTER TABLE instances ADD COLUMN IF NOT EXISTS create_answered_at timestamptz;
CREATE TABLE IF NOT EXISTS orphan_services (
    service_id text CONSTRAINT orphan_services_pkey PRIMARY KEY,
    instance_id text NOT NULL,
    name text,
    environment_id text,
    reason text NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
