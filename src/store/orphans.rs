//! The `orphan_services` table: provider services no row owns and the services API
//! cannot destroy (SPEC §5.1). Kept until the provider no longer lists them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};

/// One orphan, as the API and dashboard show it.
#[derive(Clone, Debug, FromRow, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub service_id: String,
    pub instance_id: String,
    pub name: Option<String>,
    pub environment_id: Option<String>,
    /// Why no row owns it.
    pub reason: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A service found orphaned.
pub struct Found<'a> {
    pub service_id: &'a str,
    pub instance_id: &'a str,
    pub name: Option<&'a str>,
    pub environment_id: Option<&'a str>,
    pub reason: &'a str,
}

/// Records `found` (or refreshes when it was seen); true when it is new, so the
/// caller warns about it exactly once.
pub async fn record(db: impl PgExecutor<'_>, found: &Found<'_>) -> sqlx::Result<bool> {
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO orphan_services (service_id, instance_id, name, environment_id, reason)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT ON CONSTRAINT orphan_services_pkey DO UPDATE SET last_seen_at = now()
         RETURNING (xmax = 0)",
    )
    .bind(found.service_id)
    .bind(found.instance_id)
    .bind(found.name)
    .bind(found.environment_id)
    .bind(found.reason)
    .fetch_one(db)
    .await?;
    Ok(inserted)
}

/// Marks the orphans among `listed` as seen now.
pub async fn seen(db: impl PgExecutor<'_>, listed: &[&str]) -> sqlx::Result<()> {
    sqlx::query("UPDATE orphan_services SET last_seen_at = now() WHERE service_id = ANY($1)")
        .bind(listed)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets orphans whose service is no longer listed (someone deleted it); returns
/// their service ids.
pub async fn forget_unlisted(db: impl PgExecutor<'_>, listed: &[&str]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("DELETE FROM orphan_services WHERE NOT (service_id = ANY($1)) RETURNING service_id")
        .bind(listed)
        .fetch_all(db)
        .await
}

/// Service ids of every known orphan.
pub async fn service_ids(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT service_id FROM orphan_services").fetch_all(db).await
}

/// Every orphan, oldest first.
pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Orphan>> {
    sqlx::query_as(
        "SELECT service_id, instance_id, name, environment_id, reason, first_seen_at, last_seen_at
         FROM orphan_services ORDER BY first_seen_at, service_id",
    )
    .fetch_all(db)
    .await
}

/// How many orphans there are.
pub async fn count(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM orphan_services").fetch_one(db).await
}
