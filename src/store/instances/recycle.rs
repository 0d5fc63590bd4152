//! Recycling idle instances that are too old or on another image than the current
//! one: which are stale, and moving them to `draining`. And the SQL that
//! names the current image, which claims prefer, and giving back idle instances
//! above the warm target.

use std::time::Duration;

use sqlx::PgExecutor;

use crate::domain::InstanceId;

/// SQL for the current image: `target` (the placeholder bound to `POOL_TARGET_IMAGE`),
/// else the image of the newest row that reports one (a new release shows up on the
/// instances created after it). An uncorrelated subquery: evaluated once per statement.
pub fn current_image_sql(target: &str) -> String {
    format!(
        "COALESCE({target}::text, (SELECT image FROM instances WHERE image IS NOT NULL
                                   ORDER BY created_at DESC, id DESC LIMIT 1))"
    )
}

/// SQL for one id: the oldest idle row on the current image (`target` as in
/// [`current_image_sql`]), else the oldest idle row, among those `filter` (SQL over
/// `instances`) admits, locked `SKIP LOCKED`. Two walks of the idle index that stop
/// at the first row, never a sort of every idle row: a claim's cost does not grow
/// with the pool.
pub fn pick_idle_sql(filter: &str, target: &str) -> String {
    let other = on_other_image_sql("instances", target);
    format!(
        "COALESCE(
             (SELECT id FROM instances WHERE status = 'idle' AND {filter} AND NOT {other}
              ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),
             (SELECT id FROM instances WHERE status = 'idle' AND {filter}
              ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED))"
    )
}

/// SQL: whether the row `alias` reports another image than the current one (`target`
/// as in [`current_image_sql`]); rows that report none are not on another image.
/// `false` sorts first: an `ORDER BY` on it puts the current image first.
pub fn on_other_image_sql(alias: &str, target: &str) -> String {
    format!("({alias}.image IS NOT NULL AND {alias}.image IS DISTINCT FROM {})", current_image_sql(target))
}

/// What is stale among the idle rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Staleness {
    /// The oldest stale idle rows, at most the limit asked for.
    pub oldest: Vec<InstanceId>,
    /// Every stale idle row.
    pub stale: i64,
    /// Idle rows that are not stale.
    pub fresh: i64,
}

/// Idle rows older than `max_age`, or reporting another image than the current one:
/// `target_image`, else the image of the newest row that reports one (a new release
/// shows up on the instances created after it). Rows that report no image are not
/// stale by image.
pub async fn stale_idle(
    db: impl PgExecutor<'_>,
    target_image: Option<&str>,
    max_age: Option<Duration>,
    limit: i64,
) -> sqlx::Result<Staleness> {
    let (oldest, stale, fresh): (Vec<InstanceId>, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH idle AS (
             SELECT i.id, i.created_at,
                    {}
                    OR ($2::float8 IS NOT NULL AND i.created_at < now() - make_interval(secs => $2)) AS stale
             FROM instances i WHERE i.status = 'idle'
         )
         SELECT COALESCE((SELECT array_agg(id ORDER BY created_at, id) FROM (
                    SELECT id, created_at FROM idle WHERE stale ORDER BY created_at, id LIMIT $3) s), '{{}}'),
                (SELECT count(*) FROM idle WHERE stale),
                (SELECT count(*) FROM idle WHERE NOT stale)",
        on_other_image_sql("i", "$1")
    )))
    .bind(target_image)
    .bind(max_age.map(|a| a.as_secs_f64()))
    .bind(limit)
    .fetch_one(db)
    .await?;
    Ok(Staleness { oldest, stale, fresh })
}

/// Moves the given rows from `idle` to `draining` (compare-and-set: a row a claim
/// took meanwhile is left alone); returns the ids moved.
pub async fn retire(db: impl PgExecutor<'_>, ids: &[InstanceId], reason: &str) -> sqlx::Result<Vec<InstanceId>> {
    sqlx::query_scalar(
        "UPDATE instances SET status = 'draining', last_error = $2, status_changed_at = now(), updated_at = now()
         WHERE id = ANY($1) AND status = 'idle'
         RETURNING id",
    )
    .bind(ids)
    .bind(reason)
    .fetch_all(db)
    .await
}

/// Gives back up to `limit` idle rows that have been idle for `cooldown` or longer:
/// moves them to `draining`, oldest first (`SKIP LOCKED` and compare-and-set on
/// `idle`: a row a claim or a binding pass holds is passed over); returns their ids.
pub async fn take_surplus(db: impl PgExecutor<'_>, limit: i64, cooldown: Duration) -> sqlx::Result<Vec<InstanceId>> {
    sqlx::query_scalar(
        "WITH surplus AS (
             SELECT id FROM instances
             WHERE status = 'idle' AND status_changed_at <= now() - make_interval(secs => $2)
             ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED
         )
         UPDATE instances SET status = 'draining', last_error = 'surplus: above the warm target',
                              status_changed_at = now(), updated_at = now()
         FROM surplus WHERE instances.id = surplus.id AND instances.status = 'idle'
         RETURNING instances.id",
    )
    .bind(limit)
    .bind(cooldown.as_secs_f64())
    .fetch_all(db)
    .await
}

/// Live instances (not draining) per image (`unknown` for rows without one).
pub async fn by_image(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT COALESCE(image, 'unknown'), count(*) FROM instances WHERE status <> 'draining'
         GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(db)
    .await
}
