//! Every transition of a job, each one compare-and-set SQL:
//!
//! ```text
//!            fetch                 finish: ok / permanent / cancelled
//! queued ───────────▶ running ───────────────────────────────▶ succeeded | failed | cancelled
//!   ▲  ▲                 │ finish: retryable (attempts left) ─▶ queued, run_at = now + backoff
//!   │  │                 │ rescue (worker silent): queued, or failed when out of attempts
//!   │  └─────────────────┘
//!   └── retry (operator) ◀── failed | cancelled          queued ──cancel──▶ cancelled
//! ```
//!
//! A fetch increments `attempts`; a run may finish its job only while the row is still
//! `running` with that attempt number and its worker, so a run that was rescued (its
//! worker stalled and came back) cannot overwrite the outcome of the run that replaced
//! it. A rescue counts as an attempt. A running job that an operator cancels is asked to
//! stop (`cancel_requested`); whatever ends that run, the job ends `cancelled`.

use std::time::Duration;

mod fetch;
mod liveness;
mod operator;

pub use fetch::{Fetched, fetch, fetch_cost};

pub use liveness::{
    deregister, heartbeat, heartbeat_releasing_orphans, live_workers, release_orphans, release_unstarted, rescue,
};
pub use operator::{ActionError, Filter, Retried, cancel, cancel_all, retry, retry_all};
use serde_json::Value;
use sqlx::PgExecutor;

use super::JobState;
use crate::domain::JobId;

/// How a run ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    Succeeded(Value),
    /// Stopped at a safe point because an operator cancelled it.
    Cancelled,
    /// Run again no earlier than `delay` from now, unless out of attempts.
    Retryable {
        error: String,
        delay: Duration,
    },
    /// Cannot succeed by repeating.
    Permanent(String),
    /// Not done yet, as expected (a follow-up polling for something): run again after
    /// `delay`, like a retry, but not kept as a failed attempt.
    Again {
        note: String,
        delay: Duration,
    },
}

impl Outcome {
    /// `(outcome, result, error, delay ms, kept as an attempt)`.
    fn parts(&self) -> (&'static str, Option<&Value>, Option<&str>, f64, bool) {
        match self {
            Self::Succeeded(value) => ("succeeded", Some(value), None, 0.0, true),
            Self::Cancelled => ("cancelled", None, Some("cancelled by operator"), 0.0, true),
            Self::Retryable { error, delay } => ("retry", None, Some(error), delay.as_secs_f64() * 1000.0, true),
            Self::Permanent(error) => ("failed", None, Some(error), 0.0, true),
            Self::Again { note, delay } => ("retry", None, Some(note), delay.as_secs_f64() * 1000.0, false),
        }
    }
}

/// The outcome of one run, as [`finish`] writes it.
#[derive(Clone, Debug)]
pub struct Finished {
    pub id: JobId,
    pub attempt: i32,
    pub outcome: Outcome,
}

/// A run whose outcome [`finish`] applied.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Applied {
    pub id: JobId,
    pub kind: String,
    /// The job's state now (`queued`: it will run again).
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// Seconds the run took.
    pub run_time: f64,
    /// Seconds since the job was created (for a claim: the request).
    pub age: f64,
}

