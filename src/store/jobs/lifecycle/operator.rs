//! The operator's transitions: retry (`failed` / `cancelled` → `queued`) and cancel
//! (`queued` → `cancelled`, `running` → stop requested), of one job or of every job a
//! filter selects.

use sqlx::{PgConnection, PgExecutor};

use super::super::{COLUMNS, JobRow, JobState, get};

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
pub async fn retry(conn: &mut PgConnection, id: &str) -> Result<JobRow, ActionError> {
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
            Err(ActionError::Conflict("blocked by an active job of the same kind"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Cancels a queued job at once; asks a running one to stop at its next safe point.
pub async fn cancel(conn: &mut PgConnection, id: &str) -> Result<JobRow, ActionError> {
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
    pub kind: Option<String>,
    pub state: Option<JobState>,
}

/// Every failed or cancelled job that `filter` selects back to queued, as [`retry`]
/// does. Of jobs sharing a dedupe key only the newest is retried, and none whose key
/// an active job holds (that would make two). Returns the ids retried.
pub async fn retry_all(db: impl PgExecutor<'_>, filter: &Filter) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH chosen AS (
             SELECT DISTINCT ON (kind, COALESCE(dedupe_key, id)) id FROM jobs c
             WHERE state IN ('failed', 'cancelled')
               AND ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR state = $2)
               AND (dedupe_key IS NULL OR NOT EXISTS (
                   SELECT 1 FROM jobs a WHERE a.kind = c.kind AND a.dedupe_key = c.dedupe_key
                     AND a.state IN ('queued', 'running')))
             ORDER BY kind, COALESCE(dedupe_key, id), id DESC
         ), retried AS (
             UPDATE jobs SET {RETRY}
             WHERE id IN (SELECT id FROM chosen) AND state IN ('failed', 'cancelled')
             RETURNING id
         )
         SELECT id FROM retried, LATERAL (SELECT pg_notify('pool_jobs_queued', '')) n"
    )))
    .bind(&filter.kind)
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
    .bind(&filter.kind)
    .bind(filter.state.map(JobState::as_str))
    .fetch_one(db)
    .await
}
