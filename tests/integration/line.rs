//! The waiting line's cap (`POOL_MAX_WAITING`): beyond it a claim answers
//! 503 `too_many_waiting` at once with `Retry-After`, and never more claims wait than
//! the cap, however many arrive together (the check is serialized in the database, not
//! in a process).

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::{
    helpers::{API_KEY, TestApp, TestDb, claim_job, fast_sim, someone_waits_on_a_lock, test_config},
    stack::Stack,
};
use pool::store::jobs::claim::{self, Ask, Line, Reserved};

/// Forty claims at once into an empty pool with a line of seven, each on its own
/// connection: exactly seven wait, the others are turned away and wrote nothing.
#[tokio::test]
async fn concurrent_claims_never_wait_beyond_the_cap() {
    let db = TestDb::new().await;
    let wide = PgPoolOptions::new().max_connections(20).connect(&db.url).await.unwrap();
    let line = Line { wait: Duration::from_secs(30), max_waiting: 7 };
    let answers =
        join_all(
            (0..40).map(|i| {
                let (wide, job) = (&wide, claim_job(&format!("claim{i:02}")));
                async move {
                    claim::reserve_and_enqueue(wide, &job, Ask { line: Some(line), ..Ask::default() }).await.unwrap()
                }
            }),
        )
        .await;
    let waiting = answers.iter().filter(|a| **a == Reserved::Waiting).count();
    let full = answers.iter().filter(|a| **a == Reserved::LineFull).count();
    assert_eq!((waiting, full), (7, 33), "{answers:?}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&db.pool).await.unwrap();
    assert_eq!(jobs, 7, "a claim turned away writes nothing");

    // A place freed in the line is taken again.
    let left: pool::domain::JobId =
        sqlx::query_scalar("SELECT id FROM jobs WHERE waiting ORDER BY id LIMIT 1").fetch_one(&db.pool).await.unwrap();
    assert!(
        pool::store::jobs::lifecycle::stop_waiting(&db.pool, &left, pool::store::JobState::Cancelled, "left")
            .await
            .unwrap()
    );
    let ask = Ask { line: Some(line), ..Ask::default() };
    let again = claim::reserve_and_enqueue(&wide, &claim_job("late"), ask).await.unwrap();
    assert_eq!(again, Reserved::Waiting);
}

/// Through the front door: with `POOL_MAX_WAITING=3` and no capacity coming, twelve
/// claims that would wait get three places; nine answer 503 `too_many_waiting` with
/// `Retry-After`, without a job.
#[tokio::test]
async fn a_full_line_answers_503_with_retry_after() {
    let env = [("POOL_MAX_WAITING", "3"), ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")];
    let stack = Stack::start(fast_sim(), 0, &env).await;
    let claim = || async {
        let req = stack.http.post(stack.url("/api/pool/claim")).bearer_auth(API_KEY).json(&json!({}));
        req.header("prefer", "wait=2").send().await.unwrap()
    };
    let answers = join_all((0..12).map(|_| claim())).await;
    let mut full = 0;
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry_after = answer.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = answer.json().await.unwrap();
        match body["code"].as_str() {
            Some("too_many_waiting") => {
                full += 1;
                let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
                assert!(secs > 0, "{secs}");
            }
            Some("no_idle_instance") => {}
            _ => panic!("unexpected answer {body}"),
        }
    }
    assert_eq!(full, 9);
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'claim_and_provision'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(claims, 3, "only the claims in line have a job");
}

/// A claim that waited for its place in the line (others joining before it) gets
/// its whole wait from when it joined: its deadline is not counted from the moment
/// it started waiting for the place, or the binding loop would end it before its client's
/// wait is over (the client then got 200 with a failed job instead of 503).
#[tokio::test]
async fn a_claim_delayed_at_the_line_gets_its_whole_wait() {
    use sqlx::{Connection, PgConnection};
    let db = TestDb::new().await;
    let mut holder = PgConnection::connect(&db.url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(claim::LINE_GATE).execute(&mut *held).await.unwrap();
    let line = Line { wait: Duration::from_secs(30), max_waiting: 10 };
    let pool = db.pool.clone();
    let joining = tokio::spawn(async move {
        claim::reserve_and_enqueue(&pool, &claim_job("delayed"), Ask { line: Some(line), ..Ask::default() }).await
    });
    // The claim waits for the place while the line is held.
    someone_waits_on_a_lock(&db.pool, Duration::from_secs(10)).await.expect("the claim waits for the line");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let released: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&mut *held).await.unwrap();
    held.commit().await.unwrap();
    assert_eq!(joining.await.unwrap().unwrap(), Reserved::Waiting);
    let deadline: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT run_at FROM jobs WHERE waiting").fetch_one(&db.pool).await.unwrap();
    assert!(
        deadline >= released + chrono::Duration::seconds(30),
        "deadline {deadline} for a place taken at {released}"
    );
}

/// The binding loop ends claims still waiting past their deadline (their web is gone, or
/// slow: at a full connection pool its own deadline check waits for a connection).
/// A client whose claim was ended that way is still answered 503
/// `no_idle_instance`, not 200 with a failed job.
#[tokio::test]
async fn a_claim_the_binding_loop_ended_in_line_is_answered_503() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), db.pool.clone()).await;
    let request = app.http.post(app.url("/api/pool/claim")).bearer_auth(API_KEY).header("prefer", "wait=20");
    let answer = tokio::spawn(request.json(&json!({})).send());
    let waiting = crate::stack::eventually(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, String>("SELECT id FROM jobs WHERE waiting").fetch_optional(&db.pool).await.unwrap()
    })
    .await
    .expect("the claim waits in line");
    // What the binding loop writes for a claim past its deadline.
    sqlx::query(
        "UPDATE jobs SET state = 'failed', waiting = false, finished_at = now(),
                         error = 'no_idle_instance: no instance became idle in time'
         WHERE id = $1 AND waiting",
    )
    .bind(&waiting)
    .execute(&db.pool)
    .await
    .unwrap();
    let answer = answer.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["code"], "no_idle_instance", "{body}");
}
