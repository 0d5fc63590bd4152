//! The warm target: it follows demand — bursts, decayed over tens of
//! minutes — over a lead time measured from Pool's own instances, within
//! `POOL_MAX_WARM`, which waiting claims share and never starve behind.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{API_KEY, fast_sim},
    stack::{Stack, eventually},
};
use pool::sim::SimConfig;

async fn claim_waiting(stack: &Stack, wait: u64) -> reqwest::Response {
    let req = stack.http.post(stack.url("/api/pool/claim")).bearer_auth(API_KEY).json(&json!({}));
    req.header("prefer", format!("wait={wait}")).send().await.unwrap()
}

/// The lead time is the p90 of create → idle of the instances Pool created and saw
/// become idle in the last hour, read exactly from their rows (not from histogram
/// buckets, which put an 11 s lead anywhere in 10–30 s).
#[tokio::test]
async fn the_lead_time_is_the_p90_of_pools_own_instances() {
    let env = [("POOL_BUFFER", "adaptive"), ("POOL_MIN_IDLE", "1")];
    let stack = Stack::start(fast_sim(), 0, &env).await;
    assert_eq!(stack.counts().await["buffer"]["leadTimeSeconds"], 60.0, "the default before any");
    sqlx::query(
        "INSERT INTO instances (id, status, created_by_job, created_at, ready_at)
         SELECT 'lead' || lpad(g::text, 8, '0'), 'claimed', CASE WHEN g <> 11 THEN 'job' END, t, t + interval '11 s'
                + CASE WHEN g > 10 THEN interval '300 s' ELSE interval '0 s' END
         FROM generate_series(1, 12) g,
              LATERAL (SELECT now() - CASE WHEN g = 12 THEN interval '2 hours' ELSE interval '5 min' END AS t) c",
    )
    .execute(&stack.db.pool)
    .await
    .unwrap();
    // Ten created by a job, 11 s each; one adopted (no job) and one two hours old,
    // both slow: neither counts. (Each process reads the lead time every 5 s at most.)
    let counts = stack
        .wait_for_counts("a measured lead time", Duration::from_secs(20), |c| c["buffer"]["leadTimeSeconds"] != 60.0);
    let buffer = counts.await["buffer"].clone();
    assert_eq!(buffer["leadTimeSeconds"], 11.0, "{buffer}");
}

/// A real instance becoming idle records when, and the lead time is its own.
#[tokio::test]
async fn an_instance_becoming_idle_records_its_lead_time() {
    let sim = SimConfig { build_time: Duration::from_secs(1), ..fast_sim() };
    let stack = Stack::start(sim, 1, &[("POOL_BUFFER", "adaptive"), ("POOL_MIN_IDLE", "1")]).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    let lead: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM ready_at - created_at)::float8 FROM instances
         WHERE status = 'idle' AND created_by_job IS NOT NULL",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    let measured = |c: &serde_json::Value| c["buffer"]["leadTimeSeconds"] != 60.0;
    let buffer =
        stack.wait_for_counts("a measured lead time", Duration::from_secs(20), measured).await["buffer"].clone();
    let reported = buffer["leadTimeSeconds"].as_f64().unwrap();
    assert!(lead > 0.0 && (reported - lead).abs() < 1e-6, "row {lead} s, counts {buffer}");
}

/// Claims turned away (503 without `Prefer: wait`) leave no job but are demand: a
/// burst of them counts in the burst measure like claims that were served.
#[tokio::test]
async fn claims_turned_away_count_as_demand() {
    let env = [("POOL_BUFFER", "adaptive"), ("POOL_MIN_IDLE", "1"), ("POOL_MAX_WARM", "12")];
    let stack = Stack::start(fast_sim(), 0, &env).await;
    let answers = join_all((0..30).map(|_| stack.post("/api/pool/claim", json!({}), 0))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE), "no instance at all");
    let buffer = stack.counts().await["buffer"].clone();
    let burst = buffer["burstClaims"].as_f64().unwrap();
    assert!(burst > 29.0 && burst <= 30.0, "30 claims within the lead time: {buffer}");
    assert_eq!((buffer["target"].as_i64(), buffer["reason"].as_str()), (Some(12), Some("max_warm")), "{buffer}");
}

