//! Bulk retry racing an enqueue of the same singleton.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{API_KEY, TestApp, TestDb, someone_waits_on_a_lock, test_config};

async fn insert_replenish(db: impl sqlx::PgExecutor<'_>, state: &str) -> pool::domain::JobId {
    crate::fixtures::failed("replenish").state(state).dedupe("singleton").insert(db).await
}

/// A singleton enqueued while a bulk retry of failed ones runs (the retry's snapshot
/// does not see it yet): the retry reports that job skipped instead of answering 500,
/// and still retries the others.
#[tokio::test]
async fn bulk_retry_skips_a_job_whose_key_an_enqueue_took_meanwhile() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), db.pool.clone()).await;
    let failed = insert_replenish(&db.pool, "failed").await;
    let plain = crate::fixtures::failed("noop").insert(&db.pool).await;

    // An enqueue of the same singleton, not yet committed when the retry starts.
    let mut enqueue = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut tx = enqueue.begin().await.unwrap();
    let active = insert_replenish(&mut *tx, "queued").await;
    let retry = {
        let request = app.http.post(app.url("/api/jobs/retry")).bearer_auth(API_KEY).json(&json!({"status": "failed"}));
        tokio::spawn(request.send())
    };
    let blocked = someone_waits_on_a_lock(&db.pool, Duration::from_secs(10)).await;
    tx.commit().await.unwrap();

    let response = retry.await.unwrap().unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ids"], json!([plain]), "{body}");
    assert_eq!(body["skipped"], json!([failed]), "{body}");
    let states: Vec<(pool::domain::JobId, String)> =
        sqlx::query_as("SELECT id, state FROM jobs WHERE kind = 'replenish' ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(states.contains(&(failed, "failed".into())) && states.contains(&(active, "queued".into())), "{states:?}");
    // Only meaningful when the retry really waited on the enqueue (it nearly always does).
    assert!(blocked.is_some(), "the retry never waited on the uncommitted enqueue");
}
