//! Costs that must not grow with the tables: a fetch reads a few index pages
//! whatever the finished and future rows, a claim's steps read its own instance
//! whatever the claims served before, and pruning deletes in bounded batches, one
//! worker at a time, with the attempts and idempotency keys it owns.

use std::time::Duration;

use pool::store::jobs::{self, lifecycle};
use sqlx::PgPool;

use crate::helpers::TestDb;

/// Finished rows past a 1 h retention (every other one failed, with its attempt),
/// and queued rows of every kind due tomorrow.
async fn fill(db: &PgPool, finished: i64, future: i64) {
    let kinds = pool::jobs::KINDS;
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, state, attempts, max_attempts, runs, started_at, finished_at)
         SELECT 'done-' || lpad(g::text, 7, '0'), ($2::text[])[1 + g % 10], '{}',
                CASE WHEN g % 2 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 1, 1,
                now() - interval '2 hours', now() - interval '2 hours' + g * interval '1 ms'
         FROM generate_series(1, $1::bigint) g",
    )
    .bind(finished)
    .bind(kinds)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO job_attempts (job_id, run, outcome, worker_id, started_at)
         SELECT id, 1, 'failed', 'w', started_at FROM jobs WHERE state = 'failed'",
    )
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, max_attempts, run_at)
         SELECT 'later-' || lpad(g::text, 7, '0'), ($2::text[])[1 + g % 10], '{}', 5, now() + interval '1 day'
         FROM generate_series(1, $1::bigint) g",
    )
    .bind(future)
    .bind(kinds)
    .execute(db)
    .await
    .unwrap();
    sqlx::query("VACUUM ANALYZE jobs").execute(db).await.unwrap();
}

#[tokio::test]
async fn a_fetch_reads_a_few_pages_whatever_the_finished_and_future_rows() {
    let db = TestDb::new().await;
    fill(&db.pool, 20_000, 20_000).await;
    let one_kind = lifecycle::fetch_cost(&db.pool, &[pool::jobs::KINDS[1]]).await.unwrap();
    assert!(one_kind <= 10, "a fetch of one kind read {one_kind} buffers");
    let every_kind = lifecycle::fetch_cost(&db.pool, pool::jobs::KINDS).await.unwrap();
    assert!(every_kind <= 10 * 4, "a fetch of every kind read {every_kind} buffers");
    // And it still takes what is due, oldest first.
    let mut due = jobs::NewJob::new(crate::helpers::kind("noop"), serde_json::json!({}), 1);
    due.id = "due-1".into();
    let mut conn = db.pool.acquire().await.unwrap();
    jobs::enqueue(&mut conn, &due).await.unwrap();
    let taken = lifecycle::fetch(&db.pool, "w", &[(crate::helpers::kind("noop"), 4)]).await.unwrap();
    assert_eq!(taken.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["due-1"]);
}

#[tokio::test]
async fn pruning_deletes_in_batches_with_attempts_and_old_keys_one_worker_at_a_time() {
    let db = TestDb::new().await;
    fill(&db.pool, 2_500, 10).await;
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, job_id, created_at)
         SELECT 'k' || g, 'h', 'later-0000001', now() - interval '25 hours' FROM generate_series(1, 1500) g
         UNION ALL SELECT 'fresh', 'h', 'later-0000001', now()",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let retention = Duration::from_secs(3600);
    let settings = jobs::PruneSettings { retention, batch: 1000, pause: Duration::ZERO, give_way_to: &[] };
    // Another worker prunes: this one leaves it to them.
    let mut other = db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(jobs::PRUNE_LOCK).execute(&mut *other).await.unwrap();
    assert_eq!(jobs::prune_all(&db.pool, &settings).await.unwrap(), None);
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(jobs::PRUNE_LOCK).execute(&mut *other).await.unwrap();
    let pruned = jobs::prune_all(&db.pool, &settings).await.unwrap().expect("the lock was free");
    assert_eq!((pruned.jobs, pruned.keys), (2_500, 1_500));
    assert!(pruned.batches >= 3 + 2, "{pruned:?}: in batches of at most 1,000");
    let pool = &db.pool;
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap() };
    assert_eq!(count("SELECT count(*) FROM jobs").await, 10, "the queued rows stay");
    assert_eq!(count("SELECT count(*) FROM job_attempts").await, 0, "attempts go with their jobs");
    assert_eq!(count("SELECT count(*) FROM idempotency_keys").await, 1, "the fresh key stays");
}

