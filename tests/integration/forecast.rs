//! The forecast: the warm target also covers the claims expected over the
//! next lead time from the same phase of earlier periods (`POOL_DEMAND_PERIOD`), so a
//! recurring burst finds the pool ready, and the buffer stays low between bursts.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{TestDb, fast_sim},
    stack::Stack,
};
use pool::{sim::SimConfig, store::demand};

const BURST: usize = 6;

fn buffer(counts: &Value) -> (Option<i64>, Option<&str>) {
    (counts["buffer"]["target"].as_i64(), counts["buffer"]["reason"].as_str())
}

/// A burst of claims, none waiting: how many found an instance (200 or 202: the job,
/// finished or not) and how many were turned away (503).
async fn burst(stack: &Stack) -> (usize, usize) {
    let answers = join_all((0..BURST).map(|_| stack.post("/api/pool/claim", json!({}), 0))).await;
    let other: Vec<_> = answers.iter().map(|r| r.status()).filter(|s| ![200, 202, 503].contains(&s.as_u16())).collect();
    assert!(other.is_empty(), "every claim answered 200, 202 or 503: {other:?}");
    let served = answers.iter().filter(|r| r.status().is_success()).count();
    let turned_away = answers.iter().filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE).count();
    (served, turned_away)
}

/// With a 20 s period: a burst the pool was not ready for leaves the target low (the
/// forecast, not the burst memory, plans once history covers a period), then, a lead
/// time and a replenish before the same phase of the next period, the forecast raises
/// the target to the burst and the pool fills: the recurring burst is served at once
/// (surplus is given back only after `POOL_SURPLUS_COOLDOWN`, 5 min, once it passes).
#[tokio::test]
async fn the_forecast_raises_the_target_before_a_recurring_burst() {
    let sim = SimConfig { build_time: Duration::from_secs(1), ..fast_sim() };
    let env =
        [("POOL_BUFFER", "adaptive"), ("POOL_MIN_IDLE", "1"), ("POOL_MAX_WARM", "12"), ("POOL_DEMAND_PERIOD", "20s")];
    let stack = Stack::start(sim, 1, &env).await;
    // Pool has run for ten minutes: history covers the earlier periods, and they were quiet.
    sqlx::query(
        "INSERT INTO metric_minutes (minute, name, labels, count)
         VALUES (date_trunc('minute', now() - interval '10 min'), 'pool_warm', '', 1)",
    )
    .execute(&stack.db.pool)
    .await
    .unwrap();
    let measured = |c: &Value| c["idle"] == 1 && c["buffer"]["leadTimeSeconds"] != 60.0;
    let ready = stack.wait_for_counts("1 idle and a measured lead time", Duration::from_secs(30), measured).await;
    assert_eq!(ready["buffer"]["forecastClaims"], 0.0, "quiet earlier periods: {ready}");

    let (served, turned_away) = burst(&stack).await;
    assert_eq!((served, turned_away), (1, BURST - 1), "the first burst finds one instance");
    let after = stack.counts().await;
    assert_eq!(buffer(&after), (Some(1), Some("min_idle")), "no burst memory once a forecast plans: {after}");

    // The whole burst seen in the earlier period (a window at its edge may see part of
    // it), and a target of the burst plus the margin the steady claims around it get.
    let forecast = |c: &Value| {
        c["buffer"]["forecastClaims"] == BURST as f64
            && matches!(buffer(c), (Some(t), Some("forecast")) if t >= BURST as i64)
    };
    let risen = stack.wait_for_counts("the forecast to raise the target", Duration::from_secs(40), forecast).await;
    assert_eq!(risen["buffer"]["forecastClaims"], BURST as f64, "{risen}");
    let ready = |c: &Value| c["idle"].as_u64().is_some_and(|idle| idle >= BURST as u64);
    stack.wait_for_counts("the pool ready for the burst", Duration::from_secs(30), ready).await;

    let (served, turned_away) = burst(&stack).await;
    assert_eq!((served, turned_away), (BURST, 0), "the recurring burst is served at once");
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("pool_warm_forecast "), "{metrics}");
    let charted: i64 = sqlx::query_scalar("SELECT count(*) FROM metric_minutes WHERE name = 'pool_warm_forecast'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert!(charted > 0, "the chart's forecast series is written");
}

/// A burst a week ago, at this time of day (a weekly event): with a daily period the
/// forecast looks a week back too, where claims are kept that long, and sees it
/// coming; where they are not (the default 72 h retention), that window does not
/// count. Days 1–3 saw no claims.
#[tokio::test]
async fn a_weekly_burst_is_seen_a_week_later_where_history_reaches_back() {
    const DAY: Duration = Duration::from_secs(86_400);
    assert_eq!(demand::lookbacks(DAY), vec![DAY, DAY * 2, DAY * 3, demand::WEEK]);
    assert_eq!(demand::lookbacks(Duration::from_secs(20)).len(), 4, "20 s divides a week");
    assert_eq!(demand::lookbacks(Duration::from_secs(7 * 86_400)).len(), 3, "no week back beyond the periods");
    assert_eq!(demand::lookbacks(Duration::from_secs(11)).len(), 3, "11 s does not divide a week");

    let db = TestDb::new().await;
    sqlx::query(
        "INSERT INTO metric_minutes (minute, name, labels, count)
         VALUES (date_trunc('minute', now() - interval '8 days'), 'pool_warm', '', 1)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, max_attempts, state, created_at, finished_at)
         SELECT 'weekly' || n, 'claim_and_provision', '{}', 6, 'succeeded',
                now() - interval '7 days' + interval '30 seconds', now() - interval '7 days' + interval '31 seconds'
         FROM generate_series(1, 5) AS n",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (lead, horizon) = (Duration::from_secs(60), Duration::from_secs(120));
    let lookbacks = demand::lookbacks(DAY);
    let kept_long = demand::seasonal(&db.pool, &lookbacks, DAY * 8, lead, horizon).await.unwrap();
    assert_eq!(kept_long, vec![(0.0, true), (0.0, true), (0.0, true), (5.0, true)]);
    let kept_short =
        demand::seasonal(&db.pool, &lookbacks, Duration::from_secs(72 * 3600), lead, horizon).await.unwrap();
    assert_eq!(kept_short, vec![(0.0, true), (0.0, true), (0.0, true), (5.0, false)]);
}
