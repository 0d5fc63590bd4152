//! A worker's lease on the jobs it runs, with real processes and short liveness
//! timings (`JOB_HEARTBEAT_MS`, `JOB_RESCUE_AFTER_MS`) so a test waits seconds.

use std::time::Duration;

use pool::{queue::JobDoc, sim::SimConfig, store::JobState};
use serde_json::json;

use crate::{
    claim_storm::provisions_by_instance,
    helpers::{SHORT_LEASE, fast_sim},
    proxy::{FreezableProxy, server_of, via_proxy},
    stack::{Stack, eventually},
};

/// `(worker, attempt)` of every `lost` attempt: runs another worker took back.
async fn lost_attempts(stack: &Stack) -> Vec<(Option<String>, String)> {
    sqlx::query_as("SELECT worker_id, job_id FROM job_attempts WHERE outcome = 'lost'")
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
}

/// A deploy: worker A gets SIGTERM while its two claims provision for far longer
/// than the rescue window, and worker B is up. A keeps its lease (heartbeats) until
/// their outcomes are written, so B never re-runs them: one provision per instance,
/// each claim done by its first attempt, and A exits 0.
#[tokio::test]
async fn sigterm_drain_keeps_the_lease_until_every_outcome_is_written() {
    let sim = SimConfig { provision_time: Duration::from_secs(8), ..fast_sim() };
    let mut overrides = vec![("POOL_MIN_IDLE", "2"), ("JOB_CLAIM_CONCURRENCY", "2")];
    overrides.extend(SHORT_LEASE);
    let mut stack = Stack::start(sim, 1, &overrides).await;
    const A: usize = 0;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2 && c["provisioning"] == 0).await;

    let mut claims = Vec::new();
    for i in 0..2 {
        let response = stack.post("/api/pool/claim", json!({ "agentName": format!("Deploy {i}") }), 0).await;
        assert_eq!(response.status(), 202);
        claims.push(response.json::<JobDoc>().await.unwrap().id);
    }
    let running = eventually(Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'running'")
            .bind(&claims)
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
        (n == 2).then_some(())
    })
    .await;
    assert!(running.is_some(), "A runs both claims");
    stack.add_worker();
    stack.wait_for_workers(2).await;

    let status = stack.stop_worker(A).await;
    assert!(status.success(), "A exits 0 after its runs: {status:?}");
    for id in &claims {
        let job = stack.wait_job(id, Duration::from_secs(30)).await;
        assert_eq!((job.status, job.attempts), (JobState::Succeeded, 1), "finished by A's run: {job:?}");
    }
    assert_eq!(lost_attempts(&stack).await, vec![], "no run was taken from A");
    let provisions = provisions_by_instance(&stack.sim.sim);
    assert_eq!(provisions.len(), 2, "{provisions:?}");
    assert!(provisions.values().all(|calls| calls.len() == 1), "one provision per instance: {provisions:?}");
}

/// Seconds since each worker's last heartbeat.
async fn silences(stack: &Stack) -> Vec<(String, f64)> {
    sqlx::query_as("SELECT id, EXTRACT(EPOCH FROM now() - last_seen)::float8 FROM job_workers")
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
}

/// Every connection of a worker hangs (a blackholed network path: no answer, no
/// error). Its heartbeat gives the hung tick up and proves it alive on a new
/// connection, so the worker never looks dead for a whole rescue window; it used
/// to wait on the hung connection for ever.
#[tokio::test]
async fn a_hung_heartbeat_connection_is_replaced_before_the_rescue_window_ends() {
    // A window with room for a slow reconnect on a busy test machine.
    const RESCUE_AFTER: Duration = Duration::from_secs(6);
    let lease = [("JOB_HEARTBEAT_MS", "500"), ("JOB_RESCUE_AFTER_MS", "6000")];
    let mut stack = Stack::start(fast_sim(), 0, &lease).await;
    let proxy = FreezableProxy::start(server_of(&stack.db.url)).await;
    let direct = stack.env["DATABASE_URL"].clone();
    stack.env.insert("DATABASE_URL".into(), via_proxy(&direct, proxy.port));
    stack.add_worker();
    stack.env.insert("DATABASE_URL".into(), direct);
    stack.wait_for_workers(1).await;
    // A heartbeat after the registration: the heartbeat connection is open.
    let last_seen = || async {
        let seen: f64 = sqlx::query_scalar("SELECT EXTRACT(EPOCH FROM last_seen)::float8 FROM job_workers")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
        seen
    };
    let registered = last_seen().await;
    let beating =
        eventually(Duration::from_secs(10), || async { (last_seen().await > registered).then_some(()) }).await;
    assert!(beating.is_some(), "the worker heartbeats");

    proxy.freeze_open_connections();
    let mut longest = 0.0f64;
    for _ in 0..(RESCUE_AFTER.as_millis() * 3 / 2 / 250) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let silences = silences(&stack).await;
        assert_eq!(silences.len(), 1, "{silences:?}");
        longest = longest.max(silences[0].1);
    }
    assert!(longest < RESCUE_AFTER.as_secs_f64(), "the worker was silent for {longest:.1} s");
}
