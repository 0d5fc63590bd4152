//! The operator's transitions: retry (`failed` / `cancelled` → `queued`) and cancel
//! (`queued` → `cancelled`, `running` → stop requested), of one job or of every job a
//! filter selects.

use sqlx::{PgConnection, PgExecutor};

use super::super::{COLUMNS, JobRow, JobState, get};
use crate::domain::{JobId, JobKind};
use crate::jobs::{Job, claim_and_provision::ClaimAndProvision};

/// What a retry writes, for one job or many: queued with fresh attempts, every trace
/// of an earlier cancel gone; `runs` stays.
const RETRY: &str = "state = 'queued', attempts = 0, run_at = now(), result = NULL, error = NULL, \
     started_at = NULL, finished_at = NULL, worker_id = NULL, cancel_requested = false";

/// What a cancel writes, for one job or many: a queued job is cancelled; a running one
/// is asked to stop and keeps running until its next safe point.
const CANCEL: &str = "state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END, \
     cancel_requested = (state = 'running'), \
     finished_at = CASE WHEN state = 'running' THEN finished_at ELSE now() END, \
     error = CASE WHEN state = 'running' THEN error ELSE 'cancelled by operator' END";

/// SQL true for a claim job (kind bound as `$3`) that never ran and holds no
/// instance: it ended in the line for an instance (its wait ran out, or it was
/// cancelled there) and its client was answered then. A bulk retry leaves it: it
/// would bind an instance to a request nobody awaits.
const ANSWERED_CLAIM: &str =
    "(kind = $3 AND runs = 0 AND NOT EXISTS (SELECT 1 FROM instances WHERE claim_job_id = jobs.id))";

/// The conflict of a retry whose dedupe key an active job holds.
const BLOCKED: &str = "blocked by an active job of the same kind";

/// Why an operator action on a job did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no job with this id")]
    NotFound,
    #[error("job is {0}; this action does not apply")]
    Conflict(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// A failed or cancelled job back to queued with fresh attempts. Every trace of an
/// earlier cancel goes; `runs` stays, so a re-run still recognises its own earlier
/// side effects.
pub async fn retry(conn: &mut PgConnection, id: &JobId) -> Result<JobRow, ActionError> {
    // The answer is the row as this statement left it: a worker may take the job
    // the moment it is queued.
    let updated: sqlx::Result<Option<JobRow>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH r AS (
             UPDATE jobs SET {RETRY}
             WHERE id = $1 AND state IN ('failed', 'cancelled')
             RETURNING {COLUMNS}
         )
         SELECT {COLUMNS}, pg_notify('pool_jobs_queued', '')::text AS notified FROM r"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await;
    match updated {
        Ok(Some(row)) => Ok(row),
        Ok(None) => match get(&mut *conn, id).await? {
            None => Err(ActionError::NotFound),
            Some(job) => Err(ActionError::Conflict(job.state.as_str())),
        },
        // Another job with the same dedupe key is active: retrying would make two.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("jobs_active_dedupe_key") => {
            Err(ActionError::Conflict(BLOCKED))
        }
        Err(e) => Err(e.into()),
    }
}

/// Cancels a queued job at once; asks a running one to stop at its next safe point.
pub async fn cancel(conn: &mut PgConnection, id: &JobId) -> Result<JobRow, ActionError> {
    let changed: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET
             {CANCEL}
         WHERE id = $1 AND state IN ('queued', 'running')
         RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match changed {
        Some(row) => Ok(row),
        None => {
            let row = get(&mut *conn, id).await?.ok_or(ActionError::NotFound)?;
            Err(ActionError::Conflict(row.state.as_str()))
        }
    }
}

/// The jobs a bulk action applies to.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub kind: Option<JobKind>,
    pub state: Option<JobState>,
}

/// What a bulk retry did.
#[derive(Debug, Default)]
pub struct Retried {
    /// The jobs queued again.
    pub ids: Vec<JobId>,
    /// Jobs left as they were because an active job holds their dedupe key.
    pub skipped: Vec<JobId>,
    /// Claims left as they were: they ended in the line, answered (see [`ANSWERED_CLAIM`]).
    pub answered_claims: Vec<JobId>,
}

