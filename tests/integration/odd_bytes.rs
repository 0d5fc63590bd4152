//! Text Postgres cannot store (NUL, `\u0000`): refused with 400 when a client sends
//! it, made storable when an upstream sends it, and never able to wedge a worker's
//! outcome writer.

use std::time::Duration;

use axum::{Router, http::StatusCode, response::IntoResponse};
use pool::store::JobState;
use serde_json::{Value, json};

use crate::{
    helpers::{API_KEY, TestApp, TestDb, fast_sim, free_port, test_config},
    stack::{Stack, eventually},
};

/// Every client text that ends up in a text or jsonb column, with NUL in it.
#[tokio::test]
async fn nul_in_request_text_is_refused_with_a_json_400() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), db.pool.clone()).await;
    let post = |path: &'static str, body: Value| app.http.post(app.url(path)).bearer_auth(API_KEY).json(&body).send();
    let bodies = [
        ("/api/pool/claim", json!({"agentName": "bad\u{0}name"})),
        ("/api/pool/claim", json!({"instructions": "be \u{0} nice"})),
        ("/api/pool/claim", json!({"joinUrl": "https://dev.convos.org/v2?i=\u{0}"})),
        ("/api/jobs/retry", json!({"kind": "noop\u{0}"})),
    ];
    for (path, body) in bodies {
        let response = post(path, body.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "invalid_request", "{path} {body}: {error}");
        assert!(error["error"].as_str().unwrap().contains("NUL"), "{path} {body}: {error}");
    }
    // An escaped backslash followed by `u0000` is six plain characters, not NUL.
    let response = post("/api/pool/claim", json!({"agentName": "\\u0000"})).await.unwrap();
    assert_ne!(response.status(), StatusCode::BAD_REQUEST, "a literal backslash-u0000 is fine");

    for path in ["/api/jobs/%00", "/api/jobs?kind=%00", "/api/pool/instances/%00"] {
        let response = app.http.get(app.url(path)).bearer_auth(API_KEY).send().await.unwrap();
        assert!(response.status().is_client_error(), "{path}: {}", response.status());
    }
}

/// A services API that answers every call `500 {"error":"bad\u0000byte"}`; returns
/// its URL.
async fn upstream_answering_nul() -> String {
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let app = Router::new().fallback(|| async {
        let body = r#"{"error":"bad\u0000byte"}"#;
        (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], body).into_response()
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://127.0.0.1:{port}")
}

async fn states_of(stack: &Stack, kind: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT state, error FROM jobs WHERE kind = $1 ORDER BY id")
        .bind(kind)
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
}

/// Provisions whose upstream error body holds NUL end `failed` with a readable
/// message, and the worker goes on recording outcomes (retrying the same batch for
/// ever would leave every job in it `running`).
#[tokio::test]
async fn nul_in_an_upstream_error_body_fails_jobs_without_wedging_the_worker() {
    let upstream = upstream_answering_nul().await;
    let never = "0 0 0 1 1 *";
    let overrides = [
        ("SERVICES_URL", upstream.as_str()),
        ("JOB_MAX_ATTEMPTS", "2"),
        ("REPLENISH_SCHEDULE", never),
        ("RECONCILE_SCHEDULE", never),
    ];
    let stack = Stack::start(fast_sim(), 1, &overrides).await;
    let replenish: pool::queue::JobDoc =
        stack.post("/api/pool/replenish", json!({"count": 3}), 10).await.json().await.unwrap();
    assert_eq!(replenish.status, JobState::Succeeded, "{replenish:?}");

    let ended = eventually(Duration::from_secs(40), || async {
        let jobs = states_of(&stack, "provision_instance").await;
        (jobs.len() == 3 && jobs.iter().all(|(state, _)| state == "failed")).then_some(jobs)
    })
    .await;
    let Some(jobs) = ended else {
        panic!("provisions did not fail: {:?}", states_of(&stack, "provision_instance").await);
    };
    for (_, error) in &jobs {
        let error = error.as_deref().unwrap_or_default();
        assert!(error.contains("badbyte"), "the upstream's message, without NUL: {error}");
    }

    let noop = pool::store::NewJob::new(crate::helpers::kind("noop"), json!({}), 1);
    pool::store::jobs::enqueue_many(&stack.db.pool, &[noop]).await.unwrap();
    let done = eventually(Duration::from_secs(20), || async {
        (states_of(&stack, "noop").await.iter().any(|(s, _)| s == "succeeded")).then_some(())
    })
    .await;
    assert!(done.is_some(), "the worker still records outcomes: {:?}", states_of(&stack, "noop").await);
}