/// A connection keeps the plan it made after a few runs of a statement. On a new
/// database that plan was made for a near-empty table; the fetch must still find the
/// rows it takes by index once the table holds thousands of rows (before any
/// `ANALYZE` made the plan be redone), not by reading the whole table each time.
#[tokio::test]
async fn a_fetch_planned_on_a_new_table_still_reads_by_index_once_it_grew() {
    let db = TestDb::new().await;
    let url = secrecy::SecretString::from(db.url.clone());
    let worker = pool::db::connect_as(&url, 1, pool::db::PoolKind::WORKER, pool::db::ACQUIRE_TIMEOUT).await.unwrap();
    let noop = |id: String| jobs::NewJob {
        id: id.into(),
        ..jobs::NewJob::new(crate::helpers::kind("noop"), serde_json::json!({}), 1)
    };
    for i in 0..8 {
        let mut conn = worker.acquire().await.unwrap();
        jobs::enqueue(&mut conn, &noop(format!("early-{i}"))).await.unwrap();
        drop(conn);
        assert_eq!(lifecycle::fetch(&worker, "w", &[(crate::helpers::kind("noop"), 1)]).await.unwrap().len(), 1);
    }
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, state, attempts, max_attempts, runs, started_at, finished_at)
         SELECT 'done-' || g, 'noop', '{}', 'succeeded', 1, 1, 1, now(), now() FROM generate_series(1, 20000) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut conn = worker.acquire().await.unwrap();
    jobs::enqueue(&mut conn, &noop("late".into())).await.unwrap();
    let name: String = sqlx::query_scalar(
        "SELECT name FROM pg_prepared_statements WHERE statement LIKE 'UPDATE jobs SET state = ''running''%'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}('{{noop}}', '{{4}}', 'w')");
    let plan: serde_json::Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain)).fetch_one(&mut *conn).await.unwrap();
    let buffers = plan[0]["Plan"]["Shared Hit Blocks"].as_i64().unwrap()
        + plan[0]["Plan"]["Shared Read Blocks"].as_i64().unwrap();
    assert!(buffers <= 60, "the fetch read {buffers} buffers: {plan}");
}

