//! Paused job kinds: their jobs stay queued (the fetch skips them) until resumed.
//! Runs already started finish normally.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::domain::JobKind;

/// A paused kind.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Pause {
    pub kind: String,
    pub paused_at: DateTime<Utc>,
}

/// Every paused kind.
pub async fn paused(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Pause>> {
    sqlx::query_as("SELECT kind, paused_at FROM job_kind_pauses ORDER BY kind").fetch_all(db).await
}

/// Pauses `kind` (a no-op when it is paused already); returns the pause.
pub async fn pause(db: impl PgExecutor<'_>, kind: JobKind) -> sqlx::Result<Pause> {
    sqlx::query_as(
        "INSERT INTO job_kind_pauses (kind) VALUES ($1)
         ON CONFLICT ON CONSTRAINT job_kind_pauses_pkey DO UPDATE SET kind = EXCLUDED.kind
         RETURNING kind, paused_at",
    )
    .bind(kind)
    .fetch_one(db)
    .await
}

/// Resumes `kind` and wakes the workers, whose fetch then takes its queued jobs.
pub async fn resume(db: impl PgExecutor<'_>, kind: JobKind) -> sqlx::Result<()> {
    sqlx::query(
        "WITH gone AS (DELETE FROM job_kind_pauses WHERE kind = $1 RETURNING kind)
         SELECT pg_notify('pool_jobs_queued', '') FROM gone",
    )
    .bind(kind)
    .execute(db)
    .await?;
    Ok(())
}
