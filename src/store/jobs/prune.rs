//! Pruning: finished jobs past their retention (their attempts go with them, by the
//! cascade) and idempotency keys past their 24 h, in batches of bounded size with a
//! pause between them, so no statement holds many rows or holds back vacuum for long,
//! and by one worker at a time (a session advisory lock; the others skip the round).
//! Each statement waits while a claim is in flight (see [`give_way`]).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};

use crate::domain::JobKind;

/// The advisory lock a pruning round holds ("poolprne").
pub const PRUNE_LOCK: i64 = 0x706f_6f6c_7072_6e65;

/// How a pruning round goes.
#[derive(Clone, Copy, Debug)]
pub struct PruneSettings {
    /// Finished jobs older than this are deleted.
    pub retention: Duration,
    /// Rows per statement.
    pub batch: i64,
    /// Between two statements, at least; and at least as long as the last one took,
    /// so pruning keeps at most half of one backend busy, whatever the machine.
    pub pause: Duration,
    /// Kinds a person waits on: while one is due or running, the next statement
    /// waits, for at most one more `pause`.
    pub give_way_to: &'static [JobKind],
}

/// How often a round that gives way looks again: a claim is in flight for a few
/// milliseconds.
const GIVE_WAY_STEP: Duration = Duration::from_millis(2);

/// What a round deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub keys: u64,
    /// Statements that deleted.
    pub batches: u32,
    /// How long its statements waited for claims in flight, in all.
    pub gave_way: Duration,
}

/// One pruning round, unless another worker's round runs (`None`). The lock is held
/// by a connection of the round's own, closed at its end: an error or a crash can
/// never return a pooled connection still holding it.
pub async fn prune_all(db: &PgPool, settings: &PruneSettings) -> sqlx::Result<Option<Pruned>> {
    let mut conn = PgConnection::connect_with(&db.connect_options()).await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(PRUNE_LOCK).fetch_one(&mut conn).await?;
    let pruned = match got {
        true => rounds(&mut conn, settings).await.map(Some),
        false => Ok(None),
    };
    let _ = conn.close().await;
    pruned
}

async fn rounds(conn: &mut PgConnection, settings: &PruneSettings) -> sqlx::Result<Pruned> {
    let mut pruned = Pruned::default();
    pruned.jobs = in_batches(conn, settings, Table::Jobs, &mut pruned).await?;
    pruned.keys = in_batches(conn, settings, Table::Keys, &mut pruned).await?;
    Ok(pruned)
}

/// What a pruning statement deletes from.
#[derive(Clone, Copy)]
enum Table {
    Jobs,
    Keys,
}

/// Deletes from `table` batch after batch, pausing between them, until a batch comes
/// back short: the rows deleted. Counts statements and waits into `round`.
async fn in_batches(
    conn: &mut PgConnection,
    settings: &PruneSettings,
    table: Table,
    round: &mut Pruned,
) -> sqlx::Result<u64> {
    let mut rows = 0;
    let mut from = None;
    loop {
        round.gave_way += give_way(conn, settings).await?;
        let started = Instant::now();
        let n = match table {
            Table::Jobs => {
                let (n, last) = jobs_batch(&mut *conn, settings.retention.as_secs_f64(), settings.batch, from).await?;
                from = last.or(from);
                n
            }
            Table::Keys => keys_batch(&mut *conn, settings.batch).await?,
        };
        rows += n;
        round.batches += 1;
        if n < settings.batch as u64 {
            return Ok(rows);
        }
        tokio::time::sleep(settings.pause.max(started.elapsed())).await;
    }
}

/// Waits while a job of `settings.give_way_to` is due or running, for at most one
/// `pause`. A claim's hops (web, Postgres, worker, instance) share the cores and the
/// WAL with the prune's statements, and its caller waits; the prune has ten minutes.
/// Bounded, so a steady stream of claims slows a round (to half its pace at most)
/// and never stops it, and a claim whose worker hangs holds nothing up for long.
/// Returns how long it waited.
async fn give_way(conn: &mut PgConnection, settings: &PruneSettings) -> sqlx::Result<Duration> {
    let mut waited = Duration::ZERO;
    if settings.give_way_to.is_empty() {
        return Ok(waited);
    }
    while waited < settings.pause && in_flight(&mut *conn, settings.give_way_to).await? {
        let slept = Instant::now();
        tokio::time::sleep(GIVE_WAY_STEP).await;
        waited += slept.elapsed();
    }
    Ok(waited)
}

/// Whether a job of `kinds` runs or is due: two index probes (a claim waiting in line
/// for an instance is neither).
async fn in_flight(conn: &mut PgConnection, kinds: &[JobKind]) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE kind = ANY($1) AND state = 'running')
             OR EXISTS (SELECT 1 FROM jobs WHERE kind = ANY($1) AND state = 'queued' AND NOT waiting
                                             AND run_at <= now())",
    )
    .bind(kinds)
    .fetch_one(conn)
    .await
}

/// Deletes up to `batch` of the oldest finished jobs past `retention_secs`, finished
/// at `from` or later: `(rows, the last one's finish)`.
// `= ANY(ARRAY(...))`: the rows are deleted by primary key, never by a join the
// planner could turn into a scan of the table. `from`, where the batch before ended:
// the index entries of the rows it deleted stay until vacuum, and each batch would
// walk them all again (a thousand pages a batch, more with every batch).
async fn jobs_batch(
    conn: &mut PgConnection,
    retention_secs: f64,
    batch: i64,
    from: Option<DateTime<Utc>>,
) -> sqlx::Result<(u64, Option<DateTime<Utc>>)> {
    let (rows, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM jobs WHERE id = ANY(ARRAY(
                 SELECT id FROM jobs
                 WHERE finished_at < now() - make_interval(secs => $1) AND finished_at >= COALESCE($3, '-infinity')
                   AND state IN ('succeeded', 'failed', 'cancelled')
                 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED))
               AND state IN ('succeeded', 'failed', 'cancelled')
             RETURNING finished_at)
         SELECT count(*), max(finished_at) FROM gone",
    )
    .bind(retention_secs)
    .bind(batch)
    .bind(from)
    .fetch_one(conn)
    .await?;
    Ok((rows as u64, last))
}

/// Deletes up to `batch` of the oldest idempotency keys past 24 h (by their
/// `created_at` index, not a scan).
async fn keys_batch(conn: &mut PgConnection, batch: i64) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM idempotency_keys WHERE key = ANY(ARRAY(
             SELECT key FROM idempotency_keys WHERE created_at < now() - interval '24 hours'
             ORDER BY created_at LIMIT $1))
           AND created_at < now() - interval '24 hours'",
    )
    .bind(batch)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
