//! Upstream faults end to end: the services rate limit shared by worker replicas,
//! retries through intermittent failures, and a job that ran out of attempts being
//! retried by an operator.

use std::{collections::BTreeSet, time::Duration};

use pool::{
    queue::JobDoc,
    sim::{Faults, SimConfig},
    store::JobState,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::fast_sim,
    stack::{Stack, eventually},
};

/// Whether a logged request was a services API call (not an instance endpoint).
fn is_services_call(path: &str) -> bool {
    path == "/create-instance" || path == "/status/batch" || path.starts_with("/destroy/")
}

/// Rows with a service id, i.e. whose provision succeeded.
async fn provisioned(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM instances WHERE service_id IS NOT NULL")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

async fn replenish(stack: &Stack, count: u32) -> Vec<String> {
    let response = stack.post("/api/pool/replenish", json!({ "count": count }), 30).await;
    assert_eq!(response.status(), StatusCode::OK);
    let job: JobDoc = response.json().await.unwrap();
    assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    serde_json::from_value(job.result.unwrap()["instanceIds"].clone()).unwrap()
}

async fn job_doc(stack: &Stack, id: &str) -> (StatusCode, Value) {
    let response = stack.request(Method::GET, &format!("/api/jobs/{id}")).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// (a) `SERVICES_RATE_PER_SEC=5`, `SERVICES_RATE_BURST=5` across two worker processes:
/// 40 creates plus every reconcile's batch never exceed 5 + 5 calls in any 1 s window.
#[tokio::test]
async fn services_rate_limit_holds_across_two_workers() {
    let stack = Stack::start(
        fast_sim(),
        2,
        &[("SERVICES_RATE_PER_SEC", "5"), ("SERVICES_RATE_BURST", "5"), ("JOB_DEFAULT_CONCURRENCY", "8")],
    )
    .await;
    let mut ids = replenish(&stack, 20).await;
    ids.extend(replenish(&stack, 20).await);
    assert_eq!(ids.len(), 40);

    let done = eventually(Duration::from_secs(45), || async { (provisioned(&stack).await == 40).then_some(()) }).await;
    assert!(done.is_some(), "only {} of 40 provisioned", provisioned(&stack).await);
    let mut services = stack.sim.sim.service_ids();
    services.sort();
    ids.sort();
    assert_eq!(services, ids, "one service per instance");

    let calls: Vec<_> = stack.sim.sim.requests().into_iter().filter(|r| is_services_call(&r.path)).collect();
    let creates = calls.iter().filter(|r| r.path == "/create-instance").count();
    assert_eq!(creates, 40, "no failures, so exactly one create per instance");
    assert!(calls.iter().any(|r| r.path == "/status/batch"), "reconciles share the budget");
    assert!(calls.iter().all(|r| r.status < 400), "the simulator never limited or failed");
    let at: Vec<u64> = calls.iter().map(|r| r.at_ms).collect();
    let (worst, start) = busiest_second(&at);
    eprintln!("busiest second: {worst} services calls from {start} ms ({} calls in all)", at.len());
    assert!(worst <= 10, "{worst} services calls in the second from {start} ms; limit is 5/s + burst 5");
}

/// The most timestamps (ms) inside any half-open 1000 ms window, and where it starts.
fn busiest_second(at: &[u64]) -> (usize, u64) {
    let mut at = at.to_vec();
    at.sort_unstable();
    let mut best = (0, 0);
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= 1000 {
            lo += 1;
        }
        if hi - lo + 1 > best.0 {
            best = (hi - lo + 1, at[lo]);
        }
    }
    best
}

#[test]
fn busiest_second_counts_a_sliding_window() {
    assert_eq!(busiest_second(&[]), (0, 0));
    assert_eq!(busiest_second(&[0, 999, 1000, 1500, 1999]).0, 3);
    assert_eq!(busiest_second(&[0, 999, 1000, 1500, 1998]), (4, 999));
    assert_eq!(busiest_second(&[5, 0, 2000]).0, 2);
}

/// (b) With 20% of services calls failing, every provision still succeeds through
/// retries, and exactly one service exists per instance (no duplicates, no leaks).
#[tokio::test]
async fn provisions_succeed_through_intermittent_failures() {
    let stack = Stack::start(fast_sim(), 1, &[("JOB_MAX_ATTEMPTS", "10")]).await;
    // Every first attempt fails, so every job provably goes through a retry; then the
    // failure rate drops to 20%.
    stack.sim.sim.set_faults(Faults { failure_rate: Some(1.0), ..Faults::default() });
    let mut ids = replenish(&stack, 10).await;
    let failed_first = eventually(Duration::from_secs(20), || async {
        let failed: BTreeSet<String> = stack
            .sim
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.path == "/create-instance" && r.status == 500)
            .filter_map(|r| r.instance_id)
            .collect();
        (failed.len() == 10).then_some(())
    })
    .await;
    assert!(failed_first.is_some(), "not every provision made a failing first attempt");
    // A retry asks `/status/batch` before it may create again (create-instance is
    // not idempotent upstream), so it makes two calls that may each fail: at 20 %
    // an attempt succeeds 64 % of the time. Every job ends (succeeded or failed)
    // within its attempts' backoff, which only a hang exceeds 300 s.
    stack.sim.sim.set_faults(Faults { failure_rate: Some(0.2), ..Faults::default() });
    let ended = eventually(Duration::from_secs(300), || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'provision_instance' AND state IN ('queued', 'running')",
        )
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
        (open == 0).then_some(())
    });
    assert!(ended.await.is_some(), "every provision job ended");
    let done = (provisioned(&stack).await == 10).then_some(());
    assert!(done.is_some(), "only {} of 10 provisioned; rows: {:?}", provisioned(&stack).await, stack.rows().await);
    let mut services = stack.sim.sim.service_ids();
    services.sort();
    ids.sort();
    assert_eq!(services, ids, "one service per instance");

    let jobs: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT id, state, attempts FROM jobs WHERE kind = 'provision_instance' ORDER BY id")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(jobs.len(), 10);
    for (id, status, attempts) in &jobs {
        assert_eq!(status, "succeeded", "job {id}");
        assert!(*attempts >= 2, "job {id} succeeded after a failure, so ≥ 2 attempts, got {attempts}");
        let (code, doc) = job_doc(&stack, id).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(doc["status"], "succeeded", "{doc}");
    }
    // Each instance was created (2xx) exactly once at the services API.
    let created: Vec<String> = stack
        .sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/create-instance" && r.status == 200)
        .filter_map(|r| r.instance_id)
        .collect();
    assert_eq!(created.len(), 10, "{created:?}");
}

