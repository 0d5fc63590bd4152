//! `Prefer: wait`: a finished job wakes the requests waiting for it and no others,
//! in every web process.

use std::time::Duration;

use pool::{http::wait::JobWaiter, queue::JobDoc, store::jobs};

use crate::{helpers::TestDb, stack::eventually};

#[tokio::test]
async fn a_finish_wakes_only_the_requests_waiting_for_that_job() {
    let db = TestDb::new().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let job = jobs::NewJob::new(crate::helpers::kind("noop"), serde_json::json!({}), 1);
        ids.push(jobs::enqueue(&mut conn, &job).await.unwrap().id().to_owned());
    }
    let waiter = JobWaiter::start(db.pool.clone());
    waiter.listening().await;
    let mut waits = Vec::new();
    for id in &ids {
        let (waiter, pool, id) = (waiter.clone(), db.pool.clone(), id.clone());
        waits.push(tokio::spawn(async move { waiter.wait(&pool, &id, Duration::from_secs(60)).await.unwrap() }));
    }
    // A second request for the first job, and a job nobody waits for.
    let second = {
        let (waiter, pool, id) = (waiter.clone(), db.pool.clone(), ids[0].clone());
        tokio::spawn(async move { waiter.wait(&pool, &id, Duration::from_secs(60)).await.unwrap() })
    };
    eventually(Duration::from_secs(10), || async { (waiter.waiting() == 6).then_some(()) }).await.expect("6 waiting");
    // A job nobody here waits for, then the first one (its trigger notifies).
    sqlx::query("SELECT pg_notify('pool_job_finished', 'not-waited-for noop succeeded 0 0')")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1")
        .bind(&ids[0])
        .execute(&db.pool)
        .await
        .unwrap();
    let done: Vec<JobDoc> = vec![waits.remove(0).await.unwrap().unwrap(), second.await.unwrap().unwrap()];
    assert!(done.iter().all(|d| d.id == ids[0] && d.status.is_finished()));
    assert_eq!(waiter.wakeups(), 2, "the two requests of the finished job, no other");
    assert_eq!(waiter.waiting(), 4, "the others still wait");
    for wait in waits {
        wait.abort();
    }
}

/// A finished claim's notification carries its row, and what a waiting request
/// answers from it is the document a read of the row gives: the trigger's JSON and
/// the row type agree.
#[tokio::test]
async fn a_finished_claims_notification_carries_the_document_a_read_gives() {
    let db = TestDb::new().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let args = serde_json::json!({ "agentName": "Ada \u{e9}\"' ", "instructions": "x".repeat(300) });
    let job = jobs::NewJob::new(crate::helpers::kind("claim_and_provision"), args, 6);
    let id = jobs::enqueue(&mut conn, &job).await.unwrap().id().to_owned();
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen("pool_job_finished").await.unwrap();
    sqlx::query(
        "UPDATE jobs SET state = 'succeeded', attempts = 1, runs = 1, started_at = now(), finished_at = now(),
                result = '{\"instanceId\": \"abc\", \"joined\": false}' WHERE id = $1",
    )
    .bind(&id)
    .execute(&db.pool)
    .await
    .unwrap();
    let note = listener.recv().await.unwrap();
    let carried = pool::http::wait::carried_doc(note.payload()).expect("the claim's row is carried");
    let read = JobDoc::from(jobs::get(&db.pool, &id).await.unwrap().unwrap());
    assert_eq!(carried, read);

    // Other kinds keep the short payload.
    let other = jobs::enqueue(&mut conn, &jobs::NewJob::new(crate::helpers::kind("noop"), serde_json::json!({}), 1))
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1")
        .bind(other.id())
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(pool::http::wait::carried_doc(listener.recv().await.unwrap().payload()), None);
}
