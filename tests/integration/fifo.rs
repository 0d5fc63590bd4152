//! First in first out for waiting claims, at the statements that bind
//! them: a binding pass never serves a claim ahead of an older one that another pass
//! holds, and a new claim never takes an idle instance ahead of claims already
//! waiting. Found flaky end to end (`waiting::…_first_in_first_out_across_replicas`
//! on a clean clone: two workers' passes split the line between them).

use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::{TestDb, claim_job};
use pool::store::jobs::claim::{self, Ask, BIND_GATE, Line, Reserved};

/// Bound pairs as text, to compare with literals.
fn pairs(bound: Vec<(pool::domain::JobId, pool::domain::InstanceId)>) -> Vec<(String, String)> {
    bound.into_iter().map(|(job, instance)| (job.to_string(), instance.to_string())).collect()
}

/// A claim waiting in line, arrived `ago_secs` seconds ago.
async fn waiting_claim(db: &PgPool, id: &str, ago_secs: f64) {
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, max_attempts, waiting, run_at, created_at)
         VALUES ($1, 'claim_and_provision', '{}', 6, true, now() + interval '30 seconds', now() - make_interval(secs => $2))",
    )
    .bind(id)
    .bind(ago_secs)
    .execute(db)
    .await
    .unwrap();
}

async fn holder(db: &PgPool, instance: &str) -> Option<String> {
    sqlx::query_scalar("SELECT claim_job_id FROM instances WHERE id = $1").bind(instance).fetch_one(db).await.unwrap()
}

/// Another worker's pass has taken the line's head and not yet its instance: this pass
/// must not serve the claim behind it with the instance it finds.
#[tokio::test]
async fn a_pass_beside_another_never_serves_a_later_claim() {
    let db = TestDb::new().await;
    waiting_claim(&db.pool, "claimA", 2.0).await;
    waiting_claim(&db.pool, "claimB", 1.0).await;
    crate::fixtures::idle("instanceX000").insert(&db.pool).await;

    // What a concurrent pass holds mid-statement: the gate and the oldest claim.
    let mut other = db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(BIND_GATE).execute(&mut *other).await.unwrap();
    sqlx::query("SELECT id FROM jobs WHERE id = 'claimA' FOR UPDATE").execute(&mut *other).await.unwrap();
    let beside =
        tokio::time::timeout(Duration::from_secs(10), claim::bind_waiting(&db.pool, None)).await.unwrap().unwrap();
    assert_eq!(beside, [], "bound beside another pass");
    assert_eq!(holder(&db.pool, "instanceX000").await, None);
    other.rollback().await.unwrap();

    let after = claim::bind_waiting(&db.pool, None).await.unwrap();
    assert_eq!(pairs(after), [("claimA".to_owned(), "instanceX000".to_owned())], "the head of the line first");
}

/// An instance that is idle while claims wait is theirs: a new claim joins the line
/// (or, not waiting, is told there is none) instead of taking it.
#[tokio::test]
async fn a_new_claim_does_not_jump_the_line() {
    let db = TestDb::new().await;
    waiting_claim(&db.pool, "claimA", 1.0).await;
    crate::fixtures::idle("instanceX000").insert(&db.pool).await;
    let job = claim_job;

    let at_once = claim::reserve_and_enqueue(&db.pool, &job("claimC"), Ask::default()).await.unwrap();
    assert_eq!(at_once, Reserved::NoIdle, "a claim that does not wait");
    let line = Line { wait: Duration::from_secs(30), max_waiting: 100 };
    let ask = Ask { line: Some(line), ..Ask::default() };
    let waits = claim::reserve_and_enqueue(&db.pool, &job("claimD"), ask).await.unwrap();
    assert_eq!(waits, Reserved::Waiting, "a claim that waits joins the line");
    assert_eq!(holder(&db.pool, "instanceX000").await, None);

    let bound = claim::bind_waiting(&db.pool, None).await.unwrap();
    assert_eq!(pairs(bound), [("claimA".to_owned(), "instanceX000".to_owned())]);
}
