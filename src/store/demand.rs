//! Claim arrivals, for the warm target's burst measure and its forecast: claim jobs,
//! and the claims that found no idle instance and did not wait (they leave no job, yet
//! they are demand). Claim jobs are kept as long as the job retention
//! (`JOB_RETENTION_HOURS`), misses as long as the forecast reads them.

use std::time::Duration;

use sqlx::PgExecutor;

/// How long arrivals are kept and read: the burst measure's memory.
pub const HISTORY: Duration = Duration::from_secs(60 * 60);

/// Records a claim answered 503 `no_idle_instance`.
pub async fn record_miss(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO claim_misses DEFAULT VALUES").execute(db).await?;
    Ok(())
}

/// Earlier periods the forecast reads: what is kept for it is bounded by them.
pub const PERIODS: u32 = 3;

/// A week: demand that recurs weekly (an event every Monday) recurs daily too, only
/// not every day.
pub const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// How far back the forecast looks for the same phase: the last [`PERIODS`] periods,
/// and a week back when a week is a whole number of periods (shorter ones), so a
/// weekly burst is seen coming too. It counts only where history reaches back that
/// far (see [`seasonal`]).
pub fn lookbacks(period: Duration) -> Vec<Duration> {
    let mut back: Vec<Duration> = (1..=PERIODS).map(|k| period * k).collect();
    let whole = period.as_secs() > 0 && WEEK.as_secs().is_multiple_of(period.as_secs()) && period.subsec_nanos() == 0;
    if whole && period * PERIODS < WEEK {
        back.push(WEEK);
    }
    back
}

/// How long misses are kept: the [`HISTORY`] the burst measure reads, and the
/// [`lookbacks`] of `period` the forecast reads (with an hour to spare).
pub fn keep_misses(period: Option<Duration>) -> Duration {
    period.and_then(|p| lookbacks(p).into_iter().max()).map_or(HISTORY, |back| back + HISTORY)
}

/// Deletes misses older than `keep` ([`keep_misses`]); returns how many.
pub async fn prune_misses(db: impl PgExecutor<'_>, keep: Duration) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM claim_misses WHERE at < now() - make_interval(secs => $1)")
        .bind(keep.as_secs_f64())
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

/// The same phase `lookbacks` ago (see [`lookbacks`]), in their order: the most claims
/// that arrived within any `lead` inside `[now - back, + horizon)`, and whether history
/// covers that window: the oldest per-minute metric row is older (Pool was running
/// then, so no arrivals means no demand) and claims are kept that long (`kept`, the
/// job retention). Each window is an index range read.
pub async fn seasonal(
    db: impl PgExecutor<'_>,
    lookbacks: &[Duration],
    kept: Duration,
    lead: Duration,
    horizon: Duration,
) -> sqlx::Result<Vec<(f64, bool)>> {
    let backs: Vec<f64> = lookbacks.iter().map(Duration::as_secs_f64).collect();
    sqlx::query_as(
        "WITH periods AS (
             SELECT k, now() - make_interval(secs => back) AS start FROM unnest($1::float8[]) WITH ORDINALITY AS l(back, k)
         )
         SELECT COALESCE(w.peak, 0)::float8,
                COALESCE(p.start >= (SELECT min(minute) FROM metric_minutes), false)
                    AND p.start >= now() - make_interval(secs => $2)
         FROM periods p
         LEFT JOIN LATERAL (
             SELECT max(n) AS peak FROM (
                 SELECT count(*) OVER (ORDER BY t RANGE BETWEEN CURRENT ROW AND make_interval(secs => $3) FOLLOWING) AS n
                 FROM (
                     SELECT created_at AS t FROM jobs WHERE kind = 'claim_and_provision'
                         AND created_at >= p.start AND created_at < p.start + make_interval(secs => $4)
                     UNION ALL
                     SELECT at FROM claim_misses WHERE at >= p.start AND at < p.start + make_interval(secs => $4)
                 ) a
             ) c
         ) w ON true
         ORDER BY p.k",
    )
    .bind(&backs)
    .bind(kept.as_secs_f64())
    .bind(lead.as_secs_f64())
    .bind(horizon.as_secs_f64())
    .fetch_all(db)
    .await
}
