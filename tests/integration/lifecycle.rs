//! The pool lifecycle end to end, through real `pool web` and `pool worker` processes.

use std::time::Duration;

use pool::store::JobState;
use serde_json::json;

use crate::{helpers::fast_sim, stack::Stack};

#[tokio::test]
async fn warm_claim_drain_kill_dismiss_enrich() {
    let stack = Stack::start(fast_sim(), 1, &[("POOL_MIN_IDLE", "5")]).await;
    stack.wait_for_counts("5 idle", Duration::from_secs(60), |c| c["idle"] == 5).await;

    let claim = stack.post("/api/pool/claim", json!({"agentName": "Ada"}), 30).await;
    assert_eq!(claim.status(), 200);
    let job: pool::queue::JobDoc = claim.json().await.unwrap();
    assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    let result = job.result.unwrap();
    let instance_id = result["instanceId"].as_str().unwrap().to_owned();
    let conversation = stack.sim.sim.conversation_of(&instance_id).expect("bound in the simulator");
    assert_eq!(result["conversationId"], conversation);

    // The claim used an idle instance; replenish restores min idle.
    stack.wait_for_counts("5 idle again", Duration::from_secs(60), |c| c["idle"] == 5 && c["claimed"] == 1).await;

    let drain = stack.post("/api/pool/drain", json!({"count": 2}), 30).await;
    let drained: pool::queue::JobDoc = drain.json().await.unwrap();
    assert_eq!(drained.status, JobState::Succeeded, "{drained:?}");
    assert_eq!(drained.result.unwrap()["drained"], 2);

    let kill = stack
        .request(reqwest::Method::DELETE, &format!("/api/pool/instances/{instance_id}"))
        .header("prefer", "wait=30")
        .send()
        .await
        .unwrap();
    let killed: pool::queue::JobDoc = kill.json().await.unwrap();
    assert_eq!(killed.status, JobState::Succeeded, "{killed:?}");
    assert!(!stack.sim.sim.service_ids().contains(&instance_id), "destroyed at the provider");
    assert!(stack.rows().await.iter().all(|(id, _)| id != &instance_id), "row deleted");

    let enrich = stack.post("/api/pool/enrich", json!({"all": true, "dryRun": true}), 30).await;
    let enriched: pool::queue::JobDoc = enrich.json().await.unwrap();
    assert_eq!(enriched.status, JobState::Succeeded, "{enriched:?}");
    assert!(enriched.result.unwrap()["enriched"].as_u64().unwrap() >= 1);
}
