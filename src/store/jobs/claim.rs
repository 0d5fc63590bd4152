//! The claim request's one write: reserve the oldest idle instance (`idle` →
//! `claiming`, `SKIP LOCKED`), insert its claim job and record the idempotency key,
//! in one statement (one round trip, atomic, nothing a dropped request can leave
//! half-done).

use sqlx::PgExecutor;

use super::NewJob;

/// What [`reserve_and_enqueue`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// The instance is reserved for the job, which is queued.
    Instance(String),
    /// No idle instance; nothing was written.
    NoIdle,
    /// A concurrent request recorded the same idempotency key first; nothing was written.
    KeyTaken,
}

/// Reserves an idle instance for `job` and enqueues it; with `key = (key, request
/// hash)`, also records the idempotency key.
pub async fn reserve_and_enqueue(
    db: impl PgExecutor<'_>,
    job: &NewJob,
    key: Option<(&str, &str)>,
) -> sqlx::Result<Reserved> {
    let reserved: sqlx::Result<Option<String>> = sqlx::query_scalar(
        "WITH picked AS (
             SELECT id FROM instances WHERE status = 'idle' ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
         ), reserved AS (
             UPDATE instances SET status = 'claiming', claim_job_id = $1, status_changed_at = now(), updated_at = now()
             FROM picked WHERE instances.id = picked.id AND instances.status = 'idle'
             RETURNING instances.id
         ), job AS (
             INSERT INTO jobs (id, kind, args, max_attempts)
             SELECT $1, $2, $3, $4 FROM reserved
             RETURNING id
         ), keyed AS (
             INSERT INTO idempotency_keys (key, request_hash, job_id)
             SELECT $5, $6, id FROM job WHERE $5::text IS NOT NULL
             RETURNING key
         )
         -- Data-modifying CTEs run whether read or not.
         SELECT id FROM reserved",
    )
    .bind(&job.id)
    .bind(job.kind)
    .bind(&job.args)
    .bind(job.max_attempts)
    .bind(key.map(|(k, _)| k))
    .bind(key.map(|(_, h)| h))
    .fetch_optional(db)
    .await;
    match reserved {
        Ok(Some(instance)) => Ok(Reserved::Instance(instance)),
        Ok(None) => Ok(Reserved::NoIdle),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("idempotency_keys_pkey") => Ok(Reserved::KeyTaken),
        Err(e) => Err(e),
    }
}
