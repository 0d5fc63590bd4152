//! Fresh instances: idle instances on an older image, or older than
//! `POOL_IDLE_MAX_AGE`, are replaced make-before-break — the pool never holds fewer
//! idle instances than its minimum meanwhile — and claimed ones are never touched;
//! and during a rollout claims take instances on the current image first.

use std::{collections::HashSet, time::Duration};

use serde_json::{Value, json};

use crate::{
    helpers::{TestDb, claim_job, fast_sim},
    stack::Stack,
};
use pool::{
    domain::InstanceId,
    queue::JobDoc,
    sim::SimConfig,
    store::{
        instances,
        jobs::claim::{self, Ask, Line, Reserved},
    },
};

/// Samples the counts until `done` holds, asserting at every sample that at least
/// `min_idle` instances are idle; returns the last counts.
async fn watch_idle(stack: &Stack, min_idle: i64, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let counts = stack.counts().await;
        let idle = counts["idle"].as_i64().unwrap();
        assert!(idle >= min_idle, "idle fell to {idle} while recycling: {counts}");
        if done(&counts) {
            return counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "recycling did not finish: {counts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn idle_instances_on_an_older_image_are_replaced_and_claimed_ones_kept() {
    let sim = SimConfig { build_time: Duration::from_millis(300), image: "agent:v1".into(), ..fast_sim() };
    let stack = Stack::start(sim, 1, &[("POOL_MIN_IDLE", "3")]).await;
    stack
        .wait_for_counts("3 idle on v1", Duration::from_secs(30), |c| c["idle"] == 3 && c["images"]["agent:v1"] == 3)
        .await;
    let claim: JobDoc = stack.post("/api/pool/claim", json!({}), 30).await.json().await.unwrap();
    let claimed = claim.result.unwrap()["instanceId"].as_str().unwrap().to_owned();
    stack.wait_for_counts("3 idle again", Duration::from_secs(30), |c| c["idle"] == 3 && c["provisioning"] == 0).await;

    // A new release: instances created from now on report v2.
    stack.sim.sim.set_image("agent:v2");
    let extra = stack.post("/api/pool/replenish", json!({"count": 1}), 30).await;
    assert_eq!(extra.status(), 200);
    let end = watch_idle(&stack, 3, Duration::from_secs(60), |c| {
        c["images"]["agent:v1"] == 1 && c["images"]["agent:v2"].as_i64() >= Some(3) && c["draining"] == 0
    })
    .await;
    assert_eq!(end["claimed"], 1, "{end}");
    let row: (String, Option<String>) = sqlx::query_as("SELECT status, image FROM instances WHERE id = $1")
        .bind(&claimed)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(row, ("claimed".to_owned(), Some("agent:v1".to_owned())), "the claimed instance is untouched");
    assert!(stack.sim.sim.service_ids().contains(&claimed));
}

#[tokio::test]
async fn idle_instances_past_their_max_age_are_replaced() {
    let sim = SimConfig { build_time: Duration::from_millis(300), ..fast_sim() };
    let stack = Stack::start(sim, 1, &[("POOL_MIN_IDLE", "2"), ("POOL_IDLE_MAX_AGE", "4s")]).await;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2).await;
    let first: HashSet<String> = sqlx::query_scalar("SELECT id FROM instances WHERE status = 'idle'")
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let gone = |ids: &HashSet<String>| ids.iter().all(|id| !stack.sim.sim.service_ids().contains(id));
    watch_idle(&stack, 2, Duration::from_secs(60), |_| gone(&first)).await;
    let retired: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'kill_instance'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert!(retired >= 2, "the old instances were removed by recycling ({retired} kills)");
}

