-- A finished claim's notification carries its row (`<id> <kind> <state> <queue wait
-- ms> <run ms> <row as JSON>`): the request waiting for it answers without reading
-- the row again. Only claims, the call a person waits on; other kinds (drained by
-- the thousand) keep the short payload, as does a claim whose row would not fit in
-- a notification. Listeners read the first field, so earlier releases read both.
CREATE OR REPLACE FUNCTION public.pool_notify_job_done() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head text := concat_ws(' ',
        NEW.id, NEW.kind, NEW.state,
        COALESCE(round(EXTRACT(EPOCH FROM (NEW.started_at - NEW.run_at)) * 1000)::bigint, -1),
        COALESCE(round(EXTRACT(EPOCH FROM (NEW.finished_at - NEW.started_at)) * 1000)::bigint, -1));
    body text;
BEGIN
    IF NEW.kind = 'claim_and_provision' THEN
        body := json_build_object(
            'id', NEW.id, 'kind', NEW.kind, 'args', NEW.args, 'state', NEW.state, 'attempts', NEW.attempts,
            'max_attempts', NEW.max_attempts, 'runs', NEW.runs, 'run_at', NEW.run_at,
            'created_at', NEW.created_at, 'started_at', NEW.started_at, 'finished_at', NEW.finished_at,
            'result', NEW.result, 'error', NEW.error, 'cancel_requested', NEW.cancel_requested)::text;
        IF octet_length(head) + octet_length(body) < 7900 THEN
            head := head || ' ' || body;
        END IF;
    END IF;
    PERFORM pg_notify('pool_job_finished', head);
    RETURN NULL;
END $$;