/// Writes the outcomes of runs of `worker` in one statement, and keeps every run that
/// did not succeed in `job_attempts`; returns the runs it applied to. A missing id
/// was rescued or cancelled meanwhile: that outcome is dropped, by design. A
/// retryable failure becomes `failed` when it used the last attempt, and `cancelled`
/// when an operator asked the run to stop.
pub async fn finish(db: impl PgExecutor<'_>, worker: &str, runs: &[Finished]) -> sqlx::Result<Vec<Applied>> {
    let ids: Vec<&JobId> = runs.iter().map(|run| &run.id).collect();
    let outcomes: serde_json::Map<String, Value> = newest_runs(runs)
        .map(|run| {
            let (outcome, result, error, delay_ms, keep) = run.outcome.parts();
            let entry = serde_json::json!({
                "attempt": run.attempt, "outcome": outcome, "result": result, "error": error, "delayMs": delay_ms,
                "keep": keep,
            });
            (run.id.to_string(), entry)
        })
        .collect();
    sqlx::query_as(
        // Rows are found by primary key (`= ANY`), each one's outcome by key in one
        // JSON object: the plan cannot depend on how many rows the statistics think
        // are running (they rarely know), and the work is linear in the batch.
        // IS NOT DISTINCT FROM keeps the index on running rows out of the plan.
        "WITH done AS (
             UPDATE jobs j SET
                 state = CASE WHEN $2::jsonb -> j.id ->> 'outcome' <> 'retry' THEN $2::jsonb -> j.id ->> 'outcome'
                              WHEN j.cancel_requested THEN 'cancelled'
                              WHEN j.attempts >= j.max_attempts THEN 'failed'
                              ELSE 'queued' END,
                 result = NULLIF($2::jsonb -> j.id -> 'result', 'null'),
                 error = $2::jsonb -> j.id ->> 'error',
                 worker_id = NULL,
                 run_at = CASE WHEN $2::jsonb -> j.id ->> 'outcome' = 'retry' AND NOT j.cancel_requested
                                    AND j.attempts < j.max_attempts
                               THEN now() + make_interval(secs => ($2::jsonb -> j.id ->> 'delayMs')::float8 / 1000)
                               ELSE j.run_at END,
                 finished_at = CASE WHEN $2::jsonb -> j.id ->> 'outcome' = 'retry' AND NOT j.cancel_requested
                                         AND j.attempts < j.max_attempts
                                    THEN NULL ELSE now() END
             WHERE j.id = ANY($1) AND j.attempts = ($2::jsonb -> j.id ->> 'attempt')::int
               AND j.state IS NOT DISTINCT FROM 'running' AND j.worker_id IS NOT DISTINCT FROM $3
             RETURNING j.id, j.kind, j.state, j.runs, j.error, j.started_at, j.created_at
         ), kept AS (
             INSERT INTO job_attempts (job_id, run, outcome, error, worker_id, started_at)
             SELECT id, runs, CASE WHEN state = 'queued' THEN 'retry' ELSE state END, error, $3, started_at
             FROM done WHERE state <> 'succeeded' AND (state <> 'queued' OR ($2::jsonb -> id ->> 'keep')::boolean)
             ON CONFLICT ON CONSTRAINT job_attempts_pkey DO NOTHING
         )
         SELECT id, kind, state, COALESCE(EXTRACT(EPOCH FROM now() - started_at)::float8, 0) AS run_time,
                EXTRACT(EPOCH FROM now() - created_at)::float8 AS age
         FROM done",
    )
    .bind(&ids)
    .bind(Value::Object(outcomes))
    .bind(worker)
    .fetch_all(db)
    .await
}

/// Of several runs of one job (a run rescued from this worker and its successor,
/// finishing together), the newest: only it can hold the job, and one outcome per
/// job fits the statement. Order is otherwise kept.
fn newest_runs(runs: &[Finished]) -> impl Iterator<Item = &Finished> {
    let mut newest: std::collections::HashMap<&JobId, i32> = std::collections::HashMap::new();
    for run in runs {
        let attempt = newest.entry(&run.id).or_insert(run.attempt);
        *attempt = (*attempt).max(run.attempt);
    }
    runs.iter().filter(move |run| newest.get(&run.id) == Some(&run.attempt))
}

/// Whether the run `attempt` of job `id` by `worker` still holds the job (its lease),
/// and whether an operator asked it to stop. `None`: the run lost the job (rescued,
/// taken back, or finished elsewhere) and must not change anything more. The worker
/// is part of the lease: a crash that lost a fetch can hand the same attempt number
/// to another worker. Taken `FOR SHARE` inside a transaction, it also keeps a rescue
/// from taking the job until that transaction ends (a fence).
pub async fn hold(db: impl PgExecutor<'_>, id: &JobId, attempt: i32, worker: &str) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "SELECT cancel_requested FROM jobs
         WHERE id = $1 AND state = 'running' AND attempts = $2 AND worker_id = $3 FOR SHARE",
    )
    .bind(id)
    .bind(attempt)
    .bind(worker)
    .fetch_optional(db)
    .await
}

