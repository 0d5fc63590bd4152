//! Fresh instances (issue 12): idle instances on an older image, or older than
//! `POOL_IDLE_MAX_AGE`, are replaced make-before-break — the pool never holds fewer
//! idle instances than its minimum meanwhile — and claimed ones are never touched.

use std::{collections::HashSet, time::Duration};

use serde_json::{Value, json};

use crate::{helpers::fast_sim, stack::Stack};
use pool::{queue::JobDoc, sim::SimConfig};

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
