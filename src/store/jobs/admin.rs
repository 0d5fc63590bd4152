//! Operator views and actions on jobs: listing, totals, retry, cancel, pruning.

use sqlx::{PgConnection, PgExecutor};

use super::{COLUMNS, JobRow, JobState, STATE_SQL, get};

/// Filters and cursor of a job listing.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    /// Only jobs older than this id (ids are ULIDs, so they sort by creation).
    pub before: Option<String>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(db: impl PgExecutor<'_>, q: &ListQuery) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM apalis.jobs
         WHERE ($1::text IS NULL OR job_type = $1) AND ($2::text IS NULL OR ({STATE_SQL}) = $2)
           AND ($3::text IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(&q.kind)
    .bind(q.state.map(JobState::as_str))
    .bind(&q.before)
    .bind(q.limit)
    .fetch_all(db)
    .await
}

/// Jobs per state (of one kind, if given).
pub async fn totals(db: impl PgExecutor<'_>, kind: Option<&str>) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STATE_SQL} AS state, count(*) FROM apalis.jobs WHERE ($1::text IS NULL OR job_type = $1) GROUP BY 1"
    )))
    .bind(kind)
    .fetch_all(db)
    .await
}

/// Jobs per (kind, state), for metrics.
pub async fn totals_by_kind(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT job_type, {STATE_SQL} AS state, count(*) FROM apalis.jobs GROUP BY 1, 2"
    )))
    .fetch_all(db)
    .await
}

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

/// A failed or cancelled job back to queued, with its attempts reset.
pub async fn retry(conn: &mut PgConnection, id: &str) -> Result<JobRow, ActionError> {
    let updated = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(), last_result = NULL,
                done_at = NULL, lock_by = NULL, lock_at = NULL, metadata = delete(metadata, 'cancelled')
         WHERE id = $1 AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))",
    )
    .bind(id)
    .execute(&mut *conn)
    .await;
    match updated {
        Ok(done) if done.rows_affected() == 1 => get(&mut *conn, id).await?.ok_or(ActionError::NotFound),
        Ok(_) => match get(&mut *conn, id).await? {
            None => Err(ActionError::NotFound),
            Some(job) => Err(ActionError::Conflict(job.state().as_str())),
        },
        // Another job with the same dedupe key is active: retrying would make two.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("pool_jobs_active_dedupe_key") => {
            Err(ActionError::Conflict("blocked by an active job of the same kind"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Cancels a queued job at once; asks a running one to stop at its next safe point.
pub async fn cancel(conn: &mut PgConnection, id: &str) -> Result<JobRow, ActionError> {
    let changed = sqlx::query(
        "UPDATE apalis.jobs SET
             status = CASE WHEN status = 'Running' THEN status ELSE 'Killed' END,
             metadata = metadata || CASE WHEN status = 'Running' THEN hstore('cancel_requested', 'true')
                                         ELSE hstore('cancelled', 'true') END,
             lock_by = CASE WHEN status = 'Running' THEN lock_by END,
             lock_at = CASE WHEN status = 'Running' THEN lock_at END,
             done_at = CASE WHEN status = 'Running' THEN done_at ELSE now() END,
             last_result = CASE WHEN status = 'Running' THEN last_result ELSE '{\"Err\": \"cancelled by operator\"}'::jsonb END
         WHERE id = $1 AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts))",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let row = get(&mut *conn, id).await?.ok_or(ActionError::NotFound)?;
    if changed == 0 {
        return Err(ActionError::Conflict(row.state().as_str()));
    }
    Ok(row)
}

/// Deletes finished jobs older than `retention_secs`; returns how many.
pub async fn prune(db: impl PgExecutor<'_>, retention_secs: i64) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM apalis.jobs WHERE done_at < now() - make_interval(secs => $1::float8)
           AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
    )
    .bind(retention_secs as f64)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
