//! Stale runs write only under their lease, with real processes: a run whose job
//! was taken back (its worker frozen with SIGSTOP past the rescue window) and
//! resumed by another run changes nothing when it wakes up.

use std::time::Duration;

use pool::{queue::JobDoc, sim::SimConfig, store::JobState};
use serde_json::json;

use crate::{
    helpers::fast_sim,
    stack::{Stack, eventually},
};

async fn state_of(stack: &Stack, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(id).fetch_optional(&stack.db.pool).await.unwrap()
}

/// Run 1 of a claim provisions an instance that turns out bound already (upstream
/// answers 500 after a while) and whose `/convos/status` is broken, so it settles
/// the claim as `crashed`. But its worker froze first: the claim was taken back and
/// resumed by run 2 on another worker, which holds the row `claiming`. When run 1
/// wakes up, its crash write must not land (the resumed claim would fail, "instance
/// became crashed during the claim"); the claim completes once the instance
/// reports its conversation again.
#[tokio::test]
async fn a_stale_run_cannot_mark_a_resumed_claims_instance_crashed() {
    let sim = SimConfig { rebind_time: Duration::from_secs(6), ..fast_sim() };
    let overrides = [
        ("POOL_MIN_IDLE", "1"),
        ("JOB_MAX_ATTEMPTS", "12"),
        ("JOB_HEARTBEAT_MS", "500"),
        ("JOB_RESCUE_AFTER_MS", "3000"),
    ];
    let mut stack = Stack::start(sim, 1, &overrides).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    let instance: String =
        sqlx::query_scalar("SELECT id FROM instances WHERE status = 'idle'").fetch_one(&stack.db.pool).await.unwrap();
    stack.sim.sim.bind(&instance, "conv-earlier");
    stack.sim.sim.set_status_broken(&instance, true);

    let claim: JobDoc = stack.post("/api/pool/claim", json!({ "agentName": "Stale" }), 0).await.json().await.unwrap();
    let running = eventually(Duration::from_secs(10), || async {
        (state_of(&stack, &claim.id).await.as_deref() == Some("running")).then_some(())
    })
    .await;
    assert!(running.is_some(), "run 1 started");
    tokio::time::sleep(Duration::from_millis(500)).await; // its provision is in flight
    stack.pause_worker(0);
    stack.add_worker();
    // Run 2 resumes the row, asks /convos/status (broken) and will retry.
    let retried = eventually(Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM job_attempts WHERE job_id = $1 AND outcome = 'retry'")
            .bind(&claim.id)
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
        (n > 0).then_some(())
    })
    .await;
    assert!(retried.is_some(), "run 2 resumed the claim");

    stack.resume_worker(0);
    let answered = eventually(Duration::from_secs(20), || async {
        let sim = &stack.sim.sim;
        sim.requests().iter().any(|r| r.path.ends_with("/pool/provision") && r.status == 500).then_some(())
    })
    .await;
    assert!(answered.is_some(), "run 1's provision was answered");
    tokio::time::sleep(Duration::from_secs(2)).await; // run 1 settles, or tries to
    let status: String = sqlx::query_scalar("SELECT status FROM instances WHERE id = $1")
        .bind(&instance)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "claiming", "run 1 changed the row it no longer holds");

    stack.sim.sim.set_status_broken(&instance, false);
    let done = stack.wait_job(&claim.id, Duration::from_secs(60)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.result.as_ref().unwrap()["conversationId"], json!("conv-earlier"));
}
