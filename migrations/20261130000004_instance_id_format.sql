-- Instance ids are 12 characters of A-Za-z0-9_- (SPEC §5.2); rows decode them as
-- such. NOT VALID: rows that exist are not scanned (the original service wrote the
-- same format); every new or changed row is checked.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'instances_id_format') THEN
        ALTER TABLE instances ADD CONSTRAINT instances_id_format CHECK (id ~ '^[A-Za-z0-9_-]{12}$') NOT VALID;
    END IF;
END $$;
