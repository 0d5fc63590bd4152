//! The fetch: a worker takes due jobs, marking them running in the same statement.

use std::sync::LazyLock;

use serde_json::Value;
use sqlx::PgExecutor;

use crate::{
    domain::{JobId, JobKind},
    jobs::{Job, claim_and_provision::ClaimAndProvision},
};

/// A job taken by a worker: what its handler needs to run it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Fetched {
    pub id: JobId,
    pub kind: String,
    pub args: Value,
    /// This run's number (1 for the first run; fences its outcome).
    pub attempt: i32,
    /// Runs ever started, including this one.
    pub runs: i32,
    pub cancel_requested: bool,
    /// Seconds from due to started (this run's queue wait).
    pub queue_wait: f64,
    /// A claim's row and its provision note, written by the fetch
    /// (`store::instances::HeldClaim` as JSON); `None` for other kinds, or a claim
    /// that holds no row.
    pub held: Option<Value>,
}

/// The fetch statement: `$1` kinds, `$2` how many of each, `$3` the worker.
// `= ANY(ARRAY(...))`: the taken rows are looked up by primary key; a join would be
// planned as a scan of the whole table. Each kind's rows are read from
// `jobs_fetch_due_idx` (kind, run_at, id), which ends at the first row not yet due, so
// rows scheduled later and finished rows cost nothing (`priority` is never set). The
// paused kinds are read once per statement, not once per kind.
macro_rules! take {
    () => {
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, runs = runs + 1, started_at = now(),
                 finished_at = NULL, worker_id = $3
 WHERE id = ANY(ARRAY(
     SELECT j.id FROM unnest($1::text[], $2::int[]) AS k(kind, n)
     CROSS JOIN LATERAL (
         SELECT id FROM jobs
         WHERE jobs.kind = k.kind AND state = 'queued' AND run_at <= now() AND NOT waiting
         ORDER BY run_at, id
         LIMIT k.n
         FOR UPDATE SKIP LOCKED) j
     WHERE k.kind <> ALL(ARRAY(SELECT kind FROM job_kind_pauses))))
 RETURNING id, kind, args, attempts AS attempt, runs, cancel_requested,
           EXTRACT(EPOCH FROM started_at - run_at)::float8 AS queue_wait"
    };
}
const FETCH: &str = concat!(take!(), ", NULL::jsonb AS held");

/// [`FETCH`] for claims alone: with each claim's row and its provision note, a claim
/// run's first step. Not part of every fetch: the extra reads would cost every other
/// kind's fetch too.
static FETCH_CLAIMS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH taken AS ({}), {}
         SELECT taken.*, held_claims.held FROM taken LEFT JOIN held_claims ON held_claims.job_id = taken.id",
        take!(),
        crate::store::instances::held_claim_ctes("SELECT id FROM taken", "true")
    )
});

/// Takes up to `n` due jobs of each `(kind, n)` for `worker`, marking them running in
/// the same statement. Claims never wait behind other kinds: each kind has its own
/// limit, the caller's free slots for it. Paused kinds are skipped. A fetch of claims
/// alone (a worker woken for claims) also reads and notes their rows.
pub async fn fetch(db: impl PgExecutor<'_>, worker: &str, wanted: &[(JobKind, i32)]) -> sqlx::Result<Vec<Fetched>> {
    let (kinds, limits): (Vec<JobKind>, Vec<i32>) = wanted.iter().filter(|(_, n)| *n > 0).copied().unzip();
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let claims_alone = kinds.iter().all(|kind| *kind == ClaimAndProvision::KIND);
    let sql = if claims_alone { FETCH_CLAIMS.as_str() } else { FETCH };
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&kinds).bind(&limits).bind(worker).fetch_all(db).await
}

/// Shared buffers (hit + read) one fetch of 4 jobs of each of `kinds` touches, read
/// with `EXPLAIN (ANALYZE, BUFFERS)` and rolled back, so it takes nothing (the
/// `scale` benchmark and the tests of its cost).
pub async fn fetch_cost(db: &sqlx::PgPool, kinds: &[JobKind]) -> sqlx::Result<i64> {
    let limits = vec![4i32; kinds.len()];
    let mut tx = db.begin().await?;
    let sql = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {FETCH}");
    let plan: Value =
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(kinds).bind(&limits).bind("").fetch_one(&mut *tx).await?;
    tx.rollback().await?;
    let blocks = |name: &str| plan[0]["Plan"][name].as_i64().unwrap_or_default();
    Ok(blocks("Shared Hit Blocks") + blocks("Shared Read Blocks"))
}