/// The worker's fetch connection keeps its plan when the table grows under it. A
/// connection otherwise weighs its kept plan against the plans it made for values
/// while the table was small, and plans anew on each fetch long after it grew.
#[tokio::test]
async fn the_fetch_connection_keeps_its_plan_when_the_table_grows_under_it() {
    let db = TestDb::new().await;
    let url = secrecy::SecretString::from(db.url.clone());
    let worker = pool::db::connect_as(&url, 1, pool::db::PoolKind::WORKER, pool::db::ACQUIRE_TIMEOUT).await.unwrap();
    let fetching = pool::db::keeping_plans(&worker, pool::db::ACQUIRE_TIMEOUT);
    let claims = [(crate::helpers::kind("claim_and_provision"), 1)];
    for _ in 0..6 {
        lifecycle::fetch(&fetching, "w", &claims).await.unwrap();
        lifecycle::fetch(&worker, "w", &claims).await.unwrap();
    }
    fill(&db.pool, 20_000, 20_000).await;
    for _ in 0..10 {
        assert!(lifecycle::fetch(&fetching, "w", &claims).await.unwrap().is_empty());
        lifecycle::fetch(&worker, "w", &claims).await.unwrap();
    }
    let plans = |pool: PgPool| async move {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements
             WHERE statement LIKE '%UPDATE jobs SET state = ''running''%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(plans(fetching.clone()).await, (16, 0), "(generic, custom) plans of the fetch");
}

/// An enqueue without keys (most jobs) reads no job rows, whatever the table holds and
/// whichever plan the connection keeps: the key checks are guarded by their keys being
/// set (unguarded, a kept generic plan read every row of the kind on each insert, and
/// queue-latency fell to 540 jobs/s at 1,000/s).
#[tokio::test]
async fn an_enqueue_without_keys_reads_no_job_rows_under_a_generic_plan() {
    let db = TestDb::new().await;
    // The plan is made while the table is small (as autovacuum's first ANALYZE of a
    // new table sees it), and kept as it grows.
    fill(&db.pool, 20, 0).await;
    sqlx::query("ANALYZE jobs").execute(&db.pool).await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan").execute(&mut *tx).await.unwrap();
    jobs::enqueue(&mut tx, &jobs::NewJob::new(crate::helpers::kind("noop"), serde_json::json!({}), 1)).await.unwrap();
    sqlx::query("DELETE FROM jobs WHERE id LIKE 'done-%'").execute(&db.pool).await.unwrap();
    fill(&db.pool, 20_000, 0).await;
    for _ in 0..10 {
        jobs::enqueue(&mut tx, &jobs::NewJob::new(crate::helpers::kind("noop"), serde_json::json!({}), 1))
            .await
            .unwrap();
    }
    let (fetched, read): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(idx_tup_fetch, 0), COALESCE(seq_tup_read, 0) FROM pg_stat_xact_user_tables WHERE relname = 'jobs'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert!(fetched + read < 100, "10 enqueues read {fetched} rows by index and {read} by scan");
    // A key that is set is still looked up, and a taken one is not inserted twice.
    let keyed = jobs::NewJob::new(crate::helpers::kind("replenish"), serde_json::json!({}), 1).dedupe("singleton");
    assert!(jobs::enqueue_unless_held(&mut *tx, &keyed).await.unwrap());
    assert!(!jobs::enqueue_unless_held(&mut *tx, &keyed).await.unwrap());
}

/// Whatever deletes jobs (this release's pruning, or an earlier release's, which
/// deletes with a plain `DELETE`) takes their attempts along, and only theirs.
#[tokio::test]
async fn a_plain_delete_of_jobs_takes_their_attempts_and_no_others() {
    let db = TestDb::new().await;
    fill(&db.pool, 6, 0).await;
    let deleted = sqlx::query("DELETE FROM jobs WHERE id IN ('done-0000002', 'done-0000003')")
        .execute(&db.pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 2);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT job_id FROM job_attempts ORDER BY job_id").fetch_all(&db.pool).await.unwrap();
    assert_eq!(left, ["done-0000004", "done-0000006"], "the failed jobs kept have their attempts");
}

/// A claim's fetch and completion look its instance up by id, whatever the claims
/// served before: neither the bound rows nor the index entries their earlier statuses
/// left behind are read (each was once walked, growing with every claim served).
#[tokio::test]
async fn a_claims_steps_read_its_own_instance_whatever_the_claims_served() {
    let db = TestDb::new().await;
    for status in ["idle", "claiming", "claimed"] {
        sqlx::query(
            "INSERT INTO instances (id, status, url, claim_job_id)
             SELECT 'served' || lpad(g::text, 6, '0'), $1, 'http://127.0.0.1:1/x',
                    CASE WHEN $1 <> 'idle' THEN 'a-claim-' || g END
             FROM generate_series(1, 2000) g
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, claim_job_id = EXCLUDED.claim_job_id",
        )
        .bind(status)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    sqlx::query("ANALYZE instances").execute(&db.pool).await.unwrap();
    let (instance, job) = crate::fixtures::reserved_claim(&db.pool, "inst00000001", "claim00000001").await;

    // A connection of its own: a backend's counts include its earlier statements'.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    // The plan a worker's connection keeps after a few runs (as the table grows).
    sqlx::query("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
    let fetched = lifecycle::fetch(&mut *tx, "w", &[(crate::helpers::kind("claim_and_provision"), 1)]).await.unwrap();
    assert!(fetched[0].held.is_some(), "the fetch read the claim's row");
    let lease = lifecycle::Lease { job_id: &job, attempt: 1, worker: "w" };
    let done = crate::fixtures::complete_claim(&mut *tx, &instance, lease).await;
    assert!(matches!(done, pool::store::instances::Completed::Done(_)), "the completion bound the row: {done:?}");
    let read: i64 = sqlx::query_scalar(
        "SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid))::int8
                + (SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_xact_user_tables WHERE relname = 'instances')
         FROM pg_index WHERE indrelid = 'instances'::regclass",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert!(read < 40, "a claim's fetch and completion read {read} instance entries");
}
