//! Cron schedules with several worker replicas (SPEC §4): each tick enqueues ONE job,
//! not one per replica. Ticks carry the idempotency key `cron:<unix seconds>`.

use std::{collections::BTreeSet, time::Duration};

use chrono::Utc;

use crate::{
    helpers::fast_sim,
    stack::{Stack, eventually},
};

/// Scheduled jobs of `kind` as (id, idempotency key).
async fn scheduled(stack: &Stack, kind: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT id, idempotency_key FROM jobs WHERE kind = $1 ORDER BY id")
        .bind(kind)
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
}

/// The tick (unix seconds) of a `cron:<secs>` key.
fn tick_of(key: &str) -> i64 {
    key.strip_prefix("cron:").and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("not a cron tick key: {key}"))
}

#[tokio::test]
async fn two_workers_enqueue_one_reconcile_per_tick() {
    let stack = Stack::start(fast_sim(), 2, &[("RECONCILE_SCHEDULE", "*/2 * * * * *")]).await;

    // Both workers are up once the first tick landed; then let three more ticks pass.
    let first = eventually(Duration::from_secs(30), || async {
        scheduled(&stack, "reconcile").await.into_iter().filter_map(|(_, k)| k).map(|k| tick_of(&k)).min()
    })
    .await
    .expect("no scheduled reconcile within 30 s");
    tokio::time::sleep(Duration::from_secs(7)).await;

    let jobs = scheduled(&stack, "reconcile").await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'reconcile'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    let now = Utc::now().timestamp();
    assert_eq!(count as usize, jobs.len());

    // Every reconcile came from the schedule, each from its own tick.
    let keys: Vec<String> =
        jobs.iter().map(|(id, k)| k.clone().unwrap_or_else(|| panic!("reconcile {id} has no tick key"))).collect();
    let ticks: BTreeSet<i64> = keys.iter().map(|k| tick_of(k)).collect();
    assert_eq!(ticks.len(), keys.len(), "a tick produced two jobs: {keys:?}");
    assert!(ticks.iter().all(|t| t % 2 == 0), "ticks of */2 fall on even seconds: {keys:?}");
    assert!(count >= 3, "only {count} reconciles in ~7 s of a 2 s schedule: {keys:?}");

    // Upper bound: the ticks that can have happened since the first one we saw. Two
    // replicas each enqueueing their own job per tick would make about twice this.
    let possible = (first..=now).filter(|t| t % 2 == 0).count();
    eprintln!("reconcile ticks {first}..={now}: {} jobs, {possible} possible: {keys:?}", jobs.len());
    assert!(
        jobs.len() <= possible,
        "{} reconciles for at most {possible} ticks between {first} and {now}: {keys:?}",
        jobs.len()
    );
    assert!(ticks.iter().all(|t| (first..=now).contains(t)), "{keys:?}");

    // The replenish schedule (every second) obeys the same rule. Replenishes without a
    // key are the top-ups each reconcile enqueues, not ticks.
    let replenish_keys: Vec<String> = scheduled(&stack, "replenish").await.into_iter().filter_map(|(_, k)| k).collect();
    let replenish_ticks: BTreeSet<i64> = replenish_keys.iter().map(|k| tick_of(k)).collect();
    assert_eq!(replenish_ticks.len(), replenish_keys.len(), "a replenish tick produced two jobs");
    let now = Utc::now().timestamp();
    let start = *replenish_ticks.first().expect("replenish ticks ran");
    assert!(replenish_keys.len() as i64 <= now - start + 1, "{replenish_keys:?}");
}

/// Three workers, a reconcile every second for 10 s (SPEC invariant 5): the runs,
/// from their jobs' start and finish times, never overlap, and each tick made one job.
#[tokio::test]
async fn three_workers_never_overlap_reconciles() {
    let stack = Stack::start(fast_sim(), 3, &[("POOL_MIN_IDLE", "3")]).await;
    stack.wait_for_workers(3).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let runs: Vec<(chrono::DateTime<Utc>, chrono::DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "SELECT started_at, finished_at, idempotency_key FROM jobs
         WHERE kind = 'reconcile' AND state = 'succeeded' ORDER BY started_at",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert!(runs.len() >= 5, "about one reconcile a second: {}", runs.len());
    for pair in runs.windows(2) {
        let ((_, end, _), (next_start, _, _)) = (&pair[0], &pair[1]);
        assert!(end <= next_start, "overlapping reconciles: {pair:?}");
    }
    let keys: Vec<&String> = runs.iter().filter_map(|(_, _, k)| k.as_ref()).collect();
    let distinct: BTreeSet<&&String> = keys.iter().collect();
    assert_eq!(keys.len(), distinct.len(), "one job per tick");
}
