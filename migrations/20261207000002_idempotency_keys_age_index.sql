-- no-transaction
-- Pruning deletes expired idempotency keys oldest first, in batches, by this index
-- rather than a scan of the table. Built concurrently, hence outside a transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_created_at_idx ON idempotency_keys (created_at);