/// Why a claim that waited in line ended without an instance.
pub const NO_IDLE_IN_TIME: &str = "no_idle_instance: no instance became idle in time";

/// A CTE `expired` ending `failed` ([`NO_IDLE_IN_TIME`]) the claims still waiting
/// 5 s past their deadline (their web process is gone, or it would have ended them
/// itself), when the caller's earlier CTE `gate` has `open`. For the binding pass.
pub(crate) fn expired_waiting_cte(gate: &str) -> String {
    format!(
        "expired AS (
             UPDATE jobs SET state = 'failed', waiting = false, finished_at = now(), error = '{NO_IDLE_IN_TIME}'
             WHERE (SELECT open FROM {gate}) AND waiting AND state = 'queued' AND run_at < now() - interval '5 seconds'
             RETURNING id)"
    )
}

/// Ends a claim waiting in line that no instance was bound to, `Failed` at its
/// deadline or `Cancelled` when its client left, with `error`; `false` when it is no
/// longer waiting (an instance was bound meanwhile: the claim goes on).
pub async fn stop_waiting(db: impl PgExecutor<'_>, id: &JobId, ended: JobState, error: &str) -> sqlx::Result<bool> {
    debug_assert!(ended.is_finished(), "a waiting claim ends finished");
    let done = sqlx::query(
        "UPDATE jobs SET state = $2, error = $3, waiting = false, finished_at = now()
         WHERE id = $1 AND waiting AND state = 'queued'",
    )
    .bind(id)
    .bind(ended.as_str())
    .bind(error)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A run's lease on its job: the job, the run's attempt and its worker. A run may
/// change anything only while its job is `running` with exactly these.
#[derive(Clone, Copy, Debug)]
pub struct Lease<'a> {
    pub job_id: &'a JobId,
    pub attempt: i32,
    pub worker: &'a str,
}

/// A CTE `lease` taking the job row of the lease bound as in [`LEASE_HOLDS`] as the
/// run's own outcome will (`FOR NO KEY UPDATE`: nothing moves the job until the
/// statement's transaction ends); empty once the lease is lost. For a statement that
/// writes a run's effects and its outcome together, with [`succeeded_cte`].
pub(crate) const LEASE_CTE: &str = "lease AS MATERIALIZED (
         SELECT id FROM jobs WHERE id = $2 AND state = 'running' AND attempts = $3 AND worker_id = $4
         FOR NO KEY UPDATE)";

/// A CTE `succeeded` ending the run of [`LEASE_CTE`] in success with the result
/// `result` when the caller's earlier CTE `guard` has a row; it returns what
/// [`Applied`] reads.
pub(crate) fn succeeded_cte(result: &str, guard: &str) -> String {
    format!(
        "succeeded AS (
             UPDATE jobs SET state = 'succeeded', result = {result}, error = NULL, worker_id = NULL, finished_at = now()
             WHERE id = $2 AND state = 'running' AND attempts = $3 AND worker_id = $4 AND EXISTS (SELECT 1 FROM {guard})
             RETURNING id, kind, state, COALESCE(EXTRACT(EPOCH FROM now() - started_at)::float8, 0) AS run_time,
                       EXTRACT(EPOCH FROM now() - created_at)::float8 AS age)"
    )
}

/// SQL true while the lease bound as `$2` (job id), `$3` (attempt), `$4` (worker)
/// holds; it takes the job row `FOR SHARE`, so a rescue cannot take the job until
/// the statement's transaction ends. For a write fenced in the same statement.
pub(crate) const LEASE_HOLDS: &str = "EXISTS (SELECT 1 FROM jobs
         WHERE jobs.id = $2 AND jobs.state = 'running' AND jobs.attempts = $3 AND jobs.worker_id = $4 FOR SHARE)";
