//! A claim's first step and its completion against real Postgres: the fetch that
//! takes the claim reads its row and notes the provision; the completion, one
//! statement fenced on the run's lease, lands all of it (row bound, job succeeded,
//! top-up enqueued) or none.

use pool::{
    domain::{InstanceId, JobId},
    store::{
        instances::{self, Completed},
        jobs::lifecycle::{self, Lease},
    },
};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::TestDb;

/// An idle instance, reserved for a claim job that worker `w` then fetched (run 1).
async fn running_claim(db: &PgPool) -> (InstanceId, JobId) {
    let claim = crate::fixtures::reserved_claim(db, "inst00000001", "claim00000001").await;
    let fetched = lifecycle::fetch(db, "w", &[(crate::helpers::kind("claim_and_provision"), 1)]).await.unwrap();
    assert_eq!(fetched.len(), 1);
    claim
}

/// `(instance status, job state, queued replenishes)`.
async fn state(db: &PgPool, instance: &str, job: &str) -> (String, String, i64) {
    sqlx::query_as(
        "SELECT (SELECT status FROM instances WHERE id = $1), (SELECT state FROM jobs WHERE id = $2),
                (SELECT count(*) FROM jobs WHERE kind = 'replenish' AND state = 'queued')",
    )
    .bind(instance)
    .bind(job)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn complete(db: &PgPool, instance: &InstanceId, lease: Lease<'_>) -> Completed {
    crate::fixtures::complete_claim(db, instance, lease).await
}

/// Many completions of one run at once (a retried write racing the first): one
/// binds, every other finds the lease gone; one top-up is queued.
#[tokio::test]
async fn concurrent_completions_of_one_run_bind_once() {
    let db = TestDb::new().await;
    let (instance, job) = running_claim(&db.pool).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (db, instance, job) = (db.pool.clone(), instance.clone(), job.clone());
            tokio::spawn(async move { complete(&db, &instance, Lease { job_id: &job, attempt: 1, worker: "w" }).await })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        match task.await.unwrap() {
            Completed::Done(applied) => {
                assert_eq!((applied.id.as_str(), applied.state.as_str()), (job.as_str(), "succeeded"));
                done += 1;
            }
            Completed::Lost => {}
            Completed::Moved => panic!("the row stays this job's"),
        }
    }
    assert_eq!(done, 1);
    assert_eq!(state(&db.pool, &instance, &job).await, ("claimed".into(), "succeeded".into(), 1));
}

/// A run that lost its lease (another attempt, another worker) writes nothing.
#[tokio::test]
async fn a_run_without_the_lease_writes_nothing() {
    let db = TestDb::new().await;
    let (instance, job) = running_claim(&db.pool).await;
    for lease in [Lease { job_id: &job, attempt: 2, worker: "w" }, Lease { job_id: &job, attempt: 1, worker: "other" }]
    {
        assert!(matches!(complete(&db.pool, &instance, lease).await, Completed::Lost));
    }
    assert_eq!(state(&db.pool, &instance, &job).await, ("claiming".into(), "running".into(), 0));
}

/// A row moved away from the claim meanwhile (killed) is not bound, and the job is
/// not ended by the completion: the handler decides what the claim became.
#[tokio::test]
async fn a_row_moved_meanwhile_is_neither_bound_nor_its_job_ended() {
    let db = TestDb::new().await;
    let (instance, job) = running_claim(&db.pool).await;
    sqlx::query("UPDATE instances SET status = 'crashed' WHERE id = $1")
        .bind(&instance)
        .execute(&db.pool)
        .await
        .unwrap();
    let lease = Lease { job_id: &job, attempt: 1, worker: "w" };
    assert!(matches!(complete(&db.pool, &instance, lease).await, Completed::Moved));
    assert_eq!(state(&db.pool, &instance, &job).await, ("crashed".into(), "running".into(), 0));
}

