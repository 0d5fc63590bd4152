-- Which claim job sent /pool/provision to an instance, and when: written (and
-- flushed) before the call, so a re-run of that claim knows it is one from the row,
-- not from the job's run counter, which a lost asynchronous commit can reset.
-- Nullable, no default: the previous release neither reads nor writes them.
ALTER TABLE instances
    ADD COLUMN provision_sent_by text,
    ADD COLUMN provision_sent_at timestamptz;
