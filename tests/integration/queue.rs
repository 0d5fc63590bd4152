//! The job runtime: a stalled worker that comes back, poison payloads, claims on the
//! worker with free slots, a slow database, and the operator actions, each with real
//! `pool web` and `pool worker` processes.

use std::{collections::HashMap, time::Duration};

use futures::future::join_all;
use pool::{
    queue::JobDoc,
    sim::{Faults, SimConfig},
    store::JobState,
};
use serde_json::{Value, json};

use crate::{
    claim_storm::{assert_no_shared_conversation, conversations_in, provisions_by_instance},
    helpers::{FAST_METRICS, NO_SCHEDULES, SHORT_LEASE, TestDb, fast_sim, spawn_sim},
    proxy::{latency_proxy, server_of, via_proxy},
    stack::{Stack, eventually},
};

/// Waits until job `id` is `running`.
async fn wait_running(stack: &Stack, id: &str) {
    let running = eventually(Duration::from_secs(20), || async {
        let state: String =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(id).fetch_one(&stack.db.pool).await.ok()?;
        (state == "running").then_some(())
    })
    .await;
    assert!(running.is_some(), "job {id} never ran");
}

/// Waits until job `id` started its second attempt (it may have ended since): another
/// worker took it back from a silent one (the short lease: a rescue after 3 s of
/// silence, not the default 12 s).
async fn wait_taken_back(stack: &Stack, id: &str) {
    let taken = eventually(Duration::from_secs(20), || async {
        let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&stack.db.pool)
            .await
            .ok()?;
        (attempts >= 2).then_some(())
    })
    .await;
    assert!(taken.is_some(), "job {id} was never taken back");
}

/// A worker frozen (SIGSTOP) mid-claim is presumed dead; another worker
/// re-runs the claim, meets the instance's 409 (the frozen run's provision went
/// through) and completes from `/convos/status`. When the frozen worker resumes, its
/// run cannot record anything: one binding, and the job ends `succeeded`.
#[tokio::test]
async fn worker_frozen_mid_claim_is_replaced_and_cannot_overwrite() {
    let sim = SimConfig { provision_time: Duration::from_secs(2), ..fast_sim() };
    let mut stack = Stack::start(sim, 1, &[("POOL_MIN_IDLE", "2"), SHORT_LEASE[0], SHORT_LEASE[1], FAST_METRICS]).await;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2).await;
    let response = stack.post("/api/pool/claim", json!({ "agentName": "Frozen" }), 0).await;
    assert_eq!(response.status(), 202);
    let claim: JobDoc = response.json().await.unwrap();
    wait_running(&stack, &claim.id).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the provision is in flight
    stack.pause_worker(0);
    stack.add_worker();
    wait_taken_back(&stack, &claim.id).await;
    stack.resume_worker(0);

    let done = stack.wait_job(&claim.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2, "the rescue counted as an attempt: {done:?}");
    let runs = done.history.clone().expect("history");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((runs[0].outcome.as_str(), runs[1].outcome.as_str()), ("lost", "succeeded"), "{runs:?}");
    assert!(runs[0].error.as_deref().is_some_and(|e| e.contains("stopped responding")), "{runs:?}");
    tokio::time::sleep(Duration::from_secs(3)).await; // let the resumed run end
    let claimed = conversations_in(&stack, "claimed").await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let (instance, conversation) = &claimed[0];
    assert_eq!(conversation.as_deref(), stack.sim.sim.conversation_of(instance).as_deref());
    assert_eq!(done.result.as_ref().unwrap()["conversationId"], json!(conversation));
    assert_no_shared_conversation(&stack.sim.sim);
    let provisions = provisions_by_instance(&stack.sim.sim);
    assert_eq!(provisions.len(), 1, "one instance was ever provisioned: {provisions:?}");
    let again = stack.wait_job(&claim.id, Duration::from_secs(1)).await;
    assert_eq!((again.status, again.attempts), (JobState::Succeeded, 2), "unchanged after the resume");
    // The resumed run noticed it was replaced; the new worker took the job back.
    stack.wait_for_counter("pool_job_runs_stopped_total", "reason=\"lost\"", 1.0).await;
    stack.wait_for_counter("pool_jobs_taken_back_total", "from=\"silent_worker\"", 1.0).await;
}

