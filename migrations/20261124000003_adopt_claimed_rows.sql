-- The original service treats a row as claimed iff `agent_name` is non-empty
-- (SPEC §9), whatever its status says. Make the status say so, so Pool never hands
-- a bound instance out again. Rows Pool itself writes already agree: no-op for them.
UPDATE instances
SET status = 'claimed',
    claimed_at = COALESCE(claimed_at, created_at),
    status_changed_at = now()
WHERE COALESCE(agent_name, '') <> ''
  AND status IN ('provisioning', 'idle');
