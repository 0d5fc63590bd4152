//! Metrics in Postgres: fleet-wide counters (`pool_counters`, for `/metrics`) and
//! per-minute rows (`metric_minutes`, for the dashboard's charts), both added to by
//! every process, so any web replica shows the same picture.

use serde_json::{Value, json};
use sqlx::PgExecutor;

/// One counter increment for `pool_counters`.
pub struct CounterDelta<'a> {
    pub name: &'a str,
    pub labels: &'a str,
    pub value: f64,
}

/// One series' deltas for the current minute.
pub struct MinuteDelta<'a> {
    pub name: &'a str,
    pub labels: &'a str,
    pub count: f64,
    pub sum: f64,
    pub buckets: Option<&'a [i64]>,
}

/// Adds both sets of deltas in one statement: all or nothing, so a failed write can
/// be retried whole without counting anything twice.
pub async fn add(
    db: impl PgExecutor<'_>,
    counters: &[CounterDelta<'_>],
    minutes: &[MinuteDelta<'_>],
) -> sqlx::Result<()> {
    let counters: Vec<Value> =
        counters.iter().map(|c| json!({"name": c.name, "labels": c.labels, "value": c.value})).collect();
    let minutes: Vec<Value> = minutes
        .iter()
        .map(|m| json!({"name": m.name, "labels": m.labels, "count": m.count, "sum": m.sum, "buckets": m.buckets}))
        .collect();
    // Rows in key order: concurrent flushes of several processes lock them in the
    // same order, so they cannot deadlock.
    sqlx::query(
        "WITH c AS (
             INSERT INTO pool_counters (name, labels, value)
             SELECT name, labels, value FROM jsonb_to_recordset($1) AS r(name text, labels text, value float8)
             ORDER BY name, labels
             ON CONFLICT ON CONSTRAINT pool_counters_pkey DO UPDATE SET value = pool_counters.value + EXCLUDED.value
         )
         INSERT INTO metric_minutes AS m (minute, name, labels, count, sum, buckets)
         SELECT date_trunc('minute', now()), name, labels, count, sum, buckets
         FROM jsonb_to_recordset($2) AS r(name text, labels text, count float8, sum float8, buckets bigint[])
         ORDER BY name, labels
         ON CONFLICT ON CONSTRAINT metric_minutes_pkey DO UPDATE SET
             count = m.count + EXCLUDED.count,
             sum = m.sum + EXCLUDED.sum,
             buckets = CASE WHEN m.buckets IS NULL THEN EXCLUDED.buckets
                            WHEN EXCLUDED.buckets IS NULL THEN m.buckets
                            ELSE ARRAY(SELECT a + b FROM unnest(m.buckets, EXCLUDED.buckets) WITH ORDINALITY AS u(a, b, i)
                                       ORDER BY i) END",
    )
    .bind(Value::Array(counters))
    .bind(Value::Array(minutes))
    .execute(db)
    .await?;
    Ok(())
}

/// Samples the pool's gauges into the current minute (the last sample wins):
/// `pool_warm` (idle + provisioning) and `pool_min_idle`.
pub async fn sample_pool(db: impl PgExecutor<'_>, min_idle: u32) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO metric_minutes (minute, name, labels, count)
         SELECT date_trunc('minute', now()), 'pool_warm', '', count(*) FROM instances
         WHERE status IN ('idle', 'provisioning')
         UNION ALL SELECT date_trunc('minute', now()), 'pool_min_idle', '', $1
         ON CONFLICT ON CONSTRAINT metric_minutes_pkey DO UPDATE SET count = EXCLUDED.count",
    )
    .bind(f64::from(min_idle))
    .execute(db)
    .await?;
    Ok(())
}

/// Sets a gauge for the current minute (the last value wins).
pub async fn set_gauge(db: impl PgExecutor<'_>, name: &str, value: f64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO metric_minutes (minute, name, labels, count) VALUES (date_trunc('minute', now()), $1, '', $2)
         ON CONFLICT ON CONSTRAINT metric_minutes_pkey DO UPDATE SET count = EXCLUDED.count",
    )
    .bind(name)
    .bind(value)
    .execute(db)
    .await?;
    Ok(())
}

/// Cost and service over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Glance {
    /// Warm (`idle + provisioning`) instance-hours: the cost of the buffer. From the
    /// per-minute samples of `pool_warm` (a minute without a sample counts nothing).
    pub warm_instance_hours: f64,
    /// Claim requests that met the pool (idempotent replays not counted).
    pub claims: f64,
    /// Of those, the ones bound to an instance at once (not waiting, not turned away).
    pub bound_at_once: f64,
    /// `boundAtOnce / claims`: the service level; absent before any claim.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_at_once_share: Option<f64>,
}

