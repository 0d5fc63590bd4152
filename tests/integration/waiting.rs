//! An adaptive pool: claims wait for capacity first in first out, new
//! instances become claimable within seconds of being ready, the pool fills at start.
//! The warm target: `buffer.rs`.

use std::{collections::HashSet, time::Duration};

use futures::future::join_all;
use pool::{queue::JobDoc, sim::SimConfig, store::JobState};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{API_KEY, NO_SCHEDULES, fast_sim},
    stack::Stack,
};

async fn claim_at(stack: &Stack, base: &str, wait: u64) -> reqwest::Response {
    let req = stack.http.post(format!("{base}/api/pool/claim")).bearer_auth(API_KEY).json(&json!({}));
    req.header("prefer", format!("wait={wait}")).send().await.unwrap()
}

/// Eight claims into an empty pool through two web processes, two workers binding:
/// each gets its own instance, in the order the claims arrived.
#[tokio::test]
async fn waiting_claims_are_served_first_in_first_out_across_replicas() {
    let sim = SimConfig { build_time: Duration::from_secs(1), ..fast_sim() };
    let stack = Stack::start(sim, 2, &[("RECONCILE_SCHEDULE", "*/5 * * * * *")]).await;
    let (_web, other) = stack.another_web().await;
    // One after another, alternating web processes; all wait at once.
    let answers = join_all((0..8u64).map(|i| {
        let (stack, base) = (&stack, if i % 2 == 0 { stack.web_url.clone() } else { other.clone() });
        async move {
            tokio::time::sleep(Duration::from_millis(150 * i)).await;
            claim_at(stack, &base, 30).await
        }
    }))
    .await;
    let mut docs = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::OK);
        docs.push(answer.json::<JobDoc>().await.unwrap());
    }
    let instances: HashSet<String> =
        docs.iter().map(|d| d.result.as_ref().unwrap()["instanceId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(instances.len(), 8, "none bound twice: {docs:?}");
    let mut by_arrival = docs.clone();
    by_arrival.sort_by_key(|d| d.created_at);
    for pair in by_arrival.windows(2) {
        assert!(pair[0].run_at <= pair[1].run_at, "bound out of order: {:?} then {:?}", pair[0], pair[1]);
    }
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE status = 'claimed'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(claimed, 8);
}

/// A client that leaves while its claim waits takes it out of the line: no instance
/// is bound to it, and the claim behind it is served.
#[tokio::test]
async fn an_abandoned_waiting_claim_binds_nothing() {
    let sim = SimConfig { build_time: Duration::from_secs(3), ..fast_sim() };
    let stack = Stack::start(sim, 1, &[]).await;
    let impatient = stack.http.post(stack.url("/api/pool/claim")).bearer_auth(API_KEY).json(&json!({}));
    let gave_up = impatient.header("prefer", "wait=30").timeout(Duration::from_millis(800)).send().await;
    assert!(gave_up.is_err(), "the client left before an instance was ready");
    let left: String = sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'claim_and_provision'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();

    let served = claim_at(&stack, &stack.web_url, 30).await;
    assert_eq!(served.status(), StatusCode::OK);
    let served: JobDoc = served.json().await.unwrap();
    assert_eq!(served.status, JobState::Succeeded, "{served:?}");
    let abandoned = stack.wait_job(&left, Duration::from_secs(5)).await;
    assert_eq!(abandoned.status, JobState::Cancelled, "{abandoned:?}");
    let holders: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE claim_job_id = $1")
        .bind(&left)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(holders, 0, "no instance was bound to the abandoned claim");
}

/// With no capacity coming, a waiting claim ends at N with `no_idle_instance` and
/// reserves nothing; without `Prefer: wait` a claim still answers 503 at once.
#[tokio::test]
async fn a_waiting_claim_expires_cleanly() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    let paused = stack.request(reqwest::Method::POST, "/api/jobs/kinds/provision_instance/pause").send().await.unwrap();
    assert_eq!(paused.status(), StatusCode::OK);

    let expired = claim_at(&stack, &stack.web_url, 2).await;
    assert_eq!(expired.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["code"], "no_idle_instance", "{body}");
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state, error FROM jobs WHERE kind = 'claim_and_provision'")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(state, "failed");
    assert!(error.is_some_and(|e| e.starts_with("no_idle_instance")));
    let reserved: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE claim_job_id IS NOT NULL")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(reserved, 0);

    // Its client was answered 503: an operator's bulk retry of failed claims leaves
    // it (it would bind an instance for nobody) and retries one that ran.
    let expired_id: String = sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'claim_and_provision'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    let ran = crate::fixtures::failed("claim_and_provision")
        .args(json!({"agentName": "Ran", "instructions": "x"}))
        .runs(3)
        .error("services API: timeout")
        .insert(&stack.db.pool)
        .await;
    let retried = stack.post("/api/jobs/retry", json!({"kind": "claim_and_provision", "status": "failed"}), 0).await;
    assert_eq!(retried.status(), StatusCode::OK);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["ids"], json!([ran]), "{retried}");
    assert_eq!(retried["answeredClaims"], json!([expired_id]), "{retried}");
    let state: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
        .bind(&expired_id)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(state, "failed");
    sqlx::query("DELETE FROM jobs WHERE id = $1").bind(&ran).execute(&stack.db.pool).await.unwrap();

    let at_once = stack.post("/api/pool/claim", json!({}), 0).await;
    assert_eq!(at_once.status(), StatusCode::SERVICE_UNAVAILABLE);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'claim_and_provision'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "a claim without Prefer: wait enqueues nothing");
}

/// With the schedules off, a starting worker fills the pool by itself and the new
/// instances become idle through the readiness follow-up, not reconcile.
#[tokio::test]
async fn a_starting_worker_fills_the_pool_and_readiness_is_followed() {
    let sim = SimConfig { build_time: Duration::from_secs(1), ..fast_sim() };
    let stack = Stack::start(sim, 1, &[NO_SCHEDULES[0], NO_SCHEDULES[1], ("POOL_MIN_IDLE", "3")]).await;
    stack.wait_for_counts("3 idle", Duration::from_secs(30), |c| c["idle"] == 3).await;
    let reconciles: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'reconcile'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(reconciles, 0, "no reconcile ran");
    let ready: Value = sqlx::query_scalar("SELECT result FROM jobs WHERE kind = 'check_ready' AND state = 'succeeded'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert!(ready["becameIdle"].as_i64().unwrap_or(0) >= 1, "{ready}");
    // Its rounds while the builds ran are not failures: no attempt kept, none logged.
    let (rounds, kept): (i32, i64) = sqlx::query_as(
        "SELECT max(j.runs), (SELECT count(*) FROM job_attempts a JOIN jobs k ON k.id = a.job_id
                              WHERE k.kind = 'check_ready')
         FROM jobs j WHERE j.kind = 'check_ready'",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert!(rounds > 1 && kept == 0, "{rounds} rounds, {kept} kept as failed attempts");
}
