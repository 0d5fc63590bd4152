//! Pool's job table `jobs`: its states and rows ([`JobState`], [`JobRow`]), inserting
//! jobs inside the caller's transaction, and reading them. Every change of a job's
//! state is a compare-and-set in [`lifecycle`]; the other writes are a claim's place
//! in the line ([`claim`]), a drain's record of what it took ([`drain`]) and the
//! prune of finished rows.

mod admin;
pub mod claim;
pub mod drain;
mod idempotency;
pub mod legacy;
pub mod lifecycle;
pub mod pauses;
mod prune;

pub use admin::{Attempt, ListQuery, history, list, totals, totals_by_kind};
pub use idempotency::{idempotent_job, remember_idempotency_key};
pub use lifecycle::{ActionError, Filter, Retried, cancel, cancel_all, retry, retry_all};
pub use prune::{PRUNE_LOCK, PruneSettings, Pruned, prune_all};

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};

use crate::domain::{JobId, JobKind};

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: JobId,
    pub kind: JobKind,
    pub args: Value,
    pub max_attempts: i32,
    /// Earliest start; `None` is now (plus `delay`).
    pub run_at: Option<DateTime<Utc>>,
    /// With no `run_at`: start no sooner than this after the insert, by the
    /// database's clock.
    pub delay: std::time::Duration,
    /// At most one queued-or-running job per `(kind, dedupe)`.
    pub dedupe: Option<String>,
    /// At most one job ever per `(kind, key)` (cron ticks).
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` with a fresh id.
    pub fn new(kind: JobKind, args: Value, max_attempts: u32) -> Self {
        Self {
            id: JobId::generate(),
            kind,
            args,
            max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX).max(1),
            run_at: None,
            delay: std::time::Duration::ZERO,
            dedupe: None,
            idempotency_key: None,
        }
    }

    /// Starts this job no sooner than `delay` after its insert.
    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Makes this job a singleton while queued or running.
    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe = Some(key.into());
        self
    }
}

/// The states of a job (SPEC §3.2). A job waiting for a retry is `Queued` with
/// `attempts > 0` and a later `run_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [Self; 5] = [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled];

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl TryFrom<String> for JobState {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        Self::ALL.into_iter().find(|s| s.as_str() == value).ok_or_else(|| format!("unknown job state {value:?}"))
    }
}

/// One row of `jobs` (also as JSON with its column names: a finished claim's
/// notification carries it).
#[derive(Clone, Debug, FromRow, serde::Deserialize)]
pub struct JobRow {
    pub id: JobId,
    /// As stored: a newer release may already write kinds this one does not declare.
    pub kind: String,
    pub args: Value,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub runs: i32,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub cancel_requested: bool,
}

pub(super) const COLUMNS: &str = "id, kind, args, state, attempts, max_attempts, runs, run_at, created_at, \
     started_at, finished_at, result, error, cancel_requested";

/// Whether [`enqueue`] inserted the job or found the one that already holds its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    New(JobId),
    Existing(JobId),
}

impl Enqueued {
    pub fn id(&self) -> &JobId {
        match self {
            Self::New(id) | Self::Existing(id) => id,
        }
    }
}

