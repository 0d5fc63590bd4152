//! A drain's take: the rows `drain_idle` moves to `draining`, and the record on its
//! job of which rows those were, in one statement. A re-run (after a crash at any
//! point) finds the record and finishes exactly those rows: it neither takes more
//! (over-drain) nor fewer (under-drain).

use serde_json::Value;
use sqlx::PgExecutor;

use crate::domain::{InstanceId, JobId};

/// The rows drain job `job_id` took: taken now (up to `count`, idle oldest first,
/// then provisioning, `SKIP LOCKED`) or by an earlier run. `None`: this run (attempt
/// `attempt` on `worker`, its lease) no longer holds the job.
pub async fn take(
    db: impl PgExecutor<'_>,
    job_id: &JobId,
    attempt: i32,
    worker: &str,
    count: i64,
) -> sqlx::Result<Option<Vec<InstanceId>>> {
    let (held, earlier, now): (bool, Option<Value>, Option<Value>) = sqlx::query_as(
        "WITH job AS (
             SELECT id, progress FROM jobs
             WHERE id = $1 AND state = 'running' AND attempts = $2 AND worker_id = $4 FOR UPDATE
         ), taken AS (
             UPDATE instances SET status = 'draining', drain_job_id = $1, status_changed_at = now(), updated_at = now()
             WHERE id IN (SELECT id FROM instances WHERE status IN ('idle', 'provisioning')
                          ORDER BY (status = 'idle') DESC, created_at, id
                          LIMIT $3 FOR UPDATE SKIP LOCKED)
               AND status IN ('idle', 'provisioning')
               AND EXISTS (SELECT 1 FROM job WHERE progress IS NULL)
             RETURNING id
         ), marked AS (
             UPDATE jobs SET progress = jsonb_build_object('taken', COALESCE((SELECT jsonb_agg(id) FROM taken), '[]'))
             WHERE id = (SELECT id FROM job WHERE progress IS NULL)
             RETURNING progress
         )
         SELECT EXISTS (SELECT 1 FROM job), (SELECT progress FROM job), (SELECT progress FROM marked)",
    )
    .bind(job_id)
    .bind(attempt)
    .bind(count)
    .bind(worker)
    .fetch_one(db)
    .await?;
    if !held {
        return Ok(None);
    }
    let record = now.or(earlier).unwrap_or(Value::Null);
    let ids = record["taken"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().and_then(|id| InstanceId::parse(id).ok()));
    Ok(Some(ids.collect()))
}
