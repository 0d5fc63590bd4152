//! A rate limit shared by every process through one row per limit (GCRA). Each
//! caller reserves the next free slot with a single statement and then sleeps until
//! it, so callers never poll and the limit holds across all worker replicas.

use std::time::Duration;

use sqlx::PgExecutor;

/// Reserves a slot of limit `name` allowing `per_sec` calls per second with bursts of
/// `burst`; returns how long to wait before making the call.
pub async fn reserve(db: impl PgExecutor<'_>, name: &str, per_sec: u32, burst: u32) -> sqlx::Result<Duration> {
    let interval = 1.0 / f64::from(per_sec.max(1));
    // tau: how far ahead of the schedule a burst may run.
    let tau = interval * f64::from(burst.max(1).saturating_sub(1));
    let wait_secs: f64 = sqlx::query_scalar(
        "INSERT INTO rate_limits AS r (name, tat) VALUES ($1, clock_timestamp() + make_interval(secs => $2))
         ON CONFLICT (name) DO UPDATE
             SET tat = GREATEST(r.tat, clock_timestamp()) + make_interval(secs => $2)
         RETURNING GREATEST(0, EXTRACT(EPOCH FROM (r.tat - clock_timestamp()))::float8 - $2 - $3)",
    )
    .bind(name)
    .bind(interval)
    .bind(tau)
    .fetch_one(db)
    .await?;
    Ok(Duration::from_secs_f64(wait_secs.max(0.0)))
}