/// A worker frozen mid-reconcile: another worker re-runs the reconcile; the resumed
/// run stops at its first safe point and changes nothing (no overlapping reconciles).
#[tokio::test]
async fn worker_frozen_mid_reconcile_stops_at_its_next_safe_point() {
    let mut stack =
        Stack::start(fast_sim(), 1, &[NO_SCHEDULES[0], NO_SCHEDULES[1], SHORT_LEASE[0], SHORT_LEASE[1], FAST_METRICS])
            .await;
    stack.wait_for_workers(1).await;
    stack.sim.sim.set_faults(Faults { latency_ms: Some(3000), ..Faults::default() });
    let reconcile: JobDoc = stack.post("/api/pool/reconcile", json!({}), 0).await.json().await.unwrap();
    wait_running(&stack, &reconcile.id).await;
    stack.pause_worker(0);
    stack.add_worker();
    wait_taken_back(&stack, &reconcile.id).await;
    stack.resume_worker(0);

    let done = stack.wait_job(&reconcile.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 2, "{done:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The simulator logs a call when it answers: the frozen run's and the replacement's.
    assert_eq!(batch_calls(&stack), 2, "the resumed run made no more calls");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'reconcile'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "the resumed run enqueued nothing either");
    // The resumed run noticed it was replaced: it stopped at a checkpoint, or its
    // outcome was dropped.
    let noticed = eventually(Duration::from_secs(20), || async {
        let stopped = stack.counter("pool_job_runs_stopped_total", "reason=\"lost\"").await
            + stack.counter("pool_job_runs_stopped_total", "reason=\"dropped\"").await;
        (stopped >= 1.0).then_some(())
    })
    .await;
    assert!(noticed.is_some(), "the resumed run noticed it was replaced");
}

fn batch_calls(stack: &Stack) -> usize {
    stack.sim.sim.requests().iter().filter(|r| r.path == "/status/batch").count()
}

/// A row whose payload this release cannot decode fails after its attempts with the
/// reason; every other job runs meanwhile, and reconcile (whose singleton it held)
/// runs again once it has failed.
#[tokio::test]
async fn undecodable_payload_fails_with_a_clear_error_and_blocks_nothing() {
    let db = TestDb::new().await;
    let poison = pool::domain::JobId::generate();
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, max_attempts, dedupe_key)
         VALUES ($1, 'reconcile', '{\"fromANewerRelease\": true}', 2, 'singleton')",
    )
    .bind(&poison)
    .execute(&db.pool)
    .await
    .unwrap();
    let sim = spawn_sim(fast_sim()).await;
    let stack = Stack::start_on(db, sim, 1, &NO_SCHEDULES).await;
    let replenish: JobDoc = stack.post("/api/pool/replenish", json!({ "count": 1 }), 20).await.json().await.unwrap();
    assert_eq!(replenish.status, JobState::Succeeded, "{replenish:?}");

    let failed = stack.wait_job(&poison, Duration::from_secs(30)).await;
    assert_eq!((failed.status, failed.attempts), (JobState::Failed, 2), "{failed:?}");
    let error = failed.error.unwrap_or_default();
    assert!(error.contains("cannot decode the reconcile payload"), "{error}");
    let reconcile: JobDoc = stack.post("/api/pool/reconcile", json!({}), 20).await.json().await.unwrap();
    assert_ne!(reconcile.id, poison);
    assert_eq!(reconcile.status, JobState::Succeeded, "{reconcile:?}");
}