/// [`Glance`] over the last hour and the last day.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AtAGlance {
    pub hour: Glance,
    pub day: Glance,
}

/// Reads [`AtAGlance`] from the per-minute rows (kept two days).
pub async fn at_a_glance(db: impl PgExecutor<'_>) -> sqlx::Result<AtAGlance> {
    let rows: Vec<(f64, f64, f64)> = sqlx::query_as(
        "SELECT COALESCE(sum(count) FILTER (WHERE name = 'pool_warm'), 0)::float8 / 60,
                COALESCE(sum(count) FILTER (WHERE name = 'pool_claim_binds_total'), 0)::float8,
                COALESCE(sum(count) FILTER (WHERE name = 'pool_claim_binds_total'
                                             AND labels = 'at_once=\"true\"'), 0)::float8
         FROM unnest(ARRAY[3600, 86400]) WITH ORDINALITY AS w(secs, n)
         LEFT JOIN metric_minutes m ON m.name IN ('pool_warm', 'pool_claim_binds_total')
                                   AND m.minute > now() - make_interval(secs => w.secs)
         GROUP BY w.n ORDER BY w.n",
    )
    .fetch_all(db)
    .await?;
    let glance = |(warm_instance_hours, claims, bound_at_once): (f64, f64, f64)| Glance {
        warm_instance_hours,
        claims,
        bound_at_once,
        bound_at_once_share: (claims > 0.0).then(|| bound_at_once / claims),
    };
    let mut windows = rows.into_iter().map(glance);
    Ok(AtAGlance { hour: windows.next().unwrap_or_default(), day: windows.next().unwrap_or_default() })
}

/// Deletes per-minute rows older than `retention_secs`; returns how many.
pub async fn prune_minutes(db: impl PgExecutor<'_>, retention_secs: f64) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM metric_minutes WHERE minute < now() - make_interval(secs => $1)")
        .bind(retention_secs)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Every fleet-wide counter: `(name, labels, value)`.
pub async fn counters(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, String, f64)>> {
    sqlx::query_as("SELECT name, labels, value FROM pool_counters ORDER BY name, labels").fetch_all(db).await
}

/// A per-minute row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MinuteRow {
    /// Start of the minute, seconds since the epoch.
    pub minute: i64,
    pub name: String,
    pub labels: String,
    pub count: f64,
    pub buckets: Option<Vec<i64>>,
}

/// The per-minute rows of some series over the last `len` minutes (the current one
/// included), and where each minute falls.
#[derive(Clone, Debug)]
pub struct Window {
    /// Start of the oldest minute, seconds since the epoch.
    pub first: i64,
    pub len: usize,
    /// Oldest first.
    pub rows: Vec<MinuteRow>,
}

impl Window {
    /// `len` minutes ending with the one that starts at `now`.
    pub fn new(now: i64, len: usize, rows: Vec<MinuteRow>) -> Self {
        Self { first: now - (len as i64 - 1) * 60, len, rows }
    }

    /// The start of each minute, oldest first.
    pub fn starts(&self) -> Vec<i64> {
        (0..self.len as i64).map(|i| self.first + i * 60).collect()
    }

    /// The position of `minute` (its start) in the window, if inside.
    pub fn slot(&self, minute: i64) -> Option<usize> {
        usize::try_from((minute - self.first).div_euclid(60)).ok().filter(|i| *i < self.len)
    }
}

/// The rows of `names` over the last `len` minutes, on the database's clock (which
/// stamps the rows).
pub async fn window(db: impl PgExecutor<'_> + Copy, names: &[&str], len: usize) -> sqlx::Result<Window> {
    let now: i64 =
        sqlx::query_scalar("SELECT EXTRACT(EPOCH FROM date_trunc('minute', now()))::int8").fetch_one(db).await?;
    let rows = sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM minute)::int8 AS minute, name, labels, count, buckets FROM metric_minutes
         WHERE minute > to_timestamp($3) - make_interval(mins => $2::int) AND name = ANY($1)
         ORDER BY minute",
    )
    .bind(names)
    .bind(i32::try_from(len).unwrap_or(i32::MAX))
    .bind(now as f64)
    .fetch_all(db)
    .await?;
    Ok(Window::new(now, len, rows))
}
