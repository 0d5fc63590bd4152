//! Operator views of jobs: listing, totals, pruning of finished jobs.

use sqlx::PgExecutor;

use super::{COLUMNS, JobRow, JobState};

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
        "SELECT {COLUMNS} FROM jobs
         WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR state = $2)
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
    sqlx::query_as("SELECT state, count(*) FROM jobs WHERE ($1::text IS NULL OR kind = $1) GROUP BY 1")
        .bind(kind)
        .fetch_all(db)
        .await
}

/// Jobs per (kind, state), for metrics.
pub async fn totals_by_kind(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as("SELECT kind, state, count(*) FROM jobs GROUP BY 1, 2").fetch_all(db).await
}

/// Deletes finished jobs older than `retention_secs`; returns how many.
pub async fn prune(db: impl PgExecutor<'_>, retention_secs: i64) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM jobs WHERE finished_at < now() - make_interval(secs => $1::float8)
           AND state IN ('succeeded', 'failed', 'cancelled')",
    )
    .bind(retention_secs as f64)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
