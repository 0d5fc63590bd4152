//! Commits a Postgres crash lost (worker connections commit asynchronously), with
//! real processes. The loss is written into the table directly, exactly as the
//! crash leaves it: restarting the test's Postgres with `-m immediate` would lose
//! whatever happened to be unflushed (often nothing, with `POOL_PG_FAST=1` and its
//! `fsync = off`), so the test would not know what it tests. Writing the lost state
//! makes the one interesting case certain every time.

use std::time::Duration;

use pool::{
    queue::JobDoc,
    sim::SimConfig,
    store::{JobState, jobs::lifecycle},
};
use serde_json::json;

use crate::{
    claim_storm::provisions_by_instance,
    helpers::{NO_SCHEDULES, SHORT_LEASE, TestDb, fast_sim},
    stack::{Stack, eventually},
};

async fn the_worker(stack: &Stack) -> String {
    sqlx::query_scalar("SELECT id FROM job_workers").fetch_one(&stack.db.pool).await.unwrap()
}

/// A singleton (`replenish`) whose outcome a crash lost: the row is `running` again,
/// at the attempt it ran with, under its worker, which is alive and heartbeating but
/// holds no such run. Its dedupe key pins every later top-up to it. The worker finds
/// the row it does not hold and puts it back: the job runs again within seconds, and
/// top-ups run again after it.
#[tokio::test]
async fn a_running_row_its_live_worker_does_not_hold_runs_again_and_frees_its_singleton() {
    let mut overrides = NO_SCHEDULES.to_vec();
    overrides.extend(SHORT_LEASE);
    let stack = Stack::start(fast_sim(), 1, &overrides).await;
    stack.wait_for_workers(1).await;
    let first: JobDoc = stack.post("/api/pool/replenish", json!({}), 10).await.json().await.unwrap();
    assert_eq!(first.status, JobState::Succeeded, "{first:?}");

    sqlx::query(
        "UPDATE jobs SET state = 'running', worker_id = $2, result = NULL, finished_at = NULL, started_at = now()
         WHERE id = $1",
    )
    .bind(&first.id)
    .bind(the_worker(&stack).await)
    .execute(&stack.db.pool)
    .await
    .unwrap();
    let pinned: JobDoc = stack.post("/api/pool/replenish", json!({}), 0).await.json().await.unwrap();
    assert_eq!(pinned.id, first.id, "the lost outcome holds the singleton key");

    let again = stack.wait_job(&first.id, Duration::from_secs(20)).await;
    assert_eq!((again.status, again.attempts), (JobState::Succeeded, 2), "it ran again: {again:?}");
    let runs = again.history.clone().expect("history");
    assert!(
        runs.iter().any(|r| r.outcome == "lost" && r.error.as_deref().is_some_and(|e| e.contains("holds no run"))),
        "{runs:?}"
    );
    let next: JobDoc = stack.post("/api/pool/replenish", json!({}), 10).await.json().await.unwrap();
    assert_ne!(next.id, first.id);
    assert_eq!(next.status, JobState::Succeeded, "top-ups run again: {next:?}");
}

/// A claim's worker dies mid-provision (the instance is bound), and the crash also
/// lost the claim's fetch: the job is `queued` with the run counter it had before,
/// so its next run looks like a first one. What the claim left on its instance row
/// before calling `/pool/provision` (a synchronous commit) still says a provision
/// was sent: the next run asks `/convos/status` and completes, instead of
/// provisioning again (upstream answers a second provision with a 500 after minutes).
#[tokio::test]
async fn a_claim_knows_it_is_a_rerun_from_its_instance_row_not_from_a_lost_counter() {
    let sim = SimConfig { provision_time: Duration::from_secs(3), rebind_time: Duration::from_secs(60), ..fast_sim() };
    let mut overrides = vec![("POOL_MIN_IDLE", "1")];
    overrides.extend(SHORT_LEASE);
    let mut stack = Stack::start(sim, 1, &overrides).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    let claim: JobDoc = stack.post("/api/pool/claim", json!({ "agentName": "Lost" }), 0).await.json().await.unwrap();
    let instance = eventually(Duration::from_secs(10), || async {
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM instances WHERE claim_job_id = $1")
            .bind(&claim.id)
            .fetch_optional(&stack.db.pool)
            .await
            .unwrap();
        id.filter(|id| stack.sim.sim.conversation_of(id).is_some())
    })
    .await
    .expect("the provision reached the instance");
    stack.kill_worker(0).await;
    sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = attempts - 1, runs = runs - 1, worker_id = NULL,
                         started_at = NULL, run_at = now()
         WHERE id = $1",
    )
    .bind(&claim.id)
    .execute(&stack.db.pool)
    .await
    .unwrap();

    stack.add_worker();
    let done = stack.wait_job(&claim.id, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.result.as_ref().unwrap()["conversationId"], json!(stack.sim.sim.conversation_of(&instance)));
    let provisions = provisions_by_instance(&stack.sim.sim);
    assert!(provisions.get(&instance).is_none_or(|calls| calls.len() <= 1), "no second provision: {provisions:?}");
}

/// The take-back of a live worker's own rows is fenced: a row it holds (this
/// attempt) and a row fetched a moment ago (it may not be held yet) stay; a row at
/// an attempt it holds no run of goes back to the queue. And the last resort takes
/// back a run older than its limit even under a live worker.
#[tokio::test]
async fn only_rows_a_live_worker_holds_no_run_of_are_taken_back_and_the_last_resort_takes_old_runs() {
    let db = TestDb::new().await;
    let jobs: Vec<_> = (0..4).map(|_| pool::store::NewJob::new(crate::helpers::kind("noop"), json!({}), 3)).collect();
    pool::store::jobs::enqueue_many(&db.pool, &jobs).await.unwrap();
    lifecycle::heartbeat(&db.pool, "w").await.unwrap();
    let fetched = lifecycle::fetch(&db.pool, "w", &[(crate::helpers::kind("noop"), 4)]).await.unwrap();
    let ids: Vec<pool::domain::JobId> = fetched.iter().map(|j| j.id.clone()).collect();
    // All but the fourth ran a while ago; the third for two hours.
    sqlx::query("UPDATE jobs SET started_at = now() - interval '1 minute' WHERE id = ANY($1)")
        .bind(&ids[..3])
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET started_at = now() - interval '2 hours' WHERE id = $1")
        .bind(&ids[2])
        .execute(&db.pool)
        .await
        .unwrap();
    let held = vec![(ids[0].clone(), 1), (ids[1].clone(), 7), (ids[2].clone(), 1)];
    let released = lifecycle::release_orphans(&db.pool, "w", &held, Duration::from_secs(10)).await.unwrap();
    assert_eq!(released, 1, "only the row at an attempt the worker holds no run of");
    let rescued = lifecycle::rescue(&db.pool, Duration::from_secs(12), Duration::from_secs(3600)).await.unwrap();
    assert_eq!(rescued, 1, "the two-hour run, under a live worker");
    let states: Vec<(pool::domain::JobId, String)> =
        sqlx::query_as("SELECT id, state FROM jobs WHERE id = ANY($1) ORDER BY id")
            .bind(&ids)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let state = |i: usize| states.iter().find(|(id, _)| *id == ids[i]).unwrap().1.clone();
    assert_eq!([state(0), state(1), state(2), state(3)], ["running", "queued", "queued", "running"]);
}
