//! The claim request's one write: reserve the oldest idle instance (`idle` →
//! `claiming`, `SKIP LOCKED`), insert its claim job and record the idempotency key,
//! in one statement (one round trip, atomic, nothing a dropped request can leave
//! half-done). A claim that joins the waiting line, within `POOL_MAX_WAITING`, does
//! so under an advisory lock ([`LINE_GATE`]).

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use sqlx::{PgExecutor, PgPool};

use super::NewJob;
use crate::domain::{InstanceId, JobId};
use crate::store::instances::recycle::{on_other_image_sql, pick_idle_sql};

/// What [`reserve_and_enqueue`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// The instance is reserved for the job, which is queued.
    Instance(InstanceId),
    /// No idle instance; the job waits for one (it was asked to).
    Waiting,
    /// No idle instance; nothing was written.
    NoIdle,
    /// No idle instance, and the line is full (`POOL_MAX_WAITING`); nothing was written.
    LineFull,
    /// A concurrent request recorded the same idempotency key first; nothing was written.
    KeyTaken,
}

/// How a claim waits in line when no instance is idle.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    /// How long it waits (its job's deadline).
    pub wait: Duration,
    /// The most claims that may wait at once (`POOL_MAX_WAITING`).
    pub max_waiting: u32,
}

/// What a claim asks for besides its job.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ask<'a> {
    /// `(Idempotency-Key, request hash)`, recorded with the job.
    pub key: Option<(&'a str, &'a str)>,
    /// Wait in line when no instance is idle.
    pub line: Option<Line>,
    /// `POOL_TARGET_IMAGE`: idle instances on the current image are taken first.
    pub target_image: Option<&'a str>,
}

/// The advisory lock a claim holds while it joins the line (`"poolline"`): the count
/// of waiting claims it checks against the cap is read after the lock is taken, in a
/// statement of its own, so it sees every claim that joined before.
pub const LINE_GATE: i64 = 0x706f_6f6c_6c69_6e65;

/// Reserves an idle instance for `job` and enqueues it; with `ask.key`, also records
/// the idempotency key. With `ask.line` and no idle instance, the job is enqueued
/// waiting for one (FIFO, [`bind_waiting`]) until `wait` from now, unless the line is
/// full. The common case is one statement; joining the line takes the [`LINE_GATE`]
/// first, in a transaction, so concurrent claims never wait beyond the cap.
pub async fn reserve_and_enqueue(db: &PgPool, job: &NewJob, ask: Ask<'_>) -> sqlx::Result<Reserved> {
    let at_once = interpret(reserve(db, job, Ask { line: None, ..ask }).await, false)?;
    let Some(line) = ask.line.filter(|_| at_once == Reserved::NoIdle) else { return Ok(at_once) };
    let (job, key) = (job.clone(), ask.key.map(|(k, h)| (k.to_owned(), h.to_owned())));
    let image = ask.target_image.map(str::to_owned);
    let joined = crate::store::transaction(db, move |tx| {
        Box::pin(async move {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LINE_GATE).execute(&mut *tx).await?;
            let key = key.as_ref().map(|(k, h)| (k.as_str(), h.as_str()));
            reserve(&mut *tx, &job, Ask { key, line: Some(line), target_image: image.as_deref() }).await
        })
    })
    .await;
    interpret(joined, true)
}

/// The claim's one statement: the oldest idle instance on the current image (then the
/// oldest on any), reserved for the job; or the job inserted waiting, within the cap.
static RESERVE: LazyLock<Arc<str>> = LazyLock::new(|| {
    format!(
        "WITH picked AS (
             -- An idle instance is the waiting claims' while any wait (first in first out).
             SELECT {} AS id
             WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE waiting AND state = 'queued' AND run_at >= now())
         ), reserved AS (
             UPDATE instances SET status = 'claiming', claim_job_id = $1, status_changed_at = now(), updated_at = now()
             FROM picked WHERE instances.id = picked.id AND instances.status = 'idle'
             RETURNING instances.id
         ), job AS (
             INSERT INTO jobs (id, kind, args, max_attempts, waiting, run_at)
             SELECT $1, $2, $3, $4, NOT EXISTS (SELECT 1 FROM reserved),
                    CASE WHEN EXISTS (SELECT 1 FROM reserved) THEN now()
                         -- From now, not from the transaction's start: joining may wait for the line.
                         ELSE clock_timestamp() + make_interval(secs => $7) END
             WHERE EXISTS (SELECT 1 FROM reserved)
                OR ($7::float8 IS NOT NULL
                    AND (SELECT count(*) FROM jobs WHERE waiting AND state = 'queued') < $8::int8)
             RETURNING id, waiting
         ), keyed AS (
             INSERT INTO idempotency_keys (key, request_hash, job_id)
             SELECT $5, $6, id FROM job WHERE $5::text IS NOT NULL
             RETURNING key
         )
         -- Data-modifying CTEs run whether read or not.
         SELECT (SELECT id FROM reserved), (SELECT waiting FROM job)",
        pick_idle_sql("true", "$9")
    )
    .into()
});

