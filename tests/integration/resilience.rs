//! Operations around the jobs: a database outage, the `pool enrich` command, pruning.

use std::time::Duration;

use pool::store::JobState;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};

use crate::{
    helpers::{SHORT_LEASE, TestDb, admin_url, fast_sim, pool_command},
    stack::Stack,
};

pub async fn set_connections_allowed(db: &str, allowed: bool) {
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    let sql = format!(r#"ALTER DATABASE "{db}" ALLOW_CONNECTIONS {allowed}"#);
    admin.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    if !allowed {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(db)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// An outage longer than the pools' acquire timeout (1 s here, 10 s by default) and
/// the rescue window: fetches, outcomes and heartbeats fail meanwhile; the worker must
/// carry on afterwards, not die or hang.
///
/// The replenish is posted until the web answers it, and exactly once: an answer of
/// 200 (the worker finished the job before the web read it back) is an answer too,
/// and posting again would enqueue a second `{"count": 2}`.
#[tokio::test]
async fn worker_keeps_working_after_a_database_outage() {
    let acquire = Duration::from_secs(1);
    let env = [("DATABASE_ACQUIRE_TIMEOUT_MS", "1000"), SHORT_LEASE[0], SHORT_LEASE[1]];
    let stack = Stack::start(fast_sim(), 1, &env).await;
    stack.wait_for_workers(1).await;
    stack.db.pool.close().await;
    set_connections_allowed(&stack.db.name, false).await;
    let during = stack.http.get(stack.url("/readyz")).send().await.unwrap().status();
    tokio::time::sleep(acquire * 4).await;
    set_connections_allowed(&stack.db.name, true).await;
    assert_eq!(during, 503, "readyz reports the outage");

    let job = post_once_when_back(&stack, json!({"count": 2})).await;
    let done = stack.wait_job(&job.id, Duration::from_secs(45)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    stack.wait_for_counts("2 idle after the outage", Duration::from_secs(45), |c| c["idle"] == 2).await;
}

/// Posts a replenish with `body` until the web, back from an outage, takes it
/// (200 or 202); an answer of 503 may come after the job was written, so a retry
/// first looks for it. Panics on any other answer.
async fn post_once_when_back(stack: &Stack, body: Value) -> pool::queue::JobDoc {
    let db = sqlx::PgPool::connect(&stack.db.url).await.unwrap();
    for _ in 0..50 {
        let r = stack.post("/api/pool/replenish", body.clone(), 0).await;
        match r.status().as_u16() {
            200 | 202 => return r.json().await.unwrap(),
            503 => {}
            other => panic!("replenish answered {other}: {}", r.text().await.unwrap_or_default()),
        }
        let written: Option<String> = sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'replenish' AND args = $1")
            .bind(&body)
            .fetch_optional(&db)
            .await
            .unwrap();
        if let Some(id) = written {
            return stack.wait_job(&id, Duration::from_secs(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the web did not take the replenish after the outage");
}

#[tokio::test]
async fn enrich_command_backfills_and_reports_counts() {
    // No reconcile: it would record the provider's view itself before enrich runs.
    let stack = Stack::start(fast_sim(), 1, &[("POOL_MIN_IDLE", "2"), ("RECONCILE_SCHEDULE", "0 0 0 1 1 *")]).await;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2).await;
    sqlx::query("UPDATE instances SET service_id = NULL, url = NULL").execute(&stack.db.pool).await.unwrap();

    let dry = pool_command(&["enrich", "--dry-run"], &stack.env).output().await.unwrap();
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let report: Value = serde_json::from_slice(&dry.stdout).expect("job document on stdout");
    assert_eq!(report["result"]["enriched"], 2, "{report}");
    let untouched: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE service_id IS NULL")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(untouched, 2, "dry run writes nothing");

    let real = pool_command(&["enrich"], &stack.env).output().await.unwrap();
    assert!(real.status.success(), "{}", String::from_utf8_lossy(&real.stderr));
    let filled: i64 =
        sqlx::query_scalar("SELECT count(*) FROM instances WHERE service_id IS NOT NULL AND url IS NOT NULL")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(filled, 2);
}

fn prune_settings() -> pool::store::jobs::PruneSettings {
    let retention = Duration::from_secs(72 * 3600);
    pool::store::jobs::PruneSettings { retention, batch: 100, pause: Duration::ZERO, give_way_to: &[] }
}

#[tokio::test]
async fn prune_deletes_only_old_finished_jobs() {
    let db = TestDb::new().await;
    for (id, status, age_hours) in [
        ("01ARZ3NDEKTSV4RRFFQ69G5FA1", "succeeded", 100),
        ("01ARZ3NDEKTSV4RRFFQ69G5FA2", "succeeded", 1),
        ("01ARZ3NDEKTSV4RRFFQ69G5FA3", "queued", 100),
    ] {
        sqlx::query("INSERT INTO jobs (id, kind, args, state, max_attempts, finished_at) VALUES ($1, 'reconcile', '{}', $2, 1, CASE WHEN $2 = 'queued' THEN NULL ELSE now() - make_interval(hours => $3) END)")
            .bind(id).bind(status).bind(age_hours).execute(&db.pool).await.unwrap();
    }
    let pruned = pool::store::jobs::prune_all(&db.pool, &prune_settings()).await.unwrap().unwrap();
    assert_eq!(pruned.jobs, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY id").fetch_all(&db.pool).await.unwrap();
    assert_eq!(left, ["01ARZ3NDEKTSV4RRFFQ69G5FA2", "01ARZ3NDEKTSV4RRFFQ69G5FA3"]);
}

#[tokio::test]
async fn expired_idempotency_keys_are_pruned() {
    let db = TestDb::new().await;
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, job_id, created_at)
         VALUES ('old', 'h', 'j1', now() - interval '25 hours'), ('fresh', 'h', 'j2', now() - interval '1 hour')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let pruned = pool::store::jobs::prune_all(&db.pool, &prune_settings()).await.unwrap().unwrap();
    assert_eq!(pruned.keys, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys").fetch_all(&db.pool).await.unwrap();
    assert_eq!(left, ["fresh"]);
}

/// 429 with `Retry-After` is retried after the hinted delay, a bounded number of
/// times: no hot loop, and the job ends `failed` with the upstream's message.
#[tokio::test]
async fn rate_limited_upstream_is_retried_after_its_hint_without_a_hot_loop() {
    let sim =
        pool::sim::SimConfig { rate_limit_rate: 1.0, retry_after_secs: 1, rate_limits_as_429: true, ..fast_sim() };
    let stack = Stack::start(
        sim,
        1,
        &[("JOB_MAX_ATTEMPTS", "3"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *"), ("RECONCILE_SCHEDULE", "0 0 0 1 1 *")],
    )
    .await;
    let replenish: pool::queue::JobDoc =
        stack.post("/api/pool/replenish", json!({"count": 1}), 10).await.json().await.unwrap();
    assert_eq!(replenish.status, JobState::Succeeded);
    let id: String = sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'provision_instance'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    let job = stack.wait_job(&id, Duration::from_secs(30)).await;
    assert_eq!((job.status, job.attempts), (JobState::Failed, 3), "{job:?}");
    assert!(job.error.as_deref().is_some_and(|e| e.contains("429")), "{job:?}");
    // Each retry first asks `/status/batch` whether the create made a service.
    let calls: Vec<String> = stack.sim.sim.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(calls, ["/create-instance", "/status/batch", "/status/batch"], "one call per attempt");
}

/// Postgres unreachable for 4 s (every connection cut, new ones refused; past the
/// 1 s acquire timeout, within the rescue window) while claims and provisions run:
/// web and workers carry on by themselves afterwards, every job that got an id
/// ends, nothing stays claiming, and the pool refills.
#[tokio::test]
async fn claims_and_provisions_survive_a_database_outage() {
    let sim = pool::sim::SimConfig { provision_time: Duration::from_millis(1500), ..fast_sim() };
    let stack = Stack::start(sim, 2, &[("POOL_MIN_IDLE", "4"), ("DATABASE_ACQUIRE_TIMEOUT_MS", "1000")]).await;
    stack.wait_for_counts("4 idle", Duration::from_secs(30), |c| c["idle"] == 4).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = stack.post("/api/pool/claim", json!({ "agentName": format!("Outage {i}") }), 0).await;
        assert_eq!(r.status(), 202);
        ids.push(r.json::<pool::queue::JobDoc>().await.unwrap().id);
    }
    let r = stack.post("/api/pool/replenish", json!({ "count": 2 }), 0).await;
    ids.push(r.json::<pool::queue::JobDoc>().await.unwrap().id);

    set_connections_allowed(&stack.db.name, false).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    set_connections_allowed(&stack.db.name, true).await;

    let db = sqlx::PgPool::connect(&stack.db.url).await.unwrap();
    for id in &ids {
        let job = stack.wait_job(id, Duration::from_secs(60)).await;
        assert!(job.status.is_finished(), "{job:?}");
    }
    let claimed: Vec<String> =
        sqlx::query_scalar("SELECT state FROM jobs WHERE kind = 'claim_and_provision' AND state <> 'succeeded'")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(claimed.is_empty(), "claims that did not succeed: {claimed:?}");
    stack
        .wait_for_counts("the pool refilled", Duration::from_secs(60), |c| {
            c["claiming"] == 0 && c["claimed"] == 3 && c["idle"].as_i64().unwrap_or(0) >= 4
        })
        .await;
}
