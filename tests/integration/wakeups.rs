//! What an insert into the job table tells the workers: the kinds of the jobs due
//! now (a worker then asks for those alone), or in how long the first of the others
//! is due.

use std::time::Duration;

use pool::store::jobs::{self, NewJob};
use serde_json::json;
use sqlx::postgres::{PgListener, PgNotification};

use crate::helpers::{TestDb, kind};

async fn next(listener: &mut PgListener) -> PgNotification {
    tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.expect("a notification").unwrap()
}

#[tokio::test]
async fn an_insert_names_the_kinds_due_now_and_says_when_the_rest_are_due() {
    let db = TestDb::new().await;
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen("pool_jobs_queued").await.unwrap();

    let due = [kind("noop"), kind("reconcile"), kind("noop")].map(|k| NewJob::new(k, json!({}), 1));
    jobs::enqueue_many(&db.pool, &due).await.unwrap();
    assert_eq!(next(&mut listener).await.payload(), "noop,reconcile", "each kind once");

    let later = NewJob::new(kind("replenish"), json!({}), 1).after(Duration::from_secs(30));
    let mut conn = db.pool.acquire().await.unwrap();
    jobs::enqueue(&mut conn, &later).await.unwrap();
    let ms: u64 = next(&mut listener).await.payload().parse().expect("milliseconds");
    assert!((29_000..=30_000).contains(&ms), "due in {ms} ms");
}
