-- The image each instance's service reports in `/status/batch`, so idle instances on
-- an older image can be replaced (issue 12). Additive; NULL until observed.
ALTER TABLE instances ADD COLUMN IF NOT EXISTS image text;
