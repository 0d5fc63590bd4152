//! Jobs the previous release (apalis-postgres, table `apalis.jobs`) still writes while a
//! rolling deploy replaces it: moved into `jobs` with the mapping of the migration that
//! introduced `jobs` (SQL function `pool_adopt_apalis_jobs`). Only waiting rows move;
//! the previous release's workers finish what they run.

use sqlx::PgExecutor;

/// Moves waiting rows of `apalis.jobs` into `jobs`; returns how many.
pub async fn adopt_waiting(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    let moved: i64 = sqlx::query_scalar("SELECT public.pool_adopt_apalis_jobs(true)").fetch_one(db).await?;
    if moved > 0 {
        tracing::info!(moved, "moved jobs of the previous release into the job table");
    }
    Ok(moved)
}