/// The claim's provision note: the job that wrote it.
async fn note_of(db: &PgPool) -> Option<String> {
    sqlx::query_scalar("SELECT provision_sent_by FROM instances WHERE id = 'inst00000001'").fetch_one(db).await.unwrap()
}

async fn fetch_claim(db: &PgPool) -> lifecycle::Fetched {
    let mut fetched = lifecycle::fetch(db, "w", &[(crate::helpers::kind("claim_and_provision"), 1)]).await.unwrap();
    assert_eq!(fetched.len(), 1);
    fetched.remove(0)
}

/// The fetch of a claim returns its row with the provision note written (durably,
/// before any call to the instance). Given back unstarted at a stop, the job leaves
/// no note of its own behind; a note of an earlier run stays (that run may have sent
/// a provision).
#[tokio::test]
async fn a_claims_fetch_notes_its_provision_and_a_release_takes_back_only_its_own_note() {
    let db = TestDb::new().await;
    let (_, job) = crate::fixtures::reserved_claim(&db.pool, "inst00000001", "claim00000001").await;

    let held = fetch_claim(&db.pool).await.held.expect("the held row");
    assert_eq!((&held["id"], &held["status"]), (&json!("inst00000001"), &json!("claiming")), "{held}");
    assert_eq!((&held["noted"], &held["sent_before"]), (&json!(true), &json!(false)), "{held}");
    assert_eq!(note_of(&db.pool).await.as_deref(), Some("claim00000001"));
    lifecycle::release_unstarted(&db.pool, "w", std::slice::from_ref(&job)).await.unwrap();
    assert_eq!(note_of(&db.pool).await, None, "the note no provision followed is taken back");

    // Fetched and started, then taken back from a silent worker: the next fetch
    // finds the earlier run's note, which its own release leaves.
    fetch_claim(&db.pool).await;
    assert_eq!(
        lifecycle::rescue(&db.pool, std::time::Duration::ZERO, std::time::Duration::from_secs(3600)).await.unwrap(),
        1
    );
    lifecycle::heartbeat(&db.pool, "w").await.unwrap();
    let held = fetch_claim(&db.pool).await.held.expect("the held row");
    assert_eq!((&held["noted"], &held["sent_before"]), (&json!(true), &json!(true)), "{held}");
    lifecycle::release_unstarted(&db.pool, "w", std::slice::from_ref(&job)).await.unwrap();
    assert_eq!(note_of(&db.pool).await.as_deref(), Some("claim00000001"), "an earlier run's note stays");
}

/// Taken by a fetch of several kinds, a claim comes without its row; its run's first
/// statement reads it and writes the same note.
#[tokio::test]
async fn a_claim_fetched_with_other_kinds_reads_and_notes_its_row_itself() {
    let db = TestDb::new().await;
    let (_, job) = crate::fixtures::reserved_claim(&db.pool, "inst00000001", "claim00000001").await;
    let kinds = [(crate::helpers::kind("claim_and_provision"), 1), (crate::helpers::kind("noop"), 1)];
    let fetched = lifecycle::fetch(&db.pool, "w", &kinds).await.unwrap();
    assert_eq!((fetched.len(), fetched[0].held.is_some()), (1, false));
    assert_eq!(note_of(&db.pool).await, None);

    let lease = Lease { job_id: &job, attempt: fetched[0].attempt, worker: "w" };
    let held = instances::held_noting_provision(&db.pool, lease).await.unwrap().expect("the held row");
    assert_eq!(held.row.id.as_str(), "inst00000001");
    let note = held.note().expect("noted");
    assert!(!note.sent_before);
    assert_eq!(note_of(&db.pool).await.as_deref(), Some("claim00000001"));

    let stale = Lease { job_id: &job, attempt: fetched[0].attempt + 1, worker: "w" };
    let held = instances::held_noting_provision(&db.pool, stale).await.unwrap().expect("the held row");
    assert!(held.note().is_none(), "a run without the lease writes no note");
}
