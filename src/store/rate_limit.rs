//! A rate limit shared by every process through one row per limit (GCRA). Each
//! caller reserves the next free slot with a single statement and then sleeps until
//! it, so callers never poll and the limit holds across all worker replicas.

use std::time::Duration;

use sqlx::PgExecutor;

/// A reserved slot: how long to wait before the call, and how many worker processes
/// share the limit (for pacing alone while the database is away).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub wait: Duration,
    pub replicas: u32,
}

/// Reserves a slot of limit `name` allowing `per_sec` calls per second with bursts of
/// `burst`. A pause stored further ahead than `max_pause` (by an older release, or a
/// clock jump) is shortened to it.
pub async fn reserve(
    db: impl PgExecutor<'_>,
    name: &str,
    per_sec: u32,
    burst: u32,
    max_pause: Duration,
) -> sqlx::Result<Slot> {
    let interval = 1.0 / f64::from(per_sec.max(1));
    // tau: how far ahead of the schedule a burst may run.
    let tau = interval * f64::from(burst.max(1).saturating_sub(1));
    let (wait_secs, replicas): (f64, i64) = sqlx::query_as(
        "INSERT INTO rate_limits AS r (name, tat) VALUES ($1, clock_timestamp() + make_interval(secs => $2))
         ON CONFLICT (name) DO UPDATE
             SET tat = LEAST(GREATEST(r.tat, clock_timestamp()), clock_timestamp() + make_interval(secs => $4))
                       + make_interval(secs => $2)
         RETURNING GREATEST(0, EXTRACT(EPOCH FROM (r.tat - clock_timestamp()))::float8 - $2 - $3),
                   (SELECT count(*) FROM job_workers WHERE last_seen > now() - interval '15 seconds')",
    )
    .bind(name)
    .bind(interval)
    .bind(tau)
    .bind(max_pause.as_secs_f64() + tau)
    .fetch_one(db)
    .await?;
    Ok(Slot {
        wait: Duration::from_secs_f64(wait_secs.max(0.0)),
        replicas: u32::try_from(replicas).unwrap_or(1).max(1),
    })
}

/// Holds every caller of limit `name` (all replicas) back for `pause` from now: the
/// upstream said so (429 with `Retry-After`). The burst allowance is spent too.
pub async fn pause(db: impl PgExecutor<'_>, name: &str, per_sec: u32, burst: u32, pause: Duration) -> sqlx::Result<()> {
    let interval = 1.0 / f64::from(per_sec.max(1));
    let tau = interval * f64::from(burst.max(1).saturating_sub(1));
    sqlx::query(
        "INSERT INTO rate_limits AS r (name, tat) VALUES ($1, clock_timestamp() + make_interval(secs => $2))
         ON CONFLICT (name) DO UPDATE SET tat = GREATEST(r.tat, clock_timestamp() + make_interval(secs => $2))",
    )
    .bind(name)
    .bind(pause.as_secs_f64() + tau)
    .execute(db)
    .await?;
    Ok(())
}