/// During a rollout a claim takes an idle instance on the current image (the newest
/// row's, or `POOL_TARGET_IMAGE`) before older ones on the old image: the claim
/// request, a binding of waiting claims, and a claim job taking another instance.
#[tokio::test]
async fn claims_take_the_current_image_first_then_the_oldest() {
    let db = TestDb::new().await;
    crate::fixtures::idle("oldV1aaaaaaa").on_image("agent:v1").aged(Duration::from_secs(300)).insert(&db.pool).await;
    crate::fixtures::idle("oldV1bbbbbbb").on_image("agent:v1").aged(Duration::from_secs(250)).insert(&db.pool).await;
    crate::fixtures::idle("newV2aaaaaaa").on_image("agent:v2").aged(Duration::from_secs(200)).insert(&db.pool).await;
    crate::fixtures::idle("newV2bbbbbbb").on_image("agent:v2").aged(Duration::from_secs(100)).insert(&db.pool).await;
    crate::fixtures::idle("newV2ccccccc").on_image("agent:v2").aged(Duration::from_secs(50)).insert(&db.pool).await;

    let reserved = claim::reserve_and_enqueue(&db.pool, &claim_job("claimA"), Ask::default()).await.unwrap();
    assert_eq!(
        reserved,
        Reserved::Instance(InstanceId::parse("newV2aaaaaaa").unwrap()),
        "the oldest on the current image"
    );
    let mut conn = db.pool.acquire().await.unwrap();
    let other = instances::reserve_idle(&mut conn, &"claimB".into(), &[], None).await.unwrap().unwrap();
    assert_eq!(other.id.as_str(), "newV2bbbbbbb");

    let line = Line { wait: Duration::from_secs(30), max_waiting: 100 };
    sqlx::query("UPDATE instances SET status = 'provisioning' WHERE status = 'idle'").execute(&db.pool).await.unwrap();
    for id in ["claimC", "claimD"] {
        let ask = Ask { line: Some(line), ..Ask::default() };
        assert_eq!(claim::reserve_and_enqueue(&db.pool, &claim_job(id), ask).await.unwrap(), Reserved::Waiting);
    }
    sqlx::query("UPDATE instances SET status = 'idle' WHERE status = 'provisioning'").execute(&db.pool).await.unwrap();
    let mut bound: Vec<(String, String)> = claim::bind_waiting(&db.pool, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(job, instance)| (job.to_string(), instance.to_string()))
        .collect();
    bound.sort();
    let expected = [("claimC", "newV2ccccccc"), ("claimD", "oldV1aaaaaaa")].map(|(j, i)| (j.to_owned(), i.to_owned()));
    assert_eq!(bound, expected, "the first claim in line gets the current image, then the oldest");

    // POOL_TARGET_IMAGE names the current image, whatever the newest row runs.
    let ask = Ask { target_image: Some("agent:v1"), ..Ask::default() };
    let pinned = claim::reserve_and_enqueue(&db.pool, &claim_job("claimE"), ask).await.unwrap();
    assert_eq!(pinned, Reserved::Instance(InstanceId::parse("oldV1bbbbbbb").unwrap()));
}

/// End to end: after a new release, a claim gets the instance on the new image though
/// instances on the old one have been idle longer.
#[tokio::test]
async fn after_a_release_a_claim_gets_an_instance_on_the_new_image() {
    let sim = SimConfig { build_time: Duration::from_millis(300), image: "agent:v1".into(), ..fast_sim() };
    let never = [("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")];
    let stack = Stack::start(sim, 1, &[never[0], never[1], ("POOL_MIN_IDLE", "2")]).await;
    stack
        .wait_for_counts("2 idle on v1", Duration::from_secs(30), |c| c["images"]["agent:v1"] == 2 && c["idle"] == 2)
        .await;
    stack.sim.sim.set_image("agent:v2");
    let extra = stack.post("/api/pool/replenish", json!({"count": 1}), 30).await;
    assert_eq!(extra.status(), 200);
    stack.wait_for_counts("v2 idle", Duration::from_secs(30), |c| c["images"]["agent:v2"] == 1 && c["idle"] == 3).await;
    let v2: String = sqlx::query_scalar("SELECT id FROM instances WHERE image = 'agent:v2'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();

    let claim: JobDoc = stack.post("/api/pool/claim", json!({}), 30).await.json().await.unwrap();
    assert_eq!(claim.result.unwrap()["instanceId"], v2.as_str(), "the claim took the stale instance");
}
