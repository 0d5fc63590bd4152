//! The batched outcome write against real Postgres.

use std::time::Duration;

use pool::store::jobs::lifecycle::{self, Finished, Outcome};
use serde_json::json;

use crate::helpers::TestDb;

/// A run rescued from this worker and the run that replaced it (also on this
/// worker) finish in one batch: the replacement holds the job, so its outcome is
/// written whatever the order (were the stale one to win when it came last, the
/// job would stay `running` under a live worker).
#[tokio::test]
async fn of_two_runs_of_one_job_in_one_batch_the_one_holding_the_job_is_written() {
    let db = TestDb::new().await;
    let job = pool::store::NewJob::new(crate::helpers::kind("noop"), json!({}), 3);
    pool::store::jobs::enqueue_many(&db.pool, &[job]).await.unwrap();
    let first = lifecycle::fetch(&db.pool, "w", &[(crate::helpers::kind("noop"), 1)]).await.unwrap().remove(0);
    // The worker went silent; the job was taken back, and the same worker took it again.
    let rescued = lifecycle::rescue(&db.pool, Duration::ZERO, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(rescued, 1);
    lifecycle::heartbeat(&db.pool, "w").await.unwrap();
    let second = lifecycle::fetch(&db.pool, "w", &[(crate::helpers::kind("noop"), 1)]).await.unwrap().remove(0);
    assert_eq!((first.attempt, second.attempt), (1, 2));

    let done = Finished { id: second.id.clone(), attempt: 2, outcome: Outcome::Succeeded(json!({"ok": true})) };
    let stale = Finished {
        id: first.id.clone(),
        attempt: 1,
        outcome: Outcome::Retryable { error: "stale".into(), delay: Duration::from_secs(1) },
    };
    let applied = lifecycle::finish(&db.pool, "w", &[done, stale]).await.unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
    let state: String =
        sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1").bind(&first.id).fetch_one(&db.pool).await.unwrap();
    assert_eq!(state, "succeeded");
}

/// What Postgres answers to an outcome with NUL (in the error text, or in the
/// result JSON) is a refusal of that statement, not an absent database: the writer
/// isolates such an outcome instead of retrying its batch for ever.
#[tokio::test]
async fn postgres_refuses_an_outcome_with_nul_as_a_refusal_not_an_outage() {
    let db = TestDb::new().await;
    let jobs = [
        pool::store::NewJob::new(crate::helpers::kind("noop"), json!({}), 3),
        pool::store::NewJob::new(crate::helpers::kind("noop"), json!({}), 3),
    ];
    pool::store::jobs::enqueue_many(&db.pool, &jobs).await.unwrap();
    let fetched = lifecycle::fetch(&db.pool, "w", &[(crate::helpers::kind("noop"), 2)]).await.unwrap();
    let outcomes = [Outcome::Permanent("bad\0byte".into()), Outcome::Succeeded(json!({"name": "bad\u{0}byte"}))];
    for (job, outcome) in fetched.iter().zip(outcomes) {
        let run = Finished { id: job.id.clone(), attempt: job.attempt, outcome: outcome.clone() };
        let err = lifecycle::finish(&db.pool, "w", &[run]).await.expect_err("Postgres refuses NUL");
        assert!(!pool::store::is_transient(&err), "{outcome:?}: {err}");
    }
}