/// Inserts a job on `conn` (pass a transaction to enqueue atomically with a row
/// change). A job whose dedupe or idempotency key is taken is not inserted; the
/// holder's id comes back instead.
pub async fn enqueue(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<Enqueued> {
    for _ in 0..3 {
        let inserted = insert(&mut *conn, job).await?;
        if let Some(id) = inserted {
            return Ok(Enqueued::New(id));
        }
        if let Some(id) = holder(&mut *conn, job).await? {
            return Ok(Enqueued::Existing(id));
        }
        // The holder finished between our insert and lookup; the key is free again.
    }
    Err(sqlx::Error::Protocol(format!("could not enqueue {} after 3 tries", job.kind)))
}

/// Inserts many jobs in one statement (a bulk producer), each due at once (`run_at`
/// and `delay` are not read). Dedupe keys are recorded, not checked: a taken one
/// fails the whole statement.
pub async fn enqueue_many(db: impl PgExecutor<'_>, jobs: &[NewJob]) -> sqlx::Result<u64> {
    let ids: Vec<&JobId> = jobs.iter().map(|j| &j.id).collect();
    let kinds: Vec<JobKind> = jobs.iter().map(|j| j.kind).collect();
    let args: Vec<&Value> = jobs.iter().map(|j| &j.args).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
    let dedupe: Vec<Option<&str>> = jobs.iter().map(|j| j.dedupe.as_deref()).collect();
    let done = sqlx::query(
        "INSERT INTO jobs (id, kind, args, max_attempts, dedupe_key)
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::text[])",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&args)
    .bind(&attempts)
    .bind(&dedupe)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Inserts a job unless its dedupe or idempotency key is taken, in one statement
/// (for callers that need no job id back, e.g. a top-up replenish).
pub async fn enqueue_unless_held(db: impl PgExecutor<'_>, job: &NewJob) -> sqlx::Result<bool> {
    Ok(insert(db, job).await?.is_some())
}

/// The job's id if it was inserted; `None` when one of its keys is taken.
async fn insert(db: impl PgExecutor<'_>, job: &NewJob) -> sqlx::Result<Option<JobId>> {
    static INSERT: LazyLock<Arc<str>> = LazyLock::new(|| insert_sql(1, "true").into());
    let query = sqlx::query_as::<_, (JobId,)>(sqlx::AssertSqlSafe(Arc::clone(&INSERT)));
    Ok(bind_new_job(query, job).fetch_optional(db).await?.map(|(id,)| id))
}

/// Binds `job`'s values onto `query` in the order [`insert_sql`] reads them.
pub(crate) fn bind_new_job<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    job: &'q NewJob,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(&job.id)
        .bind(job.kind)
        .bind(&job.args)
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(&job.dedupe)
        .bind(&job.idempotency_key)
        .bind(job.delay.as_secs_f64())
}

/// The insert of [`enqueue_unless_held`] (nothing when a key is taken), made only
/// when `guard` (SQL) holds, its values bound from `$n` on: id, kind, args, max
/// attempts, run at, dedupe key, idempotency key, delay in seconds (see [`NewJob`]).
/// For a statement that enqueues beside other writes.
pub(crate) fn insert_sql(n: usize, guard: &str) -> String {
    let p = |i: usize| format!("${}", n + i);
    format!(
        "INSERT INTO jobs (id, kind, args, max_attempts, run_at, dedupe_key, idempotency_key)
         SELECT {id}, {kind}, {args}, {attempts}, COALESCE({run_at}, now() + make_interval(secs => {delay})), {dedupe}, {key}
         -- A key seen taken is not tried: trying waits for a concurrent holder's commit.
         -- Each look is guarded by its key being set, so a job without keys (most) reads
         -- nothing: the subqueries run only when their guard needs them.
         WHERE {guard}
           AND NOT ({dedupe}::text IS NOT NULL AND EXISTS (
               SELECT 1 FROM jobs WHERE kind = {kind} AND dedupe_key = {dedupe} AND state IN ('queued', 'running')))
           AND NOT ({key}::text IS NOT NULL AND EXISTS (
               SELECT 1 FROM jobs WHERE kind = {kind} AND idempotency_key = {key}))
         ON CONFLICT DO NOTHING
         RETURNING id",
        id = p(0),
        kind = p(1),
        args = p(2),
        attempts = p(3),
        run_at = p(4),
        dedupe = p(5),
        key = p(6),
        delay = p(7),
    )
}

async fn holder(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<Option<JobId>> {
    sqlx::query_scalar(
        "SELECT id FROM jobs WHERE kind = $1 AND (
             ($2::text IS NOT NULL AND dedupe_key = $2 AND state IN ('queued', 'running'))
          OR ($3::text IS NOT NULL AND idempotency_key = $3)
          OR id = $4)
         LIMIT 1",
    )
    .bind(job.kind)
    .bind(&job.dedupe)
    .bind(&job.idempotency_key)
    .bind(&job.id)
    .fetch_optional(conn)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: &JobId) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM jobs WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}
