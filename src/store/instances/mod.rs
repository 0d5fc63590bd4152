//! The `instances` table.

mod claiming;
mod creating;
pub mod lead;
mod reconcile;
pub mod recycle;

pub(crate) use claiming::held_claim_ctes;
pub use claiming::{
    Completed, HeldClaim, ProvisionNote, complete_held_claim, crash_held_claim, held_noting_provision,
    note_provision_sent, release_held_claim,
};
pub use creating::{
    CreateCalls, any_being_created, being_created, create_calls, fleet, note_create_answered, note_create_requested,
};
pub use reconcile::{
    Enrichment, Observation, adopt_bound, delete_vanished, enrich, fill_conversation, insert_adopted, mark_missing,
    observe_all, recover_crashed, settle_stuck_claim,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};

use crate::domain::{InstanceId, InstanceStatus, JobId};

/// One row of `instances`.
#[derive(Clone, Debug, FromRow, Serialize, serde::Deserialize)]
pub struct InstanceRow {
    pub id: InstanceId,
    pub name: Option<String>,
    pub url: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: InstanceStatus,
    pub service_id: Option<String>,
    pub deploy_status: Option<String>,
    pub agent_name: Option<String>,
    pub conversation_id: Option<String>,
    pub invite_url: Option<String>,
    pub instructions: Option<String>,
    pub join_url: Option<String>,
    pub claim_job_id: Option<JobId>,
    /// The replenish job that created the row; `None` for adopted or legacy rows.
    pub created_by_job: Option<JobId>,
    pub last_error: Option<String>,
    /// The image the provider last reported for the service.
    pub image: Option<String>,
    pub missing_batches: i32,
    pub created_at: DateTime<Utc>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub status_changed_at: DateTime<Utc>,
}

impl InstanceRow {
    pub fn status(&self) -> InstanceStatus {
        self.status
    }
}

/// Rows per status, for `/api/pool/counts` and replenish.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Counts {
    pub provisioning: i64,
    pub idle: i64,
    pub claiming: i64,
    pub claimed: i64,
    pub crashed: i64,
    pub draining: i64,
}

const COLUMNS: &str = "id, name, url, status, service_id, deploy_status, agent_name, conversation_id, \
     invite_url, instructions, join_url, claim_job_id, created_by_job, last_error, image, missing_batches, created_at, \
     claimed_at, status_changed_at";

/// Inserts `provisioning` rows before the services calls, so a crash in between
/// leaves rows reconcile can finish or clean. `job_id` is the replenish creating them.
pub async fn insert_provisioning_many(db: impl PgExecutor<'_>, ids: &[InstanceId], job_id: &JobId) -> sqlx::Result<()> {
    let names: Vec<String> = ids.iter().map(crate::domain::service_name).collect();
    let ids: Vec<&str> = ids.iter().map(InstanceId::as_str).collect();
    sqlx::query(
        "INSERT INTO instances (id, name, status, created_by_job)
         SELECT id, name, 'provisioning', $3 FROM unnest($1::text[], $2::text[]) AS r(id, name)",
    )
    .bind(&ids)
    .bind(&names)
    .bind(job_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Ids of rows a replenish job already created (so a re-run does not add more).
pub async fn created_by_job(db: impl PgExecutor<'_>, job_id: &JobId) -> sqlx::Result<Vec<InstanceId>> {
    sqlx::query_scalar("SELECT id FROM instances WHERE created_by_job = $1").bind(job_id).fetch_all(db).await
}

pub async fn get(db: impl PgExecutor<'_>, id: &InstanceId) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM instances WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Every row, oldest first (reconcile reads them all once per run), without the
/// `instructions` (up to 64 KiB each) that reconcile never uses.
pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<InstanceRow>> {
    let columns = COLUMNS.replace("instructions", "NULL::text AS instructions");
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {columns} FROM instances ORDER BY created_at, id")))
        .fetch_all(db)
        .await
}

/// Claimed and crashed rows for `/api/pool/agents`, newest claim first.
pub async fn agents(
    db: impl PgExecutor<'_>,
    limit: i64,
    offset: i64,
    with_instructions: bool,
) -> sqlx::Result<Vec<InstanceRow>> {
    // `instructions` may be 64 KiB a row: read only when asked for.
    let columns = if with_instructions {
        COLUMNS.to_owned()
    } else {
        COLUMNS.replace("instructions", "NULL::text AS instructions")
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM instances WHERE status IN ('claimed', 'crashed')
         ORDER BY claimed_at DESC NULLS LAST, created_at DESC, id LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

pub async fn counts(db: impl PgExecutor<'_>) -> sqlx::Result<Counts> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM instances GROUP BY status").fetch_all(db).await?;
    let mut counts = Counts::default();
    for (status, n) in rows {
        let slot = match status.parse() {
            Ok(InstanceStatus::Provisioning) => &mut counts.provisioning,
            Ok(InstanceStatus::Idle) => &mut counts.idle,
            Ok(InstanceStatus::Claiming) => &mut counts.claiming,
            Ok(InstanceStatus::Claimed) => &mut counts.claimed,
            Ok(InstanceStatus::Crashed) => &mut counts.crashed,
            Ok(InstanceStatus::Draining) | Err(_) => &mut counts.draining,
        };
        *slot += n;
    }
    Ok(counts)
}

/// `idle` → `claiming` for the oldest idle row on the current image (`target_image`,
/// see [`recycle::current_image_sql`]), else the oldest, recording `job_id` as its
/// holder. Rows in `exclude` (already tried by this job) are passed over.
pub async fn reserve_idle(
    db: &mut PgConnection,
    job_id: &JobId,
    exclude: &[InstanceId],
    target_image: Option<&str>,
) -> sqlx::Result<Option<InstanceRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE instances SET status = 'claiming', claim_job_id = $1, status_changed_at = now(), updated_at = now()
         WHERE id = {} AND status = 'idle'
         RETURNING {COLUMNS}",
        recycle::pick_idle_sql("id <> ALL($2)", "$3")
    )))
    .bind(job_id)
    .bind(exclude)
    .bind(target_image)
    .fetch_optional(db)
    .await
}

/// What a successful provision writes onto the row.
pub struct Binding<'a> {
    /// `None` while a join awaits acceptance (reconcile fills it in).
    pub conversation_id: Option<&'a str>,
    pub invite_url: Option<&'a str>,
    pub agent_name: &'a str,
    pub instructions: &'a str,
    pub join_url: Option<&'a str>,
}

