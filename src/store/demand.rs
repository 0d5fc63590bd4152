//! Claim arrivals, for the warm target's burst measure: claim jobs, and the claims
//! that found no idle instance and did not wait (they leave no job, yet they are
//! demand).

use std::time::Duration;

use sqlx::PgExecutor;

/// How long arrivals are kept and read: the burst measure's memory.
pub const HISTORY: Duration = Duration::from_secs(60 * 60);

/// Records a claim answered 503 `no_idle_instance`.
pub async fn record_miss(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO claim_misses DEFAULT VALUES").execute(db).await?;
    Ok(())
}

/// Deletes misses older than the [`HISTORY`] the burst measure reads; returns how many.
pub async fn prune_misses(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM claim_misses WHERE at < now() - make_interval(secs => $1)")
        .bind(HISTORY.as_secs_f64())
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// The most claims that arrived within any `window` during the [`HISTORY`], each such
/// count weighted down by its age (`exp(-age / decay)`): a burst is remembered, and
/// forgotten over tens of minutes.
pub async fn peak(db: impl PgExecutor<'_>, window: Duration, decay: Duration) -> sqlx::Result<f64> {
    sqlx::query_scalar(
        "WITH arrivals AS (
             SELECT created_at AS t FROM jobs
             WHERE kind = 'claim_and_provision' AND created_at > now() - make_interval(secs => $3)
             UNION ALL
             SELECT at FROM claim_misses WHERE at > now() - make_interval(secs => $3)
         )
         SELECT COALESCE(max(n * exp(-EXTRACT(EPOCH FROM now() - t)::float8 / $2)), 0) FROM (
             SELECT t, count(*) OVER (ORDER BY t RANGE BETWEEN CURRENT ROW AND make_interval(secs => $1) FOLLOWING) AS n
             FROM arrivals
         ) w",
    )
    .bind(window.as_secs_f64())
    .bind(decay.as_secs_f64())
    .bind(HISTORY.as_secs_f64())
    .fetch_one(db)
    .await
}