/// Worker A runs a slow claim with one of its two claim slots; worker B is idle.
/// Eight claims arrive: no worker ever holds more claims than it has slots, and B
/// serves its share instead of the claims queueing behind A.
#[tokio::test]
async fn claims_go_to_free_slots_not_behind_slow_work() {
    let sim = SimConfig { provision_time: Duration::from_secs(3), ..fast_sim() };
    let env = [("POOL_MIN_IDLE", "9"), ("JOB_CLAIM_CONCURRENCY", "2")];
    let mut stack = Stack::start(sim, 1, &env).await;
    stack.wait_for_counts("9 idle", Duration::from_secs(30), |c| c["idle"] == 9).await;
    let first: JobDoc = stack.post("/api/pool/claim", json!({ "agentName": "Slow" }), 0).await.json().await.unwrap();
    wait_running(&stack, &first.id).await;
    stack.add_worker();
    stack.wait_for_workers(2).await;

    let sampler = sample_running_claims(&stack);
    let claims = join_all((0..8).map(|i| stack.post("/api/pool/claim", json!({ "agentName": format!("C{i}") }), 0)));
    let ((most, ran_on), responses) = tokio::join!(sampler, claims);
    let first_id = first.id.clone();
    let mut ids = vec![first.id];
    for response in responses {
        assert_eq!(response.status(), 202);
        ids.push(response.json::<JobDoc>().await.unwrap().id);
    }
    for id in &ids {
        let job = stack.wait_job(id, Duration::from_secs(30)).await;
        assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    }
    assert!(most <= 2, "a worker held {most} claims with 2 slots");
    assert!(ids.iter().all(|id| ran_on.contains_key(id.as_str())), "every claim was seen running: {ran_on:?}");
    let a = &ran_on[first_id.as_str()];
    let (on_a, on_b) = (ran_on.values().filter(|w| *w == a).count(), ran_on.values().filter(|w| *w != a).count());
    assert_eq!(on_a + on_b, 9, "A {on_a}, B {on_b}");
    assert!(on_b >= 3, "the idle worker served its share: A {on_a}, B {on_b}");
}

