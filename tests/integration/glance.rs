//! Cost and availability at a glance: warm instance-hours and the share of
//! claims bound at once, over the last hour and day, in `/api/pool/counts` and
//! `/metrics`, from the per-minute rows every process writes.

use std::time::Duration;

use serde_json::json;

use crate::{helpers::fast_sim, stack::Stack};
use pool::sim::SimConfig;

/// Adds `count` to series `name{labels}` in each minute `from..=to` minutes ago.
async fn minutes(stack: &Stack, name: &str, labels: &str, count: f64, from: i32, to: i32) {
    sqlx::query(
        "INSERT INTO metric_minutes (minute, name, labels, count)
         SELECT date_trunc('minute', now()) - make_interval(mins => g), $1, $2, $3 FROM generate_series($4, $5) g",
    )
    .bind(name)
    .bind(labels)
    .bind(count)
    .bind(from)
    .bind(to)
    .execute(&stack.db.pool)
    .await
    .unwrap();
}

/// A known trace: four warm for the last half hour and two warm for an hour three
/// hours ago; 9 of 12 claims bound at once in the last hour, 4 more not three hours ago.
#[tokio::test]
async fn cost_and_availability_from_a_known_trace() {
    let stack = Stack::start(fast_sim(), 0, &[]).await;
    minutes(&stack, "pool_warm", "", 4.0, 1, 30).await;
    minutes(&stack, "pool_warm", "", 2.0, 120, 179).await;
    minutes(&stack, "pool_claim_binds_total", "at_once=\"true\"", 9.0, 10, 10).await;
    minutes(&stack, "pool_claim_binds_total", "at_once=\"false\"", 3.0, 10, 10).await;
    minutes(&stack, "pool_claim_binds_total", "at_once=\"false\"", 4.0, 180, 180).await;

    let glance = stack.counts().await["glance"].clone();
    assert_eq!(glance["hour"]["warmInstanceHours"], 2.0, "{glance}");
    assert_eq!(glance["day"]["warmInstanceHours"], 4.0, "{glance}");
    assert_eq!((glance["hour"]["claims"].as_f64(), glance["hour"]["boundAtOnce"].as_f64()), (Some(12.0), Some(9.0)));
    assert_eq!(glance["hour"]["boundAtOnceShare"], 0.75, "{glance}");
    assert_eq!(glance["day"]["boundAtOnceShare"], 9.0 / 16.0, "{glance}");
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "pool_warm_instance_hours{window=\"hour\"} 2\n",
        "pool_warm_instance_hours{window=\"day\"} 4\n",
        "pool_claims_bound_at_once_ratio{window=\"hour\"} 0.75\n",
        "pool_claims_bound_at_once_ratio{window=\"day\"} 0.5625\n",
    ] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }
}

/// Through the front door: a claim on a warm pool is bound at once, one that finds
/// none is not, and the warm pool's minutes are counted.
#[tokio::test]
async fn claims_are_counted_as_bound_at_once_or_not() {
    let sim = SimConfig { build_time: Duration::from_millis(300), ..fast_sim() };
    let stack = Stack::start(sim, 1, &[("POOL_MIN_IDLE", "1")]).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    // No refill from here on: the next claim finds none.
    let paused = stack.request(reqwest::Method::POST, "/api/jobs/kinds/provision_instance/pause").send().await.unwrap();
    assert_eq!(paused.status(), 200);
    assert_eq!(stack.post("/api/pool/claim", json!({}), 30).await.status(), 200);
    assert_eq!(stack.post("/api/pool/claim", json!({}), 0).await.status(), 503);
    let counted = |c: &serde_json::Value| c["glance"]["hour"]["claims"] == 2.0;
    let glance = stack.wait_for_counts("both claims counted", Duration::from_secs(30), counted).await["glance"].clone();
    assert_eq!(glance["hour"]["boundAtOnce"], 1.0, "{glance}");
    assert_eq!(glance["day"]["boundAtOnceShare"], 0.5, "{glance}");
    let warm = |c: &serde_json::Value| c["glance"]["hour"]["warmInstanceHours"].as_f64() > Some(0.0);
    stack.wait_for_counts("warm minutes", Duration::from_secs(30), warm).await;
}
