//! Pruning gives way to the claims a person waits on: while a claim is due or
//! running, a round puts its next statement off (for at most one more pause), and
//! never for a claim waiting in line for an instance.

use std::time::Duration;

use pool::{
    jobs::{Job, claim_and_provision::ClaimAndProvision},
    store::jobs::{self, PruneSettings},
};
use sqlx::PgPool;

use crate::helpers::TestDb;

/// Long enough that a round which waited it out would time the test out.
const HOUR: Duration = Duration::from_secs(3600);
/// A bound on a round that must end, not a measure of its speed.
const ENDS_WITHIN: Duration = Duration::from_secs(60);

fn settings(pause: Duration) -> PruneSettings {
    PruneSettings { retention: Duration::from_secs(3600), batch: 1000, pause, give_way_to: &[ClaimAndProvision::KIND] }
}

/// 50 finished jobs past a 1 h retention, and one claim as `state` and `waiting` say.
async fn fill(db: &PgPool, state: &str, waiting: bool) {
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, state, attempts, max_attempts, runs, started_at, finished_at)
         SELECT 'done-' || g, 'noop', '{}', 'succeeded', 1, 1, 1, now() - interval '2 hours',
                now() - interval '2 hours'
         FROM generate_series(1, 50) g",
    )
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, state, max_attempts, waiting, run_at, worker_id, started_at)
         VALUES ('claim-1', $1, '{}', $2, 5, $3, CASE WHEN $3 THEN now() + interval '1 minute' ELSE now() END,
                 CASE WHEN $2 = 'running' THEN 'w' END, CASE WHEN $2 = 'running' THEN now() END)",
    )
    .bind(ClaimAndProvision::KIND)
    .bind(state)
    .bind(waiting)
    .execute(db)
    .await
    .unwrap();
}

async fn finished(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id LIKE 'done-%'").fetch_one(db).await.unwrap()
}

/// Waits until a round holds the prune's lock, then lets it run a while.
async fn round_started(db: &PgPool) {
    let held = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
                  AND ((classid::int8 << 32) | objid::int8) = $1)";
    while !sqlx::query_scalar::<_, bool>(held).bind(jobs::PRUNE_LOCK).fetch_one(db).await.unwrap() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Were the round not giving way, its one statement would have deleted by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_round_waits_while_a_claim_is_due_or_running_and_goes_on_when_it_ends() {
    for state in ["queued", "running"] {
        let db = TestDb::new().await;
        fill(&db.pool, state, false).await;
        let pool = db.pool.clone();
        let round = tokio::spawn(async move { jobs::prune_all(&pool, &settings(HOUR)).await });
        round_started(&db.pool).await;
        assert_eq!(finished(&db.pool).await, 50, "a {state} claim: nothing deleted while it is in flight");
        sqlx::query("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = 'claim-1'")
            .execute(&db.pool)
            .await
            .unwrap();
        let pruned = tokio::time::timeout(ENDS_WITHIN, round).await.expect("the round goes on").unwrap().unwrap();
        let pruned = pruned.expect("the lock was free");
        assert_eq!(pruned.jobs, 50, "a {state} claim");
        assert!(pruned.gave_way > Duration::ZERO, "a {state} claim: {pruned:?}");
        assert_eq!(finished(&db.pool).await, 0);
    }
}

#[tokio::test]
async fn a_round_never_waits_for_a_claim_in_line_and_waits_one_pause_at_most() {
    // A claim in line waits for an instance, for as long as a minute: not in flight.
    let db = TestDb::new().await;
    fill(&db.pool, "queued", true).await;
    let round = tokio::time::timeout(ENDS_WITHIN, jobs::prune_all(&db.pool, &settings(HOUR))).await;
    let pruned = round.expect("no wait for a claim in line").unwrap().expect("the lock was free");
    assert_eq!((pruned.jobs, pruned.gave_way), (50, Duration::ZERO));
    // A claim that runs on (its worker hung): the round waits one pause, then goes on.
    let db = TestDb::new().await;
    fill(&db.pool, "running", false).await;
    let pause = Duration::from_millis(300);
    let round = tokio::time::timeout(ENDS_WITHIN, jobs::prune_all(&db.pool, &settings(pause))).await;
    let pruned = round.expect("one pause at most").unwrap().expect("the lock was free");
    assert_eq!(pruned.jobs, 50);
    assert!(pruned.gave_way >= pause, "it gave way first: {pruned:?}");
    assert_eq!(finished(&db.pool).await, 0);
}
