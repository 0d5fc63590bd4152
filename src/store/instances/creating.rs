//! Reads of the whole fleet and of instances being created (the readiness follow-up).

use sqlx::{PgExecutor, PgPool};

use super::{COLUMNS, InstanceRow};
use crate::domain::{InstanceId, InstanceStatus};

/// A page of the whole fleet (every status, or one), oldest first, without
/// `instructions`; and how many rows the filter selects.
pub async fn fleet(
    db: &PgPool,
    status: Option<InstanceStatus>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<InstanceRow>, i64)> {
    let columns = COLUMNS.replace("instructions", "NULL::text AS instructions");
    let status = status.map(|s| s.to_string());
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM instances WHERE ($1::text IS NULL OR status = $1)
         ORDER BY created_at, id LIMIT $2 OFFSET $3"
    )))
    .bind(&status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM instances WHERE ($1::text IS NULL OR status = $1)")
        .bind(&status)
        .fetch_one(db)
        .await?;
    Ok((rows, total))
}

/// `provisioning` rows whose service exists (being created), without
/// `instructions`, oldest first.
pub async fn being_created(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<InstanceRow>> {
    let columns = COLUMNS.replace("instructions", "NULL::text AS instructions");
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM instances WHERE status = 'provisioning' AND service_id IS NOT NULL
         ORDER BY created_at, id LIMIT 1000"
    )))
    .fetch_all(db)
    .await
}

/// Whether a row being created (service known, not idle yet) is younger than `within`.
pub async fn any_being_created(db: impl PgExecutor<'_>, within: std::time::Duration) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM instances WHERE status = 'provisioning' AND service_id IS NOT NULL
                          AND created_at > now() - make_interval(secs => $1))",
    )
    .bind(within.as_secs_f64())
    .fetch_one(db)
    .await
}

/// Where a row's create-instance calls stand, for a re-run deciding whether it may
/// call again (upstream's create is not idempotent).
#[derive(Clone, Copy, Debug, sqlx::FromRow)]
pub struct CreateCalls {
    /// When create-instance was last called for the row.
    pub requested_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether that call got an answer (upstream finished with it).
    pub answered: bool,
    /// The database's clock, to age `requested_at` by.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Reads [`CreateCalls`] of `id`.
pub async fn create_calls(db: impl PgExecutor<'_>, id: &InstanceId) -> sqlx::Result<Option<CreateCalls>> {
    sqlx::query_as(
        "SELECT create_requested_at AS requested_at,
                COALESCE(create_answered_at >= create_requested_at, false) AS answered, now() AS now
         FROM instances WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Notes, durably and before the call, that create-instance is about to be called
/// for a `provisioning` row; false when the row is no longer `provisioning`.
pub async fn note_create_requested(db: impl PgExecutor<'_>, id: &InstanceId) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE instances SET create_requested_at = clock_timestamp(), updated_at = now()
         WHERE id = $1 AND status = 'provisioning'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Notes that the last create-instance call for `id` got an answer.
pub async fn note_create_answered(db: impl PgExecutor<'_>, id: &InstanceId) -> sqlx::Result<()> {
    sqlx::query("UPDATE instances SET create_answered_at = clock_timestamp() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