/// Runs [`RESERVE`]: `(reserved instance, job inserted waiting)`.
async fn reserve(
    db: impl PgExecutor<'_>,
    job: &NewJob,
    ask: Ask<'_>,
) -> sqlx::Result<Option<(Option<InstanceId>, Option<bool>)>> {
    sqlx::query_as(sqlx::AssertSqlSafe(Arc::clone(&RESERVE)))
        .bind(&job.id)
        .bind(job.kind)
        .bind(&job.args)
        .bind(job.max_attempts)
        .bind(ask.key.map(|(k, _)| k))
        .bind(ask.key.map(|(_, h)| h))
        .bind(ask.line.map(|l| l.wait.as_secs_f64()))
        .bind(ask.line.map(|l| i64::from(l.max_waiting)))
        .bind(ask.target_image)
        .fetch_optional(db)
        .await
}

/// What the statement's answer means; `in_line`: it was allowed to join the line.
fn interpret(
    answer: sqlx::Result<Option<(Option<InstanceId>, Option<bool>)>>,
    in_line: bool,
) -> sqlx::Result<Reserved> {
    match answer {
        Ok(Some((Some(instance), _))) => Ok(Reserved::Instance(instance)),
        Ok(Some((None, Some(true)))) => Ok(Reserved::Waiting),
        Ok(_) if in_line => Ok(Reserved::LineFull),
        Ok(_) => Ok(Reserved::NoIdle),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("idempotency_keys_pkey") => Ok(Reserved::KeyTaken),
        Err(e) => Err(e),
    }
}

/// The advisory lock one binding pass holds at a time (`"poolbind"`); a pass that
/// finds it taken binds nothing, the holder serves the line in order.
pub const BIND_GATE: i64 = 0x706f_6f6c_6269_6e64;

/// Binds idle instances to waiting claims, oldest claim to the oldest instance on
/// the current image, then to the oldest on any (`target_image` as in [`Ask`]) (FIFO
/// across every web replica: the order is the table's; one pass at a time, see
/// [`BIND_GATE`], or two passes could split the line and serve it out of order), and
/// makes those claims due;
/// fails waiting claims past their deadline (their web process is gone). Returns the
/// bound `(job id, instance id)` pairs. Safe to run from every worker at once.
pub async fn bind_waiting(
    db: impl PgExecutor<'_>,
    target_image: Option<&str>,
) -> sqlx::Result<Vec<(JobId, InstanceId)>> {
    sqlx::query_as(sqlx::AssertSqlSafe(Arc::clone(&BIND))).bind(BIND_GATE).bind(target_image).fetch_all(db).await
}

/// The statement of [`bind_waiting`].
static BIND: LazyLock<Arc<str>> = LazyLock::new(|| {
    format!(
        "WITH gate AS (
             SELECT pg_try_advisory_xact_lock($1) AS open
         ), {}, w AS (
             -- Rows another statement holds are being ended (cancelled, timed out).
             SELECT id, created_at FROM jobs
             WHERE (SELECT open FROM gate) AND waiting AND state = 'queued' AND run_at >= now()
             ORDER BY created_at, id LIMIT 200 FOR UPDATE SKIP LOCKED
         ), i AS (
             SELECT id, created_at, {} AS other_image FROM instances WHERE status = 'idle'
             ORDER BY other_image, created_at, id LIMIT (SELECT count(*) FROM w) FOR UPDATE SKIP LOCKED
         ), pairs AS (
             SELECT wn.id AS job_id, inn.id AS instance_id
             FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM w) wn
             JOIN (SELECT id, row_number() OVER (ORDER BY other_image, created_at, id) AS n FROM i) inn USING (n)
         ), bound AS (
             UPDATE instances SET status = 'claiming', claim_job_id = pairs.job_id,
                                  status_changed_at = now(), updated_at = now()
             FROM pairs WHERE instances.id = pairs.instance_id AND instances.status = 'idle'
             RETURNING instances.id AS instance_id, pairs.job_id
         ), due AS (
             UPDATE jobs SET waiting = false, run_at = now()
             FROM bound WHERE jobs.id = bound.job_id
             RETURNING jobs.id, bound.instance_id
         )
         SELECT id, instance_id FROM due, LATERAL (SELECT pg_notify('pool_jobs_queued', '')) n",
        super::lifecycle::expired_waiting_cte("gate"),
        on_other_image_sql("instances", "$2")
    )
    .into()
});

/// Idle plus provisioning instances, and the claims waiting for one, in one
/// snapshot: a binding pass moves both sides at once (idle → claiming, waiting →
/// bound), and counts read apart can see one side moved and not the other (six
/// claims still waiting beside none of the instances just bound to them).
pub async fn warm_and_waiting(db: impl PgExecutor<'_>) -> sqlx::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM instances WHERE status IN ('idle', 'provisioning')),
                (SELECT count(*) FROM jobs WHERE waiting AND state = 'queued')",
    )
    .fetch_one(db)
    .await
}

/// Claims waiting for an instance.
pub async fn waiting_count(db: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE waiting AND state = 'queued'").fetch_one(db).await
}

/// Whether claims wait that the instances on their way (provisioning, not yet
/// idle) cannot all serve.
pub async fn short_for_waiting(db: impl PgExecutor<'_>) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM jobs WHERE waiting AND state = 'queued')
              > (SELECT count(*) FROM instances WHERE status = 'provisioning')",
    )
    .fetch_one(db)
    .await
}
