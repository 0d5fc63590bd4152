-- The current image is the newest row's that reports one; claims read it on every
-- reservation, so it is found from this index's end, not by a scan of every row.
-- Additive: the previous release reads the same rows.
CREATE INDEX IF NOT EXISTS instances_image_created_idx ON instances (created_at, id) WHERE image IS NOT NULL;
