//! Who holds the running jobs: worker heartbeats, and the take-backs that put a
//! running job no live run holds back in the queue (the run counted as an attempt,
//! kept as `lost` in `job_attempts`):
//!
//! - [`rescue`]: the jobs of workers silent for the rescue window (dead or stalled),
//!   and, as the last resort, any run older than a limit whatever its worker says;
//! - [`release_orphans`]: a live worker's own running rows that it holds no run of
//!   (a Postgres crash lost the commit that ended them);
//! - [`release_unstarted`]: at a stop, the jobs fetched but never started.

use std::time::Duration;

use sqlx::PgExecutor;

use crate::domain::JobId;

/// Registers (or re-registers, after it was declared dead) a worker process, or
/// proves it alive.
pub async fn heartbeat(db: impl PgExecutor<'_>, worker: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO job_workers (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET last_seen = now()")
        .bind(worker)
        .execute(db)
        .await?;
    Ok(())
}

/// Worker processes that proved alive within `within`.
pub async fn live_workers(db: impl PgExecutor<'_>, within: Duration) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM job_workers WHERE last_seen >= now() - make_interval(secs => $1)")
        .bind(within.as_secs_f64())
        .fetch_one(db)
        .await
}

/// Removes a worker that stopped cleanly (its jobs are finished or released).
pub async fn deregister(db: impl PgExecutor<'_>, worker: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM job_workers WHERE id = $1").bind(worker).execute(db).await?;
    Ok(())
}

/// One statement that takes back the rows of `lost(id, worker_id, why)` (locked by
/// its caller): queued again, `failed` when that was the last attempt, `cancelled`
/// when an operator had asked the run to stop; each run kept as `lost`. Counts them.
fn take_back(lost: &str) -> String {
    format!(
        "WITH {lost}, rescued AS (
             UPDATE jobs SET
                 state = CASE WHEN cancel_requested THEN 'cancelled'
                              WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
                 error = CASE WHEN cancel_requested THEN 'cancelled by operator' ELSE lost.why END,
                 finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN now() END,
                 run_at = now(), worker_id = NULL
             FROM lost WHERE jobs.id = lost.id
             RETURNING jobs.id, jobs.runs, jobs.started_at, lost.worker_id, lost.why
         ), kept AS (
             INSERT INTO job_attempts (job_id, run, outcome, error, worker_id, started_at)
             SELECT id, runs, 'lost', why, worker_id, started_at FROM rescued
             ON CONFLICT ON CONSTRAINT job_attempts_pkey DO NOTHING
         )
         SELECT count(*) FROM (
             SELECT id, pg_notify('pool_jobs_queued', '') FROM rescued
         ) r"
    )
}

/// Takes back the running jobs of workers silent for longer than `timeout`, and (the
/// last resort, should a holder never let go) every run started longer than
/// `last_resort` ago. Returns how many.
pub async fn rescue(db: impl PgExecutor<'_>, timeout: Duration, last_resort: Duration) -> sqlx::Result<i64> {
    // `gone` only prunes registrations: the rows it deletes are older than the
    // horizon, so `lost` already treats their workers as dead.
    let lost = "gone AS (
             DELETE FROM job_workers WHERE last_seen < now() - make_interval(secs => $1) RETURNING id
         ), lost AS (
             SELECT id, worker_id,
                    CASE WHEN started_at < now() - make_interval(secs => $2)
                         THEN format('worker %s ran attempt %s past the %s s limit', worker_id, attempts, $2::int)
                         ELSE format('worker %s stopped responding during attempt %s', worker_id, attempts) END AS why
             FROM jobs
             WHERE state = 'running' AND (started_at < now() - make_interval(secs => $2) OR NOT EXISTS (
                 SELECT 1 FROM job_workers w
                 WHERE w.id = jobs.worker_id AND w.last_seen >= now() - make_interval(secs => $1)))
             FOR UPDATE SKIP LOCKED
         )";
    sqlx::query_scalar(sqlx::AssertSqlSafe(take_back(lost)))
        .bind(timeout.as_secs_f64())
        .bind(last_resort.as_secs_f64())
        .fetch_one(db)
        .await
}

/// Takes back the running rows of live `worker` that are not among the runs it holds
/// (`held`, `(job id, attempt)`): a crash of Postgres lost the commit that ended them
/// (the outcome, a release), so the table says the worker runs them while it does
/// not. Only rows started more than `grace` ago: a job fetched a moment ago may not
/// be in `held` yet. Returns how many.
pub async fn release_orphans(
    db: impl PgExecutor<'_>,
    worker: &str,
    held: &[(JobId, i32)],
    grace: Duration,
) -> sqlx::Result<i64> {
    orphans(db, worker, held, grace, "").await
}

/// [`heartbeat`] and [`release_orphans`] in one statement: a worker's tick costs the
/// database one statement for both. An error means the heartbeat was not written.
pub async fn heartbeat_releasing_orphans(
    db: impl PgExecutor<'_>,
    worker: &str,
    held: &[(JobId, i32)],
    grace: Duration,
) -> sqlx::Result<i64> {
    let beat = "beat AS (
             INSERT INTO job_workers (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET last_seen = now()
         ), ";
    orphans(db, worker, held, grace, beat).await
}

async fn orphans(
    db: impl PgExecutor<'_>,
    worker: &str,
    held: &[(JobId, i32)],
    grace: Duration,
    before: &str,
) -> sqlx::Result<i64> {
    let (ids, attempts): (Vec<&JobId>, Vec<i32>) = held.iter().map(|(id, attempt)| (id, *attempt)).unzip();
    let lost = format!(
        "{before}lost AS (
             SELECT id, worker_id,
                    format('worker %s holds no run of attempt %s (a lost commit had ended it)', worker_id, attempts)
                        AS why
             FROM jobs
             WHERE state = 'running' AND worker_id = $1 AND started_at < now() - make_interval(secs => $4)
               AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::int[]) AS h(id, attempt)
                               WHERE h.id = jobs.id AND h.attempt = jobs.attempts)
             FOR UPDATE SKIP LOCKED
         )"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(take_back(&lost)))
        .bind(worker)
        .bind(&ids)
        .bind(&attempts)
        .bind(grace.as_secs_f64())
        .fetch_one(db)
        .await
}

/// Gives the jobs `worker` took but never started back to the queue, as if never
/// fetched (at shutdown), and takes back the provision notes their fetch wrote (a
/// note written before it, by an earlier run, stays: that run may have sent one).
pub async fn release_unstarted(db: impl PgExecutor<'_>, worker: &str, ids: &[JobId]) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "WITH mine AS (
             SELECT id, started_at FROM jobs WHERE id = ANY($1) AND state = 'running' AND worker_id = $2 FOR UPDATE
         ), unnoted AS (
             UPDATE instances SET provision_sent_by = NULL, provision_sent_at = NULL, updated_at = now()
             FROM mine
             WHERE instances.claim_job_id = mine.id AND instances.provision_sent_by = mine.id
               AND instances.provision_sent_at >= mine.started_at
         )
         UPDATE jobs SET state = 'queued', attempts = attempts - 1, runs = runs - 1, started_at = NULL,
                         worker_id = NULL, run_at = now()
         FROM mine WHERE jobs.id = mine.id",
    )
    .bind(ids)
    .bind(worker)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