/// Every failed or cancelled job that `filter` selects back to queued, as [`retry`]
/// does. Of jobs sharing a dedupe key only the newest is retried, and none whose key
/// an active job holds (that would make two): those are `skipped`, also when an
/// enqueue takes the key while this runs. Claims answered in the line stay.
pub async fn retry_all(conn: &mut PgConnection, filter: &Filter) -> sqlx::Result<Retried> {
    let answered_claims = answered_claims(&mut *conn, filter).await?;
    let ids = retry_unkeyed(&mut *conn, filter).await?;
    let mut done = Retried { ids, skipped: Vec::new(), answered_claims };
    // One statement each: a key taken meanwhile fails that one job, not the lot.
    // There is one such job per key, so a handful.
    for id in newest_keyed(&mut *conn, filter).await? {
        match retry(conn, &id).await {
            Ok(_) => done.ids.push(id),
            Err(ActionError::Conflict(BLOCKED)) => done.skipped.push(id),
            // Retried, or gone, by someone else meanwhile.
            Err(ActionError::Conflict(_) | ActionError::NotFound) => {}
            Err(ActionError::Db(err)) => return Err(err),
        }
    }
    Ok(done)
}

/// Retries the selected jobs without a dedupe key: they can conflict with nothing.
async fn retry_unkeyed(db: impl PgExecutor<'_>, filter: &Filter) -> sqlx::Result<Vec<JobId>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH retried AS (
             UPDATE jobs SET {RETRY}
             WHERE state IN ('failed', 'cancelled') AND dedupe_key IS NULL
               AND ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR state = $2) AND NOT {ANSWERED_CLAIM}
             RETURNING id
         )
         SELECT id FROM retried, LATERAL (SELECT pg_notify('pool_jobs_queued', '')) n"
    )))
    .bind(filter.kind)
    .bind(filter.state.map(JobState::as_str))
    .bind(ClaimAndProvision::KIND)
    .fetch_all(db)
    .await
}

/// The selected claims a bulk retry leaves because they were answered in the line.
async fn answered_claims(db: impl PgExecutor<'_>, filter: &Filter) -> sqlx::Result<Vec<JobId>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM jobs
         WHERE state IN ('failed', 'cancelled') AND ($1::text IS NULL OR kind = $1)
           AND ($2::text IS NULL OR state = $2) AND {ANSWERED_CLAIM}
         ORDER BY id"
    )))
    .bind(filter.kind)
    .bind(filter.state.map(JobState::as_str))
    .bind(ClaimAndProvision::KIND)
    .fetch_all(db)
    .await
}

/// Of the selected jobs with a dedupe key, the newest of each key.
async fn newest_keyed(db: impl PgExecutor<'_>, filter: &Filter) -> sqlx::Result<Vec<JobId>> {
    sqlx::query_scalar(
        "SELECT DISTINCT ON (kind, dedupe_key) id FROM jobs
         WHERE state IN ('failed', 'cancelled') AND dedupe_key IS NOT NULL
           AND ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR state = $2)
         ORDER BY kind, dedupe_key, id DESC",
    )
    .bind(filter.kind)
    .bind(filter.state.map(JobState::as_str))
    .fetch_all(db)
    .await
}

/// Cancels every queued job that `filter` selects and asks the running ones to stop.
/// Returns `(cancelled, asked to stop)`.
pub async fn cancel_all(db: impl PgExecutor<'_>, filter: &Filter) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH changed AS (
             UPDATE jobs SET
                 {CANCEL}
             WHERE state IN ('queued', 'running') AND NOT cancel_requested
               AND ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR state = $2)
             RETURNING state
         )
         SELECT count(*) FILTER (WHERE state = 'cancelled'), count(*) FILTER (WHERE state = 'running') FROM changed"
    )))
    .bind(filter.kind)
    .bind(filter.state.map(JobState::as_str))
    .fetch_one(db)
    .await
}
