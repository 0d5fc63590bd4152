//! Upgrading a database written by the previous release (jobs in apalis-postgres's
//! table `apalis.jobs`): `pool migrate` keeps every job, in Pool's states; the
//! workers run what was waiting, and move what the previous release still enqueues
//! during a rolling deploy.

use std::time::Duration;

use pool::store::JobState;
use sqlx::migrate::Migrator;

use crate::{
    helpers::{TestDb, base_env, fast_sim, pool_command, spawn_sim},
    stack::{Stack, eventually},
};

/// The first migration of the release that introduced Pool's own job table.
const JOB_TABLE: i64 = 20261130000001;

/// `(id, job_type, status, attempts, max_attempts, last_result, metadata, lock_by)`.
type Row =
    (&'static str, &'static str, &'static str, i32, i32, Option<&'static str>, &'static str, Option<&'static str>);

const ROWS: [Row; 9] = [
    ("01JAAAAAAAAAAAAAAAAAAAAAA1", "noop", "Pending", 0, 6, None, "", None),
    ("01JAAAAAAAAAAAAAAAAAAAAAA2", "noop", "Queued", 0, 6, None, "", Some("old-worker")),
    ("01JAAAAAAAAAAAAAAAAAAAAAA3", "noop", "Running", 1, 6, None, "", Some("old-worker")),
    ("01JAAAAAAAAAAAAAAAAAAAAAA4", "noop", "Failed", 1, 6, Some(r#"{"Err": "flaky"}"#), "", None),
    ("01JAAAAAAAAAAAAAAAAAAAAAA5", "noop", "Failed", 6, 6, Some(r#"{"Err": "boom"}"#), "", None),
    ("01JAAAAAAAAAAAAAAAAAAAAAA6", "noop", "Done", 1, 6, Some(r#"{"Ok": {"x": 1}}"#), "", None),
    (
        "01JAAAAAAAAAAAAAAAAAAAAAA7",
        "noop",
        "Killed",
        0,
        6,
        Some(r#"{"Err": "cancelled by operator"}"#),
        "cancelled=>true",
        None,
    ),
    ("01JAAAAAAAAAAAAAAAAAAAAAA8", "noop", "Killed", 1, 6, Some(r#"{"Err": "HTTP 400"}"#), "", None),
    ("01JAAAAAAAAAAAAAAAAAAAAAA9", "reconcile", "Pending", 0, 6, None, "dedupe=>singleton", None),
];

/// The previous release's schema and rows: apalis-postgres's migrations, then
/// Pool's migrations before [`JOB_TABLE`], then jobs in every state.
async fn previous_release(db: &TestDb) {
    let apalis = include_str!("../fixtures/apalis-postgres-1.0.0.sql");
    sqlx::raw_sql(sqlx::AssertSqlSafe(apalis)).execute(&db.pool).await.expect("apalis schema");
    let old: Vec<_> = pool::db::MIGRATOR.iter().filter(|m| m.version < JOB_TABLE).cloned().collect();
    Migrator::with_migrations(old).run(&db.pool).await.expect("previous migrations");
    sqlx::query("INSERT INTO apalis.workers (id, worker_type, storage_name) VALUES ('old-worker', 'noop', 'pg')")
        .execute(&db.pool)
        .await
        .unwrap();
    for (id, kind, status, attempts, max, result, metadata, lock_by) in ROWS {
        sqlx::query(
            "INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, last_result,
                                      metadata, lock_by, lock_at, done_at)
             VALUES ($1, $2, convert_to($3, 'UTF8'), $4, $5, $6, now() - interval '1 minute', $7::jsonb,
                     $8::hstore, $9, CASE WHEN $9 IS NULL THEN NULL ELSE now() END,
                     CASE WHEN $4 IN ('Done', 'Killed') OR ($4 = 'Failed' AND $5 >= $6) THEN now() END)",
        )
        .bind(id)
        .bind(kind)
        .bind("{}")
        .bind(status)
        .bind(attempts)
        .bind(max)
        .bind(result)
        .bind(metadata)
        .bind(lock_by)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("row {id}: {e}"));
    }
}

/// `(id, state, attempts, error, result)` of a row in `jobs`.
type Moved = (String, String, i32, Option<String>, Option<serde_json::Value>);

#[tokio::test]
async fn upgrade_keeps_every_job_and_runs_the_waiting_ones() {
    let db = TestDb::empty().await;
    previous_release(&db).await;
    let env = base_env(&db.url, "http://127.0.0.1:1");
    let output = pool_command(&["migrate"], &env).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let states: Vec<Moved> = sqlx::query_as("SELECT id, state, attempts, error, result FROM jobs ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let expected = [
        ("queued", 0),
        ("queued", 0),
        ("queued", 1),
        ("queued", 1),
        ("failed", 6),
        ("succeeded", 1),
        ("cancelled", 0),
        ("failed", 1),
        ("queued", 0),
    ];
    let got: Vec<(&str, i32)> = states.iter().map(|(_, s, a, _, _)| (s.as_str(), *a)).collect();
    assert_eq!(got, expected, "{states:#?}");
    assert_eq!(states[4].3.as_deref(), Some("boom"));
    assert_eq!(states[5].4, Some(serde_json::json!({"x": 1})));
    let dedupe: Option<String> =
        sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE kind = 'reconcile'").fetch_one(&db.pool).await.unwrap();
    assert_eq!(dedupe.as_deref(), Some("singleton"));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs").fetch_one(&db.pool).await.unwrap();
    assert_eq!(left, 0, "every row moved");

    // The previous release's web still enqueues there during the deploy.
    sqlx::query(
        "INSERT INTO apalis.jobs (id, job_type, job, status, max_attempts, metadata)
         VALUES ('01JAAAAAAAAAAAAAAAAAAAAAB1', 'noop', convert_to('{}', 'UTF8'), 'Pending', 6, ''::hstore)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let sim = spawn_sim(fast_sim()).await;
    let stack = Stack::start_on(db, sim, 1, &[("RECONCILE_SCHEDULE", "0 0 0 1 1 *")]).await;
    let moved = eventually(Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = '01JAAAAAAAAAAAAAAAAAAAAAB1'")
            .fetch_one(&stack.db.pool)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    assert!(moved.is_some(), "a worker moved the row the previous release enqueued");
    for id in [ROWS[0].0, ROWS[1].0, ROWS[2].0, ROWS[3].0, ROWS[8].0, "01JAAAAAAAAAAAAAAAAAAAAAB1"] {
        let job = stack.wait_job(id, Duration::from_secs(30)).await;
        assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    }
}
