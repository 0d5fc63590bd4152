//! Slow clients and read floods against claims, from outside the web process: a
//! client that sends its headers a byte at a time is dropped, expensive reads beyond
//! the permits are shed with 503 (never queued in front of claims), and a read stuck
//! behind a lock ends instead of holding its connection.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    helpers::{fast_sim, someone_waits_on_a_lock},
    stack::Stack,
};

async fn claim(stack: &Stack) -> StatusCode {
    stack.post("/api/pool/claim", json!({ "agentName": "Flood" }), 30).await.status()
}

/// 100 connections trickling their headers are all closed by the server within the
/// header deadline (1 s here), while claims succeed.
#[tokio::test]
async fn slow_clients_are_dropped_while_claims_succeed() {
    let stack = Stack::start(fast_sim(), 1, &[("HTTP_HEADER_TIMEOUT_MS", "1000"), ("POOL_MIN_IDLE", "3")]).await;
    stack.wait_for_counts("3 idle", Duration::from_secs(30), |c| c["idle"] == 3).await;
    let addr = stack.web_url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /api/pool/counts HTTP/1.1\r\nHo").await.unwrap();
        slow.push(stream);
    }
    for _ in 0..3 {
        assert_eq!(claim(&stack).await, StatusCode::OK);
    }
    // Keep trickling: a byte a while never completes the headers. A closed
    // connection reads end-of-file (or fails); an open one has nothing to read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut open = slow.len();
    while open > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        open = 0;
        for stream in &mut slow {
            let _ = stream.write_all(b"s").await;
            let mut buf = [0u8; 512];
            if let Err(_) | Ok(Ok(1..)) = tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buf)).await {
                open += 1;
            }
        }
    }
    let closed = (open == 0).then_some(());
    assert!(closed.is_some(), "{open} slow connections still open");
}

/// With one read permit (3 database connections), a read stuck behind a lock holds
/// it: the next expensive read is shed with 503 and `Retry-After`, a claim goes
/// through meanwhile, and the stuck read ends at the lock timeout instead of hanging.
#[tokio::test]
async fn expensive_reads_are_shed_not_queued_in_front_of_claims() {
    let stack = Stack::start(fast_sim(), 1, &[("DATABASE_MAX_CONNECTIONS", "3"), ("POOL_MIN_IDLE", "1")]).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    let mut lock = stack.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE orphan_services IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();

    let fleet = || stack.request(reqwest::Method::GET, "/api/pool/instances").send();
    let stuck = tokio::spawn(fleet());
    let waiting = someone_waits_on_a_lock(&stack.db.pool, Duration::from_secs(5)).await;
    waiting.expect("the first read waits on the lock, holding the permit");
    let shed = fleet().await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE, "a second expensive read is shed");
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(shed.json::<serde_json::Value>().await.unwrap()["code"], "busy");
    assert_eq!(claim(&stack).await, StatusCode::OK, "claims are not behind the reads");

    let stuck =
        tokio::time::timeout(Duration::from_secs(20), stuck).await.expect("the stuck read ends").unwrap().unwrap();
    assert_eq!(stuck.status(), StatusCode::INTERNAL_SERVER_ERROR, "it gave up at the lock timeout");
    lock.rollback().await.unwrap();
    assert_eq!(fleet().await.unwrap().status(), StatusCode::OK, "the permit came back");
}
