//! An idle worker sleeps: its fetch polls rarely and its binding loop does not
//! pass while no claim waits. What it sleeps on must still wake it: a new job, and a
//! claim that starts waiting for an instance. The idle timers here are 10 minutes,
//! so everything below happens only because a notification woke the worker.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::fast_sim,
    stack::{Stack, eventually},
};

const ASLEEP: [(&str, &str); 4] = [
    ("JOB_IDLE_POLL_MS", "600000"),
    ("JOB_MATCH_IDLE_MS", "600000"),
    ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"),
    ("REPLENISH_SCHEDULE", "0 0 0 1 1 *"),
];

/// Until every job (the start-up replenish) has ended: the worker is idle.
async fn settled(stack: &Stack) {
    let idle = eventually(Duration::from_secs(20), || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
        (open == 0).then_some(())
    })
    .await;
    idle.expect("the worker settles");
}

#[tokio::test]
async fn an_idle_worker_wakes_for_a_new_job_and_for_a_waiting_claim() {
    let stack = Stack::start(fast_sim(), 1, &ASLEEP).await;
    settled(&stack).await;

    let job = stack.post("/api/pool/reconcile", json!({}), 20).await;
    assert_eq!(job.status(), StatusCode::OK, "the reconcile ran without a poll");

    // No idle instance: the claim waits, and the asleep binding loop must wake for it.
    let claimed = stack.post("/api/pool/claim", json!({}), 30).await;
    let status = claimed.status();
    let body: Value = claimed.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded", "{body}");
}

/// A claim's top-up is scheduled a moment later, so a burst of claims shares one
/// replenish instead of running one per claim; the asleep worker still runs it then,
/// woken by the notification that carries when it is due, not by its 10-minute poll.
#[tokio::test]
async fn a_claims_top_up_runs_a_moment_later_without_a_poll() {
    let stack = Stack::start(fast_sim(), 1, &[ASLEEP.as_slice(), &[("POOL_MIN_IDLE", "2")]].concat()).await;
    stack.wait_for_counts("the pool filled", Duration::from_secs(20), |c| c["idle"] == 2).await;
    settled(&stack).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'replenish'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();

    let claimed = stack.post("/api/pool/claim", json!({}), 30).await;
    assert_eq!(claimed.status(), StatusCode::OK, "{}", claimed.text().await.unwrap());

    let top_up = eventually(Duration::from_secs(20), || async {
        let row: Option<(String, bool, bool)> = sqlx::query_as(
            "SELECT state, run_at > created_at, finished_at IS NOT NULL FROM jobs
             WHERE kind = 'replenish' ORDER BY id OFFSET $1 LIMIT 1",
        )
        .bind(before)
        .fetch_optional(&stack.db.pool)
        .await
        .unwrap();
        row.filter(|(state, _, _)| state == "succeeded")
    })
    .await;
    let (_, later, _) = top_up.expect("the claim's top-up ran without waiting for the idle poll");
    assert!(later, "the top-up was scheduled after the claim, not at once");
    stack.wait_for_counts("the pool refilled", Duration::from_secs(20), |c| c["idle"] == 2).await;
}

/// An instance whose service appears while `check_ready` runs a round (its provision
/// found that job running, so it enqueued no other) is followed by the same job's
/// next round, not left `provisioning` until a reconcile (none runs here).
#[tokio::test]
async fn a_service_that_appears_during_a_readiness_round_is_followed() {
    use pool::{domain::InstanceId, sim::Faults, store::jobs};
    let stack = Stack::start(fast_sim(), 1, &ASLEEP).await;
    let (db, sim) = (&stack.db.pool, &stack.sim.sim);
    // The worker's start-up replenish ran, and its binding loop found nothing to follow:
    // both sleep for the 10-minute idle timers.
    let started = eventually(Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'replenish' AND state = 'succeeded'")
            .fetch_one(db)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    assert!(started.is_some(), "the start-up replenish ran");
    settled(&stack).await;
    let (early, late) = (InstanceId::generate().to_string(), InstanceId::generate().to_string());
    for id in [&early, &late] {
        sim.add_service(id);
        sim.set_ready(id, true);
        sqlx::query("INSERT INTO instances (id, name, status) VALUES ($1, 'convos-agent-' || $1, 'provisioning')")
            .bind(id)
            .execute(db)
            .await
            .unwrap();
    }
    let created = |id: &str| {
        let service_id = sim.service(id).expect("service").service_id;
        sqlx::query("UPDATE instances SET service_id = $2, url = $3 || '/i/' || id WHERE id = $1")
            .bind(id.to_owned())
            .bind(service_id)
            .bind(stack.sim.url.clone())
    };
    created(&early).execute(db).await.unwrap();
    // The round's status call takes 2 s; the late service appears meanwhile.
    sim.set_faults(Faults { latency_ms: Some(2000), ..Faults::default() });
    assert!(jobs::enqueue_unless_held(db, &pool::queue::check_ready_job()).await.unwrap());
    let running = eventually(Duration::from_secs(20), || async {
        let state: String =
            sqlx::query_scalar("SELECT state FROM jobs WHERE kind = 'check_ready'").fetch_one(db).await.ok()?;
        (state == "running").then_some(())
    })
    .await;
    assert!(running.is_some(), "check_ready never ran");
    tokio::time::sleep(Duration::from_millis(500)).await; // the round has read its rows
    created(&late).execute(db).await.unwrap();
    let enqueued = jobs::enqueue_unless_held(db, &pool::queue::check_ready_job()).await.unwrap();
    assert!(!enqueued, "the running round holds the singleton, as it does for a provision");
    sim.set_faults(Faults::default());

    let idle = eventually(Duration::from_secs(20), || async {
        let statuses: Vec<String> =
            sqlx::query_scalar("SELECT status FROM instances ORDER BY id").fetch_all(db).await.ok()?;
        (statuses.len() == 2 && statuses.iter().all(|s| s == "idle")).then_some(())
    })
    .await;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, status FROM instances").fetch_all(db).await.unwrap();
    assert!(idle.is_some(), "both instances became idle without a reconcile: {rows:?}");
}
