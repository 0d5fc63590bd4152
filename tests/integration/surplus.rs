//! Giving back: idle instances above the warm target — left behind by
//! claims that gave up — are drained after `POOL_SURPLUS_COOLDOWN`, oldest first,
//! never below the target, never a claimed one.

use std::{collections::HashSet, time::Duration};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{helpers::fast_sim, stack::Stack};
use pool::{queue::JobDoc, sim::SimConfig};

/// `idle + provisioning` of one snapshot.
fn warm(counts: &Value) -> i64 {
    counts["idle"].as_i64().unwrap() + counts["provisioning"].as_i64().unwrap()
}

/// Claims each bound to an instance at once; returns the instance ids.
async fn claim_bound(stack: &Stack, n: usize) -> Vec<String> {
    let docs = join_all((0..n).map(|_| stack.post("/api/pool/claim", json!({}), 30))).await;
    let mut ids = Vec::new();
    for answer in docs {
        assert_eq!(answer.status(), StatusCode::OK);
        let doc: JobDoc = answer.json().await.unwrap();
        ids.push(doc.result.unwrap()["instanceId"].as_str().unwrap().to_owned());
    }
    ids
}

/// Twelve claims with `Prefer: wait=2` on a pool of two (4 s builds): ten give up and
/// leave ten instances behind. After the cooldown the pool is drained back to its
/// target of two, and never below it; the claimed instances are untouched.
#[tokio::test]
async fn surplus_left_by_a_storm_is_given_back_down_to_the_target() {
    let sim = SimConfig { build_time: Duration::from_secs(4), ..fast_sim() };
    let env = [("POOL_MIN_IDLE", "2"), ("POOL_MAX_WARM", "4"), ("POOL_SURPLUS_COOLDOWN", "2s")];
    let stack = Stack::start(sim, 1, &env).await;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2).await;
    let mut claimed = claim_bound(&stack, 2).await;
    stack.wait_for_counts("2 idle again", Duration::from_secs(30), |c| c["idle"] == 2).await;

    let storm = join_all((0..12).map(|_| stack.post("/api/pool/claim", json!({}), 2))).await;
    let mut gave_up = 0;
    for answer in storm {
        match answer.status() {
            StatusCode::OK => {
                let doc: JobDoc = answer.json().await.unwrap();
                claimed.push(doc.result.unwrap()["instanceId"].as_str().unwrap().to_owned());
            }
            StatusCode::SERVICE_UNAVAILABLE => gave_up += 1,
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!(gave_up >= 8, "the storm outran the builds: {gave_up} gave up");
    // The instances left behind take the pool above its ceiling.
    stack.wait_for_counts("the surplus", Duration::from_secs(30), |c| warm(c) > 4).await;

    // Sampled until the pool is back at its target: never below it meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let end = loop {
        let counts = stack.counts().await;
        assert!(warm(&counts) >= 2, "drained below the target: {counts}");
        if counts["idle"] == 2 && counts["provisioning"] == 0 && counts["draining"] == 0 {
            break counts;
        }
        assert!(tokio::time::Instant::now() < deadline, "the surplus stayed: {counts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(end["claimed"].as_i64(), Some(claimed.len() as i64), "{end}");
    let still: HashSet<String> = sqlx::query_scalar("SELECT id FROM instances WHERE status = 'claimed'")
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(still, claimed.iter().cloned().collect(), "no claimed instance was drained");
    let services = stack.sim.sim.service_ids();
    assert!(claimed.iter().all(|id| services.contains(id)), "the claimed instances run on");
}