/// The adaptive target rises on a burst of claims (within a flush, seconds) and is
/// bounded by `POOL_MAX_WARM`; the pool never holds more than that while claims
/// storm without waiting.
#[tokio::test]
async fn the_warm_target_rises_on_a_burst_within_the_ceiling() {
    let sim = SimConfig { build_time: Duration::from_secs(2), ..fast_sim() };
    let env = [("POOL_BUFFER", "adaptive"), ("POOL_MIN_IDLE", "1"), ("POOL_MAX_WARM", "4")];
    let stack = Stack::start(sim, 1, &env).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    let before = stack.counts().await;
    assert_eq!((before["buffer"]["target"].as_i64(), before["buffer"]["reason"].as_str()), (Some(1), Some("min_idle")));

    let storm = join_all((0..200).map(|_| stack.post("/api/pool/claim", json!({}), 0))).await;
    assert!(storm.iter().any(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE), "the storm emptied the pool");
    let mut highest = 0;
    let risen = eventually(Duration::from_secs(20), || {
        let stack = &stack;
        async move {
            let c = stack.counts().await;
            Some(c).filter(|c| c["buffer"]["target"].as_i64() > Some(1))
        }
    })
    .await
    .expect("the target rose with the burst");
    assert_eq!(risen["buffer"]["reason"], "max_warm", "200 claims in a minute over a 2 s+ lead time: {risen}");
    assert_eq!(risen["buffer"]["target"], 4, "{risen}");
    for _ in 0..30 {
        let c = stack.counts().await;
        highest = highest.max(c["idle"].as_i64().unwrap() + c["provisioning"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.wait_for_counts("4 warm", Duration::from_secs(30), |c| c["idle"] == 4).await;
    assert!(highest <= 4, "idle + provisioning reached {highest}, over POOL_MAX_WARM");
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("pool_warm_target 4\n") && metrics.contains("pool_max_warm 4\n"), "{metrics}");
}

/// `POOL_MAX_WARM` bounds `idle + provisioning` while claims wait, too: instances for
/// waiting claims fill the ceiling before the buffer does, and only more waiting claims
/// than the ceiling take it higher (one instance each, no buffer) — none is starved.
#[tokio::test]
async fn the_ceiling_holds_while_claims_wait_and_starves_none() {
    let sim = SimConfig { build_time: Duration::from_secs(2), ..fast_sim() };
    let env = [("POOL_BUFFER", "adaptive"), ("POOL_MIN_IDLE", "1"), ("POOL_MAX_WARM", "4")];
    let stack = Stack::start(sim, 1, &env).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    join_all((0..200).map(|_| stack.post("/api/pool/claim", json!({}), 0))).await;
    stack.wait_for_counts("the target at the ceiling", Duration::from_secs(20), |c| c["buffer"]["target"] == 4).await;

    let sampling = async {
        let mut worst = None;
        for _ in 0..60 {
            // One statement: the counts and the waiting claims of one snapshot.
            let (warm, waiting): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM instances WHERE status IN ('idle', 'provisioning')),
                        (SELECT count(*) FROM jobs WHERE waiting AND state = 'queued')",
            )
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
            if warm > waiting.max(4) {
                worst = worst.max(Some((warm, waiting)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        worst
    };
    let claims = join_all((0..6).map(|_| claim_waiting(&stack, 30)));
    let (answers, over) = tokio::join!(claims, sampling);
    let bound = answers.iter().filter(|r| r.status() == StatusCode::OK).count();
    assert_eq!(bound, 6, "every waiting claim got an instance");
    assert_eq!(over, None, "(idle + provisioning, waiting) over max(POOL_MAX_WARM, waiting)");
}

/// A burst raises the target to its size; the same burst half an hour ago counts for
/// e^-2 of it (a 15-minute time constant): the buffer decays over tens of minutes.
#[tokio::test]
async fn a_burst_raises_the_target_and_is_forgotten_over_tens_of_minutes() {
    let env = [("POOL_BUFFER", "adaptive"), ("POOL_MIN_IDLE", "1"), ("POOL_MAX_WARM", "12")];
    let stack = Stack::start(fast_sim(), 0, &env).await;
    let burst = |minutes_ago: i32| {
        sqlx::query(
            "INSERT INTO jobs (id, kind, args, state, max_attempts, created_at, finished_at)
             SELECT 'burst' || $1 || '-' || g, 'claim_and_provision', '{}', 'succeeded', 1,
                    now() - make_interval(mins => $1) + make_interval(secs => g), now()
             FROM generate_series(1, 9) g",
        )
        .bind(minutes_ago)
    };
    burst(30).execute(&stack.db.pool).await.unwrap();
    let old = stack.counts().await["buffer"].clone();
    let remembered = old["burstClaims"].as_f64().unwrap();
    assert!((1.1..1.3).contains(&remembered), "9 × e^-2 ≈ 1.22: {old}");
    assert_eq!((old["target"].as_i64(), old["reason"].as_str()), (Some(2), Some("demand")), "{old}");

    burst(1).execute(&stack.db.pool).await.unwrap();
    let fresh = stack.counts().await["buffer"].clone();
    assert_eq!((fresh["target"].as_i64(), fresh["reason"].as_str()), (Some(9), Some("demand")), "{fresh}");
}