/// (c) A provision that exhausted `JOB_MAX_ATTEMPTS` ends `failed` with the
/// upstream's message; an operator retry re-queues it with its attempts reset and it
/// then succeeds. Only failed or cancelled jobs can be retried; unknown ids are 404.
#[tokio::test]
async fn exhausted_job_fails_and_operator_retry_succeeds() {
    let sim = SimConfig { failure_rate: 1.0, ..fast_sim() };
    // No schedules: a scheduled replenish would re-drive the failed provision itself.
    let env = [("JOB_MAX_ATTEMPTS", "2"), ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")];
    let stack = Stack::start(sim, 1, &env).await;
    let ids = replenish(&stack, 1).await;
    let instance_id = &ids[0];
    let job_id: String = sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'provision_instance'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();

    let failed = stack.wait_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(failed.status, JobState::Failed, "{failed:?}");
    assert_eq!(failed.kind, "provision_instance");
    assert_eq!(failed.attempts, 2);
    assert_eq!(failed.max_attempts, 2);
    assert_eq!(failed.args, json!({ "instanceId": instance_id }));
    let error = failed.error.clone().expect("the last attempt's error");
    assert!(error.contains("upstream exploded"), "the upstream's message: {error}");
    assert!(error.contains("500"), "{error}");
    assert!(failed.finished_at.is_some());
    let runs = failed.history.clone().expect("the job detail has the history of its runs");
    let outcomes: Vec<(i32, &str)> = runs.iter().map(|a| (a.run, a.outcome.as_str())).collect();
    assert_eq!(outcomes, [(1, "retry"), (2, "failed")], "every attempt, not only the last: {runs:?}");
    assert!(runs.iter().all(|a| a.error.as_deref().is_some_and(|e| e.contains("500")) && a.worker.is_some()));
    // create-instance is not idempotent upstream: the second attempt first asks
    // `/status/batch` whether the first one made a service, and that failed too.
    let calls: Vec<String> = stack.sim.sim.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(calls, ["/create-instance", "/status/batch"], "one call per attempt, none after the last");
    assert!(stack.sim.sim.service_ids().is_empty());

    stack.sim.sim.set_faults(Faults { failure_rate: Some(0.0), ..Faults::default() });
    let response = stack.post(&format!("/api/jobs/{job_id}/retry"), json!({}), 0).await;
    assert_eq!(response.status(), StatusCode::OK);
    let retried: JobDoc = response.json().await.unwrap();
    assert_eq!(retried.id.as_str(), job_id);
    assert_eq!(retried.status, JobState::Queued);
    assert_eq!(retried.attempts, 0);
    assert_eq!(retried.error, None);

    let done = stack.wait_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    assert_eq!(done.attempts, 1);
    let outcomes: Vec<(i32, String)> = done.history.clone().unwrap().into_iter().map(|a| (a.run, a.outcome)).collect();
    assert_eq!(
        outcomes,
        [(1, "retry".into()), (2, "failed".into()), (3, "succeeded".into())],
        "a retry keeps the history"
    );
    assert_eq!(done.result.as_ref().unwrap()["instanceId"], instance_id.as_str());
    assert_eq!(stack.sim.sim.service_ids(), vec![instance_id.clone()]);
    assert_eq!(provisioned(&stack).await, 1);

    let response = stack.post(&format!("/api/jobs/{job_id}/retry"), json!({}), 0).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert!(body["code"].is_string() && body["error"].is_string(), "{body}");
    let (code, doc) = job_doc(&stack, &job_id).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(doc["status"], "succeeded", "a refused retry changes nothing: {doc}");

    let unknown = ulid::Ulid::generate().to_string();
    let response = stack.post(&format!("/api/jobs/{unknown}/retry"), json!({}), 0).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(job_doc(&stack, &unknown).await.0, StatusCode::NOT_FOUND);
}

/// A services outage longer than a provision's retries (SPEC invariant 4): the
/// provisions give up while the API is down; within one replenish period after it
/// answers again they are re-driven, and the pool reaches `POOL_MIN_IDLE` with exactly
/// those instances (no phantom rows, no duplicates at the provider).
#[tokio::test]
async fn pool_refills_after_an_outage_longer_than_the_provision_retries() {
    let sim = SimConfig { failure_rate: 1.0, ..fast_sim() };
    let env =
        [("POOL_MIN_IDLE", "4"), ("JOB_MAX_ATTEMPTS_PROVISION_INSTANCE", "2"), ("REPLENISH_SCHEDULE", "*/2 * * * * *")];
    let stack = Stack::start(sim, 2, &env).await;
    let gave_up = eventually(Duration::from_secs(30), || async {
        let failed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'provision_instance' AND state = 'failed'")
                .fetch_one(&stack.db.pool)
                .await
                .unwrap();
        (failed >= 4).then_some(())
    })
    .await;
    assert!(gave_up.is_some(), "the provisions gave up during the outage");
    let during = stack.counts().await;
    assert_eq!(during["provisioning"], 4, "{during}");

    stack.sim.sim.set_faults(Faults { failure_rate: Some(0.0), ..Faults::default() });
    stack.wait_for_counts("4 idle after the outage", Duration::from_secs(30), |c| c["idle"] == 4).await;
    let counts = stack.counts().await;
    assert_eq!(counts["provisioning"], 0, "{counts}");
    assert_eq!(stack.sim.sim.service_ids().len(), 4, "one service per row");
}

const MAX_PAUSE: Duration = Duration::from_secs(300);

/// A 429 with `Retry-After` seen by one caller holds back every caller of the shared
/// limit (all replicas): the next reservation waits out the pause.
#[tokio::test]
async fn retry_after_pauses_the_shared_limit_for_everyone() {
    let db = crate::helpers::TestDb::new().await;
    let first = pool::store::rate_limit::reserve(&db.pool, "services_api", 100, 10, MAX_PAUSE).await.unwrap();
    assert!(first.wait.is_zero(), "{first:?}");
    pool::store::rate_limit::pause(&db.pool, "services_api", 100, 10, Duration::from_secs(3)).await.unwrap();
    let next = pool::store::rate_limit::reserve(&db.pool, "services_api", 100, 10, MAX_PAUSE).await.unwrap();
    assert!(next.wait > Duration::from_millis(2500) && next.wait <= Duration::from_secs(3), "{next:?}");
    let after = pool::store::rate_limit::reserve(&db.pool, "services_api", 100, 10, MAX_PAUSE).await.unwrap();
    assert!(after.wait > Duration::from_millis(2000), "later callers are held back too: {after:?}");
}

/// A pause stored further ahead than the cap (an older release took `Retry-After:
/// 86400` at its word) is shortened to the cap by the next reservation.
#[tokio::test]
async fn a_pause_beyond_the_cap_is_shortened() {
    let db = crate::helpers::TestDb::new().await;
    sqlx::query("INSERT INTO rate_limits (name, tat) VALUES ('services_api', now() + interval '1 day')")
        .execute(&db.pool)
        .await
        .unwrap();
    let cap = Duration::from_secs(2);
    let slot = pool::store::rate_limit::reserve(&db.pool, "services_api", 100, 10, cap).await.unwrap();
    assert!(slot.wait <= cap, "{slot:?}");
}
