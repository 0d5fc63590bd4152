//! Pool's view of the job table `apalis.jobs`: enqueue inside the caller's
//! transaction, the job document, operator actions, and how a handler's outcome is
//! written. Outcomes are written by Pool (not by apalis's ack) so that retries are
//! durable `Pending` rows with a later `run_at`; every finishing write is a
//! compare-and-set on `lock_by`, so a worker that lost its job cannot overwrite it.

mod admin;
mod idempotency;

pub use admin::{ActionError, ListQuery, cancel, list, prune, retry, totals, totals_by_kind};
pub use idempotency::{idempotent_job, remember_idempotency_key};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};

/// A job to insert.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// A ULID (apalis fetches break on anything else).
    pub id: String,
    pub kind: &'static str,
    pub args: Value,
    pub max_attempts: i32,
    /// Earliest start; `None` is now.
    pub run_at: Option<DateTime<Utc>>,
    /// At most one queued-or-running job per `(kind, dedupe)`.
    pub dedupe: Option<String>,
    /// At most one job ever per `(kind, key)` (cron ticks).
    pub idempotency_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` with a fresh id.
    pub fn new(kind: &'static str, args: Value, max_attempts: u32) -> Self {
        Self {
            id: next_job_id(),
            kind,
            args,
            max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
            run_at: None,
            dedupe: None,
            idempotency_key: None,
        }
    }

    /// Makes this job a singleton while queued or running.
    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe = Some(key.into());
        self
    }
}

/// A fresh job id. Ids from one process increase strictly, even within the same
/// millisecond, so "newest first" (ordering by id) is exact for one producer.
fn next_job_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    generator.generate().unwrap_or_else(|_| ulid::Ulid::generate()).to_string()
}

/// One row of `apalis.jobs`, as Pool reads it.
#[derive(Clone, Debug, FromRow)]
pub struct JobRow {
    pub id: String,
    pub job_type: String,
    pub job: Vec<u8>,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_result: Option<Value>,
    pub lock_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub cancelled: bool,
}

/// The client-facing status of a job (SPEC §3.2).
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

impl JobRow {
    /// Maps apalis's states onto Pool's. A `Failed` row below its attempt limit is
    /// one apalis would fetch again, so it counts as queued.
    pub fn state(&self) -> JobState {
        match self.status.as_str() {
            "Running" => JobState::Running,
            "Done" => JobState::Succeeded,
            "Failed" if self.attempts < self.max_attempts => JobState::Queued,
            "Failed" => JobState::Failed,
            "Killed" if self.cancelled => JobState::Cancelled,
            "Killed" => JobState::Failed,
            _ => JobState::Queued,
        }
    }

    /// The arguments as JSON (stored as JSON bytes by apalis's codec).
    pub fn args(&self) -> Value {
        serde_json::from_slice(&self.job).unwrap_or(Value::Null)
    }

    pub fn result(&self) -> Option<Value> {
        self.last_result.as_ref()?.get("Ok").cloned()
    }

    pub fn error(&self) -> Option<String> {
        let err = self.last_result.as_ref()?.get("Err")?;
        Some(err.as_str().map_or_else(|| err.to_string(), str::to_owned))
    }

    /// Creation time, from the ULID (the table has no column for it).
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        let ulid = ulid::Ulid::from_string(&self.id).ok()?;
        DateTime::from_timestamp_millis(i64::try_from(ulid.timestamp_ms()).ok()?)
    }
}

pub(super) const COLUMNS: &str = "id, job_type, job, status, attempts, max_attempts, run_at, last_result, lock_at, done_at, \
     COALESCE(metadata ? 'cancelled', false) AS cancelled";

/// Pool's state of a row in SQL, mirroring [`JobRow::state`].
pub(super) const STATE_SQL: &str = "CASE
     WHEN status = 'Running' THEN 'running'
     WHEN status = 'Done' THEN 'succeeded'
     WHEN status = 'Failed' AND attempts < max_attempts THEN 'queued'
     WHEN status = 'Failed' THEN 'failed'
     WHEN status = 'Killed' AND COALESCE(metadata ? 'cancelled', false) THEN 'cancelled'
     WHEN status = 'Killed' THEN 'failed'
     ELSE 'queued' END";

/// What a handler run should do, decided at its start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Run,
    /// An operator asked it to stop before it started.
    Cancelled,
    /// This worker no longer holds the job (cancelled or re-queued meanwhile).
    NotOurs,
}

/// Marks the job running (so `startedAt` is the real start) if `worker` holds it.
pub async fn start(db: impl PgExecutor<'_>, id: &str, worker: &str) -> sqlx::Result<Start> {
    let cancel: Option<bool> = sqlx::query_scalar(
        "UPDATE apalis.jobs SET status = 'Running', lock_at = now()
         WHERE id = $1 AND lock_by = $2 AND status IN ('Queued', 'Running')
         RETURNING COALESCE(metadata ? 'cancel_requested', false)",
    )
    .bind(id)
    .bind(worker)
    .fetch_optional(db)
    .await?;
    Ok(match cancel {
        None => Start::NotOurs,
        Some(true) => Start::Cancelled,
        Some(false) => Start::Run,
    })
}

/// Whether an operator asked a running job to stop (checked at safe points).
pub async fn cancel_requested(db: impl PgExecutor<'_>, id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT COALESCE(metadata ? 'cancel_requested', false) FROM apalis.jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
        .map(|v| v.unwrap_or(true))
}

/// Whether [`enqueue`] inserted the job or found the one that already holds its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    New(String),
    Existing(String),
}

impl Enqueued {
    pub fn id(&self) -> &str {
        match self {
            Self::New(id) | Self::Existing(id) => id,
        }
    }
}

/// Inserts a job on `conn` (pass a transaction to enqueue atomically with a row
/// change). A job whose dedupe or idempotency key is taken is not inserted; the
/// holder's id comes back instead.
pub async fn enqueue(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<Enqueued> {
    let bytes = serde_json::to_vec(&job.args).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    for _ in 0..3 {
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
             VALUES ($1, $2, $3, 'Pending', 0, $4, COALESCE($5, now()), 0,
                     CASE WHEN $6::text IS NULL THEN ''::hstore ELSE hstore('dedupe', $6::text) END, $7)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(&job.id)
        .bind(job.kind)
        .bind(&bytes)
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(&job.dedupe)
        .bind(&job.idempotency_key)
        .fetch_optional(&mut *conn)
        .await?;
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

async fn holder(conn: &mut PgConnection, job: &NewJob) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT id FROM apalis.jobs WHERE job_type = $1 AND (
             ($2::text IS NOT NULL AND metadata -> 'dedupe' = $2 AND status IN ('Pending', 'Queued', 'Running'))
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

pub async fn get(db: impl PgExecutor<'_>, id: &str) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM apalis.jobs WHERE id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// How a handler run ended, as written by [`finish`].
#[derive(Clone, Debug)]
pub enum Outcome {
    Succeeded(Value),
    /// Stopped at a safe point because an operator cancelled it.
    Cancelled,
    /// Run again no earlier than `delay_ms` from now, unless out of attempts.
    Retryable {
        error: String,
        delay_ms: i64,
    },
    /// Cannot succeed by repeating.
    Permanent(String),
}

/// Writes a handler's outcome if `worker` still holds the job; false when it does not
/// (the job was re-enqueued as an orphan or cancelled meanwhile). Whether a retryable
/// failure is retried or final is decided here, against the row's own attempt count.
pub async fn finish(db: impl PgExecutor<'_>, id: &str, worker: &str, outcome: &Outcome) -> sqlx::Result<bool> {
    let (kind, result, delay_ms) = match outcome {
        Outcome::Succeeded(v) => ("ok", serde_json::json!({ "Ok": v }), 0),
        Outcome::Retryable { error, delay_ms } => ("retry", serde_json::json!({ "Err": error }), *delay_ms),
        Outcome::Permanent(e) => ("permanent", serde_json::json!({ "Err": e }), 0),
        Outcome::Cancelled => ("cancelled", serde_json::json!({ "Err": "cancelled by operator" }), 0),
    };
    let done = sqlx::query(
        "WITH next AS (
             SELECT id, CASE $3
                 WHEN 'ok' THEN 'Done'
                 WHEN 'permanent' THEN 'Killed'
                 WHEN 'cancelled' THEN 'Killed'
                 ELSE CASE WHEN attempts + 1 >= max_attempts THEN 'Failed' ELSE 'Pending' END
             END AS status
             FROM apalis.jobs WHERE id = $1 AND lock_by = $2 AND status IN ('Queued', 'Running')
             FOR UPDATE
         )
         UPDATE apalis.jobs j SET
             status = next.status, attempts = j.attempts + 1, last_result = $4, lock_by = NULL,
             run_at = CASE WHEN next.status = 'Pending' THEN now() + make_interval(secs => $5::float8 / 1000) ELSE j.run_at END,
             done_at = CASE WHEN next.status = 'Pending' THEN NULL ELSE now() END,
             metadata = CASE WHEN $3 = 'cancelled' THEN j.metadata || hstore('cancelled', 'true') ELSE j.metadata END
         FROM next WHERE j.id = next.id",
    )
    .bind(id)
    .bind(worker)
    .bind(kind)
    .bind(result)
    .bind(delay_ms as f64)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
