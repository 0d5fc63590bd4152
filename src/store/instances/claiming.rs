//! A claim job's writes to the row it holds, each fenced on the run's lease in the
//! same statement ([`LEASE_HOLDS`]): a stale run (its job rescued and resumed by
//! another run) changes nothing.

use sqlx::PgExecutor;

use crate::store::jobs::lifecycle::{LEASE_HOLDS, Lease};

/// Notes on the `claiming` row `id` that the claim is about to send it
/// `/pool/provision`, with a synchronous commit (worker connections commit
/// asynchronously): the note is on disk before the call, so a crash cannot leave a
/// provision sent and forgotten. `Some(sent before)`: whether this claim job had
/// noted one already (an earlier run may have bound the instance); `None` when the
/// lease or the row is gone (nothing written).
pub async fn note_provision_sent(db: impl PgExecutor<'_>, id: &str, lease: Lease<'_>) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE instances SET provision_sent_by = $2, provision_sent_at = clock_timestamp(), updated_at = now()
         FROM (SELECT set_config('synchronous_commit', 'on', true)) AS durable,
              (SELECT provision_sent_by AS sent_by FROM instances WHERE id = $1) AS before
         WHERE id = $1 AND claim_job_id = $2 AND status = 'claiming' AND {LEASE_HOLDS}
         RETURNING before.sent_by IS NOT DISTINCT FROM $2"
    )))
    .bind(id)
    .bind(lease.job_id)
    .bind(lease.attempt)
    .bind(lease.worker)
    .fetch_optional(db)
    .await
}

/// `claiming` → `idle`: the instance provably did nothing, while the lease holds
/// and the claim holds the row. False otherwise (nothing changed).
pub async fn release_held_claim(db: impl PgExecutor<'_>, id: &str, lease: Lease<'_>) -> sqlx::Result<bool> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE instances SET status = 'idle', claim_job_id = NULL, status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'claiming' AND claim_job_id = $2 AND {LEASE_HOLDS}"
    )))
    .bind(id)
    .bind(lease.job_id)
    .bind(lease.attempt)
    .bind(lease.worker)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `claiming` → `crashed` with `error`: a provision that may have acted left no
/// binding the instance reports, while the lease holds and the claim holds the row.
/// False otherwise (nothing changed).
pub async fn crash_held_claim(db: impl PgExecutor<'_>, id: &str, lease: Lease<'_>, error: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE instances SET status = 'crashed', last_error = $5, status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'claiming' AND claim_job_id = $2 AND {LEASE_HOLDS}"
    )))
    .bind(id)
    .bind(lease.job_id)
    .bind(lease.attempt)
    .bind(lease.worker)
    .bind(error)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