/// `claiming` → `idle` while `holder` (the claim job, or `None` for a row no job
/// holds) still holds the row: the claim job letting go of an instance that provably
/// did nothing, or reconcile freeing an unbound instance of a dead claim.
pub async fn release_claim(db: impl PgExecutor<'_>, id: &InstanceId, holder: Option<&JobId>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE instances SET status = 'idle', claim_job_id = NULL, status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = 'claiming' AND claim_job_id IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(holder)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Compare-and-set of the status: moves `id` to `to` only from one of `from`.
pub async fn transition(
    db: impl PgExecutor<'_>,
    id: &InstanceId,
    from: &[InstanceStatus],
    to: InstanceStatus,
    error: Option<&str>,
) -> sqlx::Result<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let done = sqlx::query(
        "UPDATE instances SET status = $3, last_error = COALESCE($4, last_error),
                status_changed_at = now(), updated_at = now()
         WHERE id = $1 AND status = ANY($2)",
    )
    .bind(id)
    .bind(&from)
    .bind(to.as_str())
    .bind(error)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records what the services API said at create time.
pub async fn set_service(
    db: impl PgExecutor<'_>,
    id: &InstanceId,
    service_id: &str,
    url: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE instances SET service_id = $2, url = COALESCE($3, url), updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(service_id)
        .bind(url)
        .execute(db)
        .await?;
    Ok(())
}

/// Rows a drain job already took (a re-run finishes those first).
pub async fn drained_by_job(db: impl PgExecutor<'_>, job_id: &JobId) -> sqlx::Result<Vec<InstanceRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM instances WHERE drain_job_id = $1 AND status = 'draining'"
    )))
    .bind(job_id)
    .fetch_all(db)
    .await
}

/// Deletes a row once its destroy was confirmed; only a `draining` row may go.
pub async fn delete_draining(db: impl PgExecutor<'_>, id: &InstanceId) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM instances WHERE id = $1 AND status = 'draining'").bind(id).execute(db).await?;
    Ok(done.rows_affected() == 1)
}

/// `idle + provisioning`, the number replenish keeps at `POOL_MIN_IDLE`.
/// `provisioning` rows Pool created, younger than `max_age`, that no provider
/// service confirms and no provision job is queued or running for: their provision
/// gave up. Rows Pool did not create (adopted, or the original service's `starting`
/// ones) already have their service: reconcile follows them, nothing re-creates them.
pub async fn stranded_provisions(db: &PgPool, max_age: std::time::Duration) -> sqlx::Result<Vec<InstanceId>> {
    sqlx::query_scalar(
        "SELECT i.id FROM instances i
         WHERE i.status = 'provisioning' AND i.service_id IS NULL AND i.created_by_job IS NOT NULL
           AND i.status_changed_at > now() - make_interval(secs => $1)
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'provision_instance' AND j.dedupe_key = i.id
                                                  AND j.state IN ('queued', 'running'))
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'provision_instance' AND j.state IN ('queued', 'running')
                                                  AND j.dedupe_key IS NULL AND j.args ->> 'instanceId' = i.id)
         ORDER BY i.created_at LIMIT 100",
    )
    .bind(max_age.as_secs_f64())
    .fetch_all(db)
    .await
}