/// Sampled for 8 s: the most claims any one worker held running at once, and the
/// worker each claim seen running ran on.
async fn sample_running_claims(stack: &Stack) -> (i64, HashMap<String, String>) {
    let (mut most, mut ran_on) = (0, HashMap::new());
    for _ in 0..160 {
        let running: Vec<(String, String)> =
            sqlx::query_as("SELECT id, worker_id FROM jobs WHERE kind = 'claim_and_provision' AND state = 'running'")
                .fetch_all(&stack.db.pool)
                .await
                .unwrap();
        let mut per_worker: HashMap<&str, i64> = HashMap::new();
        for (_, worker) in &running {
            *per_worker.entry(worker).or_default() += 1;
        }
        most = per_worker.into_values().fold(most, i64::max);
        ran_on.extend(running);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (most, ran_on)
}

/// 200 `Prefer: wait` claims against 50 idle, three workers, every database
/// connection of web and workers through a proxy adding 2 ms per chunk each way:
/// exactly 50 bound, one instance each, and no worker presumed dead.
#[tokio::test]
async fn claim_storm_on_a_slow_database() {
    let db = TestDb::new().await;
    let proxy = latency_proxy(server_of(&db.url), Duration::from_millis(2)).await;
    let slow_url = via_proxy(&db.url, proxy);
    let sim = spawn_sim(fast_sim()).await;
    let env = [("POOL_MIN_IDLE", "50"), ("POOL_MAX_WAITING", "200"), ("DATABASE_URL", slow_url.as_str())];
    let mut stack = Stack::start_on(db, sim, 3, &env).await;
    stack.wait_for_counts("50 idle", Duration::from_secs(60), |c| c["idle"] == 50 && c["provisioning"] == 0).await;
    stack.sim.sim.set_faults(Faults { failure_rate: Some(1.0), ..Faults::default() });
    stack.sim.sim.clear_requests();

    let answers = join_all((0..200).map(|i| {
        let stack = &stack;
        async move {
            let response = stack.post("/api/pool/claim", json!({ "agentName": format!("Slow {i}") }), 30).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    let mut jobs = Vec::new();
    for (status, body) in answers {
        *by_status.entry(status).or_default() += 1;
        match status {
            200 | 202 => jobs.push(body["id"].as_str().unwrap().to_owned()),
            503 => assert_eq!(body["code"], "no_idle_instance", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(jobs.len(), 50, "{by_status:?}");
    for id in &jobs {
        let job = stack.wait_job(id, Duration::from_secs(60)).await;
        assert_eq!(job.status, JobState::Succeeded, "{job:?}");
        assert_eq!(job.attempts, 1, "no run was rescued: {job:?}");
    }
    assert_eq!(conversations_in(&stack, "claimed").await.len(), 50);
    assert!(provisions_by_instance(&stack.sim.sim).values().all(|p| p.len() == 1), "one provision per instance");
    assert_no_shared_conversation(&stack.sim.sim);
    // Stopped, every worker has written what it counted.
    for w in 0..3 {
        assert!(stack.stop_worker(w).await.success(), "worker {w} stopped cleanly");
    }
    assert_eq!(stack.counter("pool_jobs_taken_back_total", "").await, 0.0, "no worker took a job back");
}

/// A running job cancelled by an operator stops at its safe point (`cancelled`);
/// a retry then runs it to the end instead of cancelling it again at start.
#[tokio::test]
async fn retry_after_cancel_while_running_runs_the_job() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    stack.wait_for_workers(1).await;
    stack.sim.sim.set_faults(Faults { latency_ms: Some(1500), ..Faults::default() });
    let reconcile: JobDoc = stack.post("/api/pool/reconcile", json!({}), 0).await.json().await.unwrap();
    wait_running(&stack, &reconcile.id).await;
    let cancel = stack.post(&format!("/api/jobs/{}/cancel", reconcile.id), json!({}), 0).await;
    assert!(cancel.status().is_success(), "{}", cancel.text().await.unwrap_or_default());
    let cancelled = stack.wait_job(&reconcile.id, Duration::from_secs(20)).await;
    assert_eq!(cancelled.status, JobState::Cancelled, "{cancelled:?}");

    stack.sim.sim.set_faults(Faults { latency_ms: Some(0), ..Faults::default() });
    let retry = stack.post(&format!("/api/jobs/{}/retry", reconcile.id), json!({}), 0).await;
    assert!(retry.status().is_success(), "{}", retry.text().await.unwrap_or_default());
    let done = stack.wait_job(&reconcile.id, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 1, "{done:?}");
}

/// A claim job that bound its instance but failed is retried by an operator: the
/// retried run meets 409 and completes from `/convos/status` (it is a re-run of the
/// same job, although its attempts were reset), instead of crashing the instance.
#[tokio::test]
async fn operator_retry_of_a_claim_keeps_the_409_rule() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    // An earlier run bound the instance, then the job failed for good.
    let instance = "retriedClaim";
    stack.sim.sim.add_service(instance);
    stack.sim.sim.bind(instance, "conv_earlier");
    tokio::time::sleep(Duration::from_millis(300)).await; // built
    let job = crate::fixtures::failed("claim_and_provision")
        .args(json!({"agentName": "Earlier", "instructions": "x"}))
        .runs(3)
        .error("services API: timeout")
        .insert(&stack.db.pool)
        .await;
    sqlx::query(
        "INSERT INTO instances (id, name, status, url, service_id, claim_job_id)
         VALUES ($1, 'convos-agent-' || $1, 'claiming', $2, 'svc-retried', $3)",
    )
    .bind(instance)
    .bind(format!("{}/i/{instance}", stack.sim.url))
    .bind(&job)
    .execute(&stack.db.pool)
    .await
    .unwrap();

    let retry = stack.post(&format!("/api/jobs/{job}/retry"), json!({}), 0).await;
    assert!(retry.status().is_success(), "{}", retry.text().await.unwrap_or_default());
    let done = stack.wait_job(&job, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    let claimed = conversations_in(&stack, "claimed").await;
    assert_eq!(claimed, [(instance.to_owned(), Some("conv_earlier".to_owned()))]);
}

/// Clients that hang up while their claim is being written (a 3 ms client timeout
/// against a database 4 ms away): no connection is left inside a transaction, and
/// every reservation has its job (the write is one statement, all or nothing). A
/// session counts as left behind when it has sat idle inside a transaction for more
/// than a second: the workers' own short transactions (a claim's binding, a refill)
/// may be between two statements at the moment of the check.
#[tokio::test]
async fn abandoned_claim_requests_leave_no_transaction_behind() {
    let db = TestDb::new().await;
    let proxy = latency_proxy(server_of(&db.url), Duration::from_millis(2)).await;
    let slow_url = via_proxy(&db.url, proxy);
    let sim = spawn_sim(fast_sim()).await;
    let env = [("POOL_MIN_IDLE", "20"), ("DATABASE_URL", slow_url.as_str())];
    let stack = Stack::start_on(db, sim, 1, &env).await;
    stack.wait_for_counts("20 idle", Duration::from_secs(60), |c| c["idle"] == 20).await;
    join_all((0..60).map(|i| {
        stack
            .request(reqwest::Method::POST, "/api/pool/claim")
            .json(&json!({ "agentName": format!("Gone {i}") }))
            .timeout(Duration::from_millis(3 + i % 5))
            .send()
    }))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let in_transaction: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'pool' AND state LIKE 'idle in transaction%'
           AND state_change < now() - interval '1 second'",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(in_transaction, 0, "sessions left inside a transaction");
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instances i WHERE i.status IN ('claiming', 'claimed')
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = i.claim_job_id)",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "reservations without their job");
}

/// `drain_idle` re-run after a crash: a run that crashed before taking its rows is
/// finished by the re-run (no under-drain); a run that took and destroyed its rows
/// before crashing is not repeated (no over-drain).
#[tokio::test]
async fn drain_rerun_finishes_exactly_the_drain_asked_for() {
    // POOL_MIN_IDLE is 0: nothing refills what the drains remove.
    let stack = Stack::start(fast_sim(), 1, &[]).await;
    stack.post("/api/pool/replenish", json!({ "count": 5 }), 10).await;
    stack.wait_for_counts("5 idle", Duration::from_secs(30), |c| c["idle"] == 5).await;
    let insert_drain = |progress: Option<Value>| {
        let pool = stack.db.pool.clone();
        async move {
            let id = pool::domain::JobId::generate();
            // An earlier run started (runs = 1) and crashed; the job is queued again.
            sqlx::query(
                "INSERT INTO jobs (id, kind, args, attempts, max_attempts, runs, progress)
                 VALUES ($1, 'drain_idle', '{\"count\": 2}', 1, 6, 1, $2)",
            )
            .bind(&id)
            .bind(progress)
            .execute(&pool)
            .await
            .unwrap();
            id
        }
    };
    // Crashed before taking anything: the re-run drains 2.
    let before_take = insert_drain(None).await;
    let done = stack.wait_job(&before_take, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.result.as_ref().unwrap()["drained"], 2, "{done:?}");
    stack.wait_for_counts("3 left", Duration::from_secs(10), |c| c["idle"] == 3 && c["draining"] == 0).await;

    // Took two rows, destroyed them and crashed before recording the outcome: the
    // re-run takes nothing more.
    let after_take = insert_drain(Some(json!({ "taken": ["goneAAAAAAAA", "goneBBBBBBBB"] }))).await;
    let done = stack.wait_job(&after_take, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    let counts = stack.counts().await;
    assert_eq!((counts["idle"].as_i64(), counts["draining"].as_i64()), (Some(3), Some(0)), "{counts}");
    let drained_by_it: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE drain_job_id = $1")
        .bind(&after_take)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(drained_by_it, 0, "the re-run took no row");
}
