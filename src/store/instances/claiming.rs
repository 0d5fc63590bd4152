//! A claim job's writes to the row it holds, each fenced on the run's lease in the
//! same statement ([`LEASE_HOLDS`]): a stale run (its job rescued and resumed by
//! another run) changes nothing.

use std::sync::{Arc, LazyLock};

use serde_json::Value;
use sqlx::PgExecutor;

use super::{Binding, COLUMNS, InstanceRow};
use crate::domain::{InstanceId, JobId};
use crate::store::jobs::{
    self, JobState, NewJob,
    lifecycle::{Applied, LEASE_CTE, LEASE_HOLDS, Lease, succeeded_cte},
};

/// What a claim's provision note found: whether this claim job had noted a
/// provision before (an earlier run may have bound the instance, or may still be
/// binding it) and how long ago that first note was written.
#[derive(Clone, Copy, Debug, sqlx::FromRow)]
pub struct ProvisionNote {
    pub sent_before: bool,
    /// Seconds since this job's first note; `None` without one.
    pub since_first_secs: Option<f64>,
}

/// The row a claim job holds (or held), read by its run's first step
/// ([`held_claim_ctes`]): with its fetch or by [`held_noting_provision`].
#[derive(Debug, serde::Deserialize)]
pub struct HeldClaim {
    #[serde(flatten)]
    pub row: InstanceRow,
    noted: bool,
    sent_before: bool,
    since_first_secs: Option<f64>,
}

impl HeldClaim {
    /// The provision note written with the read; `None` when none was (the row is
    /// not `claiming`, has no url yet, or the lease is gone).
    pub fn note(&self) -> Option<ProvisionNote> {
        self.noted.then_some(ProvisionNote { sent_before: self.sent_before, since_first_secs: self.since_first_secs })
    }
}

/// The row the claim job of `lease` holds, with the provision note of
/// [`note_provision_sent`] written in the same statement when the row is `claiming`
/// with a url and the lease holds: a claim's first step is one round trip, not two.
pub async fn held_noting_provision(db: impl PgExecutor<'_>, lease: Lease<'_>) -> sqlx::Result<Option<HeldClaim>> {
    static HELD: LazyLock<Arc<str>> = LazyLock::new(|| {
        format!("WITH {} SELECT held FROM held_claims", held_claim_ctes("SELECT $1::text", LEASE_HOLDS)).into()
    });
    let held: Option<sqlx::types::Json<HeldClaim>> = sqlx::query_scalar(sqlx::AssertSqlSafe(Arc::clone(&HELD)))
        .bind(lease.job_id)
        .bind(lease.job_id)
        .bind(lease.attempt)
        .bind(lease.worker)
        .fetch_optional(db)
        .await?;
    Ok(held.map(|held| held.0))
}

/// CTEs reading the rows held by the claim jobs `job_ids` (SQL yielding their ids)
/// and writing each one's provision note where the row is `claiming` with a url and
/// `guard` (SQL) holds, as [`note_provision_sent`] writes it: `held_claims`
/// (`job_id`, `held`: a [`HeldClaim`] as JSON). The commit is synchronous only when a
/// note is written. For a run's first step, alone or in the fetch that takes claims.
// `= ANY(ARRAY(...))`: each row is looked up by its claim's id, then by its own; as
// joins they were planned as walks of the `claim_job_id` and primary key indexes,
// through every bound row.
pub(crate) fn held_claim_ctes(job_ids: &str, guard: &str) -> String {
    format!(
        "held_rows AS (
             SELECT {COLUMNS}, provision_sent_by, provision_sent_at FROM instances
             WHERE claim_job_id = ANY(ARRAY({job_ids})) FOR UPDATE
         ), noted AS (
             -- set_config names a column so that it runs per noted row, never for a
             -- statement that notes nothing (a constant would run once, always).
             UPDATE instances SET provision_sent_by = h.claim_job_id, updated_at = now(),
                    provision_sent_at = CASE WHEN h.provision_sent_by IS NOT DISTINCT FROM h.claim_job_id
                                             THEN h.provision_sent_at ELSE clock_timestamp() END
             FROM held_rows h
             WHERE instances.id = ANY(ARRAY(SELECT id FROM held_rows)) AND instances.id = h.id
               AND h.status = 'claiming' AND h.url IS NOT NULL AND {guard}
               AND set_config('synchronous_commit', 'on' || left(h.id, 0), true) IS NOT NULL
             RETURNING instances.id
         ), held_claims AS (
             SELECT h.claim_job_id AS job_id,
                    to_jsonb(h) - 'provision_sent_by' - 'provision_sent_at' || jsonb_build_object(
                        'noted', EXISTS (SELECT 1 FROM noted WHERE noted.id = h.id),
                        'sent_before', h.provision_sent_by IS NOT DISTINCT FROM h.claim_job_id,
                        'since_first_secs', CASE WHEN h.provision_sent_by IS NOT DISTINCT FROM h.claim_job_id
                            THEN EXTRACT(EPOCH FROM clock_timestamp() - h.provision_sent_at)::float8 END) AS held
             FROM held_rows h
         )"
    )
}

