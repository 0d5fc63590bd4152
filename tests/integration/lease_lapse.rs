//! The heartbeat is tied to the work, with real processes: a worker that cannot
//! prove itself alive stops acting before others may take its jobs, and a worker
//! back from an outage does not take the jobs of others back from it with it.

use std::time::Duration;

use pool::{queue::JobDoc, sim::SimConfig, store::JobState};
use serde_json::json;

use crate::{
    claim_storm::provisions_by_instance,
    helpers::{FAST_METRICS, fast_sim},
    proxy::{FreezableProxy, server_of, via_proxy},
    resilience::set_connections_allowed,
    stack::{Stack, eventually},
};

/// Posts `n` claims `every` apart; their ids.
async fn claims(stack: &Stack, n: usize, every: Duration) -> Vec<pool::domain::JobId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let response = stack.post("/api/pool/claim", json!({ "agentName": format!("Lease {i}") }), 0).await;
        assert_eq!(response.status(), 202);
        ids.push(response.json::<JobDoc>().await.unwrap().id);
        tokio::time::sleep(every).await;
    }
    ids
}

/// Every claim succeeded, and no instance was provisioned twice.
async fn each_claim_done_once(stack: &Stack, ids: &[pool::domain::JobId]) {
    for id in ids {
        let job = stack.wait_job(id, Duration::from_secs(60)).await;
        assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    }
    let provisions = provisions_by_instance(&stack.sim.sim);
    assert!(provisions.values().all(|calls| calls.len() == 1), "one provision per instance: {provisions:?}");
}

/// Worker A's heartbeat is blackholed (its connection, and every connection A
/// opens, hang; the pool connections A has open still work) while claims arrive for
/// longer than the rescue window. A's lease lapses after half the window: it
/// fetches nothing more, so nothing it starts can be taken from it by B (rather than
/// fetching claims with its pool while B takes each one back).
#[tokio::test]
async fn a_worker_whose_heartbeat_is_blackholed_fetches_nothing_after_half_the_rescue_window() {
    let sim = SimConfig { provision_time: Duration::from_millis(1500), ..fast_sim() };
    let lease = [("JOB_HEARTBEAT_MS", "500"), ("JOB_RESCUE_AFTER_MS", "8000")];
    let mut overrides = vec![("POOL_MIN_IDLE", "14"), ("JOB_CLAIM_CONCURRENCY", "2"), FAST_METRICS];
    overrides.extend(lease);
    let mut stack = Stack::start(sim, 0, &overrides).await;
    let proxy = FreezableProxy::start(server_of(&stack.db.url)).await;
    let direct = stack.env["DATABASE_URL"].clone();
    stack.env.insert("DATABASE_URL".into(), via_proxy(&direct, proxy.port));
    stack.add_worker();
    stack.env.insert("DATABASE_URL".into(), direct);
    stack.add_worker();
    stack.wait_for_workers(2).await;
    stack.wait_for_counts("14 idle", Duration::from_secs(60), |c| c["idle"] == 14).await;

    // The heartbeat connections: their last statement is the tick's last one.
    let heartbeats = eventually(Duration::from_secs(10), || async {
        let ports: Vec<i32> = sqlx::query_scalar(
            "SELECT client_port FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND (application_name = 'pool-heartbeat' OR query LIKE '%pool_adopt_apalis_jobs%')",
        )
        .fetch_all(&stack.db.pool)
        .await
        .unwrap();
        (ports.len() == 2).then_some(ports)
    })
    .await
    .expect("two heartbeat connections");
    proxy.freeze_new_connections(true);
    proxy.freeze_ports(&heartbeats.iter().map(|p| u16::try_from(*p).unwrap()).collect::<Vec<_>>());
    let frozen_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT now()").fetch_one(&stack.db.pool).await.unwrap();
    let ids = claims(&stack, 14, Duration::from_millis(800)).await;
    each_claim_done_once(&stack, &ids).await;

    // A's lease lapsed 4 s after its last heartbeat: any run it started later and
    // that B took back would be a run it must not have started.
    let lapsed = frozen_at + chrono::Duration::milliseconds(4500);
    let late: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT job_id, worker_id FROM job_attempts WHERE outcome = 'lost' AND started_at > $1 ORDER BY job_id",
    )
    .bind(lapsed)
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(late, vec![], "runs A started after its lease lapsed");
    // A noticed (its count reaches Postgres once its new connections flow again).
    proxy.freeze_new_connections(false);
    stack.wait_for_counter("pool_worker_lease_lapses_total", "", 1.0).await;
}

/// Postgres is away for longer than the rescue window while three workers run
/// claims. Each worker, back, takes nothing back from the others for one window,
/// in which they prove themselves alive: no run is taken from a live worker (the
/// first one back does not take every other worker's jobs), and no instance is
/// provisioned twice.
#[tokio::test]
async fn after_an_outage_longer_than_the_rescue_window_no_worker_takes_another_live_workers_jobs() {
    let sim = SimConfig { provision_time: Duration::from_secs(2), ..fast_sim() };
    let overrides = [
        ("POOL_MIN_IDLE", "6"),
        ("JOB_CLAIM_CONCURRENCY", "2"),
        ("JOB_HEARTBEAT_MS", "500"),
        ("JOB_RESCUE_AFTER_MS", "3000"),
    ];
    let stack = Stack::start(sim, 3, &overrides).await;
    stack.wait_for_workers(3).await;
    stack.wait_for_counts("6 idle", Duration::from_secs(60), |c| c["idle"] == 6).await;
    let ids = claims(&stack, 6, Duration::ZERO).await;
    let running = eventually(Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'running'")
            .bind(&ids)
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
        (n == 6).then_some(())
    })
    .await;
    assert!(running.is_some(), "the three workers run the six claims");

    stack.db.pool.close().await;
    set_connections_allowed(&stack.db.name, false).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    set_connections_allowed(&stack.db.name, true).await;

    each_claim_done_once(&stack, &ids).await;
    let db = sqlx::PgPool::connect(&stack.db.url).await.unwrap();
    let lost: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT job_id, error FROM job_attempts WHERE outcome = 'lost'").fetch_all(&db).await.unwrap();
    assert_eq!(lost, vec![], "runs taken from live workers");
}
