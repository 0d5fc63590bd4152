//! Operator views of jobs: listing, totals, a job's history.

use sqlx::PgExecutor;

use super::{COLUMNS, JobRow, JobState};
use crate::domain::{JobId, JobKind};

/// Filters and cursor of a job listing.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    /// Only jobs older than this id (ids are ULIDs, so they sort by creation).
    pub before: Option<JobId>,
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
    .bind(q.kind)
    .bind(q.state.map(JobState::as_str))
    .bind(&q.before)
    .bind(q.limit)
    .fetch_all(db)
    .await
}

/// Jobs per state (of one kind, if given).
pub async fn totals(db: impl PgExecutor<'_>, kind: Option<JobKind>) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT state, count(*) FROM jobs WHERE ($1::text IS NULL OR kind = $1) GROUP BY 1")
        .bind(kind)
        .fetch_all(db)
        .await
}

/// Jobs per (kind, state), for metrics.
pub async fn totals_by_kind(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as("SELECT kind, state, count(*) FROM jobs GROUP BY 1, 2").fetch_all(db).await
}

/// One run of a job, as the job detail shows it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The run's number over the job's life (an operator retry does not reset it).
    pub run: i32,
    /// `retry`, `failed`, `cancelled`, `lost` (its worker went silent), or for the
    /// latest run `running` / `succeeded`.
    pub outcome: String,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every run of job `id`, oldest first: the kept ones that did not succeed, and the
/// latest one from the job itself while it runs or once it succeeded.
pub async fn history(db: impl PgExecutor<'_>, id: &JobId) -> sqlx::Result<Vec<Attempt>> {
    sqlx::query_as(
        "SELECT run, outcome, error, worker_id AS worker, started_at, finished_at FROM job_attempts WHERE job_id = $1
         UNION ALL
         SELECT runs, state, NULL, worker_id, started_at, finished_at FROM jobs
         WHERE id = $1 AND state IN ('running', 'succeeded') AND runs > 0
           AND NOT EXISTS (SELECT 1 FROM job_attempts a WHERE a.job_id = $1 AND a.run = jobs.runs)
         ORDER BY run",
    )
    .bind(id)
    .fetch_all(db)
    .await
}
