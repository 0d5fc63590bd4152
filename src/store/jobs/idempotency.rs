//! `Idempotency-Key` on claim: the same key and body within 24 h name the same job.

use sqlx::PgConnection;

use crate::domain::JobId;

/// The job an idempotency key already names, if the key is younger than 24 h and
/// was used with the same request; `Err(())` when it was used with another body.
pub async fn idempotent_job(
    conn: &mut PgConnection,
    key: &str,
    request_hash: &str,
) -> sqlx::Result<Result<Option<JobId>, ()>> {
    sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND created_at < now() - interval '24 hours'")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    let found: Option<(String, JobId)> =
        sqlx::query_as("SELECT request_hash, job_id FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match found {
        None => Ok(None),
        Some((hash, job_id)) if hash == request_hash => Ok(Some(job_id)),
        Some(_) => Err(()),
    })
}

/// Records `key` → `job_id`; false if a concurrent request recorded the key first.
pub async fn remember_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
    request_hash: &str,
    job_id: &JobId,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, job_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(key)
    .bind(request_hash)
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