/// Notes on the `claiming` row `id` that the claim is about to send it
/// `/pool/provision`, with a synchronous commit (worker connections commit
/// asynchronously): the note is on disk before the call, so a crash cannot leave a
/// provision sent and forgotten. A note of this job already there keeps its time
/// (the first send is what may still be running), unless `resend`: the earlier one
/// is known to be over. `None` when the lease or the row is gone (nothing written).
pub async fn note_provision_sent(
    db: impl PgExecutor<'_>,
    id: &InstanceId,
    lease: Lease<'_>,
    resend: bool,
) -> sqlx::Result<Option<ProvisionNote>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE instances SET provision_sent_by = $2, updated_at = now(),
                provision_sent_at = CASE WHEN provision_sent_by IS NOT DISTINCT FROM $2 AND NOT $5
                                         THEN provision_sent_at ELSE clock_timestamp() END
         FROM (SELECT set_config('synchronous_commit', 'on', true)) AS durable,
              (SELECT provision_sent_by AS sent_by, provision_sent_at AS sent_at FROM instances WHERE id = $1) AS before
         WHERE id = $1 AND claim_job_id = $2 AND status = 'claiming' AND {LEASE_HOLDS}
         RETURNING before.sent_by IS NOT DISTINCT FROM $2 AS sent_before,
                   CASE WHEN before.sent_by IS NOT DISTINCT FROM $2
                        THEN EXTRACT(EPOCH FROM clock_timestamp() - before.sent_at)::float8 END AS since_first_secs"
    )))
    .bind(id)
    .bind(lease.job_id)
    .bind(lease.attempt)
    .bind(lease.worker)
    .bind(resend)
    .fetch_optional(db)
    .await
}

/// `claiming` → `idle`: the instance provably did nothing, while the lease holds
/// and the claim holds the row. False otherwise (nothing changed).
pub async fn release_held_claim(db: impl PgExecutor<'_>, id: &InstanceId, lease: Lease<'_>) -> sqlx::Result<bool> {
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
pub async fn crash_held_claim(
    db: impl PgExecutor<'_>,
    id: &InstanceId,
    lease: Lease<'_>,
    error: &str,
) -> sqlx::Result<bool> {
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

/// What [`complete_held_claim`] did.
#[derive(Debug)]
pub enum Completed {
    /// Bound, the job succeeded and the top-up is enqueued (unless one is).
    Done(Applied),
    /// The run lost its job; nothing was written.
    Lost,
    /// The row is no longer `claiming` for this job; nothing was written.
    Moved,
}

/// `claiming` → `claimed` with `binding`, the job `succeeded` with `result` and
/// `top_up` enqueued unless its key is taken: a claim's completion, all or nothing,
/// in one statement (one round trip). The lease is taken first, then the row, the
/// order every fenced write of a claim takes them.
pub async fn complete_held_claim(
    db: impl PgExecutor<'_>,
    id: &InstanceId,
    lease: Lease<'_>,
    binding: &Binding<'_>,
    result: &Value,
    top_up: &NewJob,
) -> sqlx::Result<Completed> {
    static COMPLETE: LazyLock<Arc<str>> = LazyLock::new(|| {
        format!(
            "WITH {LEASE_CTE}, held AS MATERIALIZED (
                 SELECT instances.id FROM instances, lease
                 WHERE instances.id = $1 AND claim_job_id = $2 AND status = 'claiming' FOR UPDATE OF instances
             ), {}, bound AS (
                 UPDATE instances SET status = 'claimed', conversation_id = $5, invite_url = $6, agent_name = $7,
                        instructions = $8, join_url = $9, claimed_at = now(), last_error = NULL,
                        status_changed_at = now(), updated_at = now()
                 FROM succeeded WHERE instances.id = $1 AND claim_job_id = $2 AND status = 'claiming'
                 RETURNING instances.id
             ), top_up AS ({})
             SELECT EXISTS (SELECT 1 FROM lease) AS held, s.id, s.kind, s.state, s.run_time, s.age
             FROM (SELECT 1) one LEFT JOIN succeeded s ON true",
            succeeded_cte("$10", "held"),
            jobs::insert_sql(11, "EXISTS (SELECT 1 FROM bound)"),
        )
        .into()
    });
    let query = sqlx::query_as::<_, Answer>(sqlx::AssertSqlSafe(Arc::clone(&COMPLETE)))
        .bind(id)
        .bind(lease.job_id)
        .bind(lease.attempt)
        .bind(lease.worker)
        .bind(binding.conversation_id)
        .bind(binding.invite_url)
        .bind(binding.agent_name)
        .bind(binding.instructions)
        .bind(binding.join_url)
        .bind(result);
    let (held, id, kind, state, run_time, age) = jobs::bind_new_job(query, top_up).fetch_one(db).await?;
    Ok(match (held, id, kind, state, run_time, age) {
        (false, ..) => Completed::Lost,
        (true, Some(id), Some(kind), Some(state), Some(run_time), Some(age)) => {
            let state = JobState::try_from(state).map_err(|e| sqlx::Error::Decode(e.into()))?;
            Completed::Done(Applied { id, kind, state, run_time, age })
        }
        (true, ..) => Completed::Moved,
    })
}

type Answer = (bool, Option<JobId>, Option<String>, Option<String>, Option<f64>, Option<f64>);
