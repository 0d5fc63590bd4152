//! Hostile clients from outside the web process: made-up methods cannot grow the
//! metrics, every route answers each key scope as documented (operator, claim, the
//! instances' key, none), keys rotate, odd keys are refused cleanly, failed key
//! checks are limited, and every answer carries the security headers.

use std::time::Duration;

use pool::sim::SimConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{API_KEY, fast_sim},
    stack::Stack,
};

const CLAIM_KEY: &str = "test-claim-key";
const INSTANCE_KEY: &str = "test-instance-key";
const SECOND_OPERATOR_KEY: &str = "test-pool-key-next";

/// A pool whose instances accept only the instance key, with two operator keys and
/// a claim key.
async fn scoped_stack() -> Stack {
    let sim = SimConfig { instance_api_key: Some(INSTANCE_KEY.into()), ..fast_sim() };
    let operators = format!("{API_KEY},{SECOND_OPERATOR_KEY}");
    let settings =
        [("POOL_API_KEY", operators.as_str()), ("POOL_CLAIM_KEYS", CLAIM_KEY), ("POOL_INSTANCE_KEY", INSTANCE_KEY)];
    let stack = Stack::start(sim, 1, &settings).await;
    let replenish = stack.post("/api/pool/replenish", json!({ "count": 3 }), 30).await;
    assert_eq!(replenish.status(), StatusCode::OK);
    stack.wait_for_counts("3 idle", Duration::from_secs(30), |c| c["idle"] == 3).await;
    stack
}

async fn call(stack: &Stack, method: &Method, path: &str, key: Option<&str>) -> StatusCode {
    let mut request = stack.http.request(method.clone(), stack.url(path));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    if *method != Method::GET {
        request = request.json(&json!({}));
    }
    request.send().await.unwrap().status()
}

/// A documented operation, with sample path parameters filled in.
struct Operation {
    method: Method,
    path: String,
    /// It needs a key.
    secured: bool,
    /// It reads a key when given one (documents a 401).
    checks_keys: bool,
}

async fn operations(stack: &Stack, job_id: &str) -> Vec<Operation> {
    let doc: Value = stack.http.get(stack.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else { continue };
            let secured = operation.get("security").is_some();
            let checks_keys = operation["responses"].get("401").is_some();
            let path = path.replace("{id}", job_id).replace("{kind}", "noop");
            found.push(Operation { method, path, secured, checks_keys });
        }
    }
    found
}

/// What each scope may do: the claim key claims and reads claim jobs; the instance
/// key is no API key at all.
fn allowed(method: &Method, path: &str, scope: &str, claim_job: &str) -> bool {
    match scope {
        "operator" => true,
        "claim" => {
            (*method == Method::POST && path == "/api/pool/claim")
                || (*method == Method::GET && path == format!("/api/jobs/{claim_job}"))
        }
        _ => false,
    }
}

#[tokio::test]
async fn every_route_answers_every_scope_as_documented() {
    let stack = scoped_stack().await;
    let claim = stack
        .http
        .post(stack.url("/api/pool/claim"))
        .bearer_auth(CLAIM_KEY)
        .header("prefer", "wait=30")
        .json(&json!({ "agentName": "Scoped" }))
        .send()
        .await
        .unwrap();
    assert_eq!(claim.status(), StatusCode::OK, "a claim key claims, through instances that take only their key");
    let claim: Value = claim.json().await.unwrap();
    assert_eq!(claim["status"], "succeeded", "{claim}");
    let job_id = claim["id"].as_str().unwrap().to_owned();
    // The original contract's claim works with a claim key too.
    let original = stack
        .http
        .post(stack.url("/api/pool/claim"))
        .bearer_auth(CLAIM_KEY)
        .header("pool-claim-contract", "original")
        .json(&json!({ "agentName": "Original" }))
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), StatusCode::OK, "{:?}", original.text().await);
    assert!(job_id.starts_with('0'), "ULIDs of this era start with 0: {job_id}");

    let keys =
        [("operator", Some(API_KEY)), ("claim", Some(CLAIM_KEY)), ("instance", Some(INSTANCE_KEY)), ("none", None)];
    for Operation { method, path, secured, checks_keys } in operations(&stack, &job_id).await {
        for (scope, key) in keys {
            let status = call(&stack, &method, &path, key).await;
            let refused =
                matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS);
            // A route where a key only adds fields still refuses one the API does not know.
            let wrong_key = scope == "instance";
            let expect_refused =
                if secured { !allowed(&method, &path, scope, &job_id) } else { checks_keys && wrong_key };
            assert_eq!(refused, expect_refused, "{method} {path} with the {scope} key: {status}");
        }
    }
    // A claim key reads claim jobs only.
    let other: Value = stack.post("/api/pool/reconcile", json!({}), 0).await.json().await.unwrap();
    let path = format!("/api/jobs/{}", other["id"].as_str().unwrap());
    assert_eq!(call(&stack, &Method::GET, &path, Some(CLAIM_KEY)).await, StatusCode::FORBIDDEN);
    assert_eq!(call(&stack, &Method::GET, &path, Some(API_KEY)).await, StatusCode::OK);
}

/// Two operator keys both work (rotation), the scheme is case-insensitive, and
/// keys with NUL, non-ASCII or huge values are refused with a JSON 401, not a 500.
#[tokio::test]
async fn keys_rotate_and_odd_keys_are_refused_cleanly() {
    let stack = scoped_stack().await;
    for key in [API_KEY, SECOND_OPERATOR_KEY] {
        assert_eq!(call(&stack, &Method::GET, "/api/jobs/kinds", Some(key)).await, StatusCode::OK, "{key}");
    }
    let lower = stack.http.get(stack.url("/api/jobs/kinds")).header("authorization", format!("bearer {API_KEY}"));
    assert_eq!(lower.send().await.unwrap().status(), StatusCode::OK, "the scheme is case-insensitive");
    let huge = "k".repeat(64 * 1024);
    let (nul, accent) = (format!("{API_KEY}\0"), API_KEY.replacen('e', "ë", 1));
    for odd in [nul.as_str(), accent.as_str(), huge.as_str(), ""] {
        let response =
            stack.http.get(stack.url("/api/jobs/kinds")).header("authorization", format!("Bearer {odd}")).send().await;
        // A header reqwest refuses to send (NUL) never reaches the server.
        let Ok(response) = response else { continue };
        assert!(
            matches!(
                response.status(),
                StatusCode::UNAUTHORIZED
                    | StatusCode::BAD_REQUEST
                    | StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            ),
            "{}",
            response.status()
        );
        if response.status() == StatusCode::UNAUTHORIZED {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "unauthorized");
        }
    }
}

/// Guessing keys is slowed: after a burst of failures the web answers 429 with
/// `Retry-After`, while a valid key is never slowed.
#[tokio::test]
async fn failed_key_checks_are_limited() {
    let stack = Stack::start(fast_sim(), 0, &[]).await;
    let mut limited = 0;
    for i in 0..150 {
        let status = call(&stack, &Method::GET, "/api/jobs/kinds", Some(&format!("guess-{i}"))).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
        assert_eq!(call(&stack, &Method::GET, "/api/jobs/kinds", Some(API_KEY)).await, StatusCode::OK);
    }
    assert!(limited > 0, "150 guesses at once were never limited");
    let response = stack.http.get(stack.url("/api/jobs/kinds")).bearer_auth("guess").send().await.unwrap();
    if response.status() == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(response.headers()["retry-after"], "1");
    }
}

/// 3,000 requests with made-up methods add no metric series: labels come from
/// closed sets. Every answer carries the security headers.
#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let stack = Stack::start(fast_sim(), 0, &[]).await;
    let before = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap().len();
    for i in 0..3000 {
        let method = Method::from_bytes(format!("M{i:04}{}", "X".repeat(40)).as_bytes()).unwrap();
        stack.http.request(method, stack.url("/api/pool/counts")).send().await.unwrap();
    }
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("M0001"), "a made-up method became a label");
    assert!(metrics.contains("method=\"other\""));
    assert!(metrics.len() < before + 10_000, "{} bytes grew to {}", before, metrics.len());
    for path in ["/", "/api/pool/counts", "/nope"] {
        let response = stack.http.get(stack.url(path)).send().await.unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}

/// The fleet and the charts need an operator key; the counts stay open.
#[tokio::test]
async fn only_the_counts_are_open() {
    let stack = Stack::start(fast_sim(), 0, &[]).await;
    for path in ["/api/pool/instances", "/api/stats"] {
        assert_eq!(call(&stack, &Method::GET, path, None).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(call(&stack, &Method::GET, path, Some(API_KEY)).await, StatusCode::OK, "{path}");
    }
    assert_eq!(call(&stack, &Method::GET, "/api/pool/counts", None).await, StatusCode::OK);
}

/// `Retry-After: 86400` from the services API pauses provider calls for at most
/// `UPSTREAM_MAX_PAUSE_MS`, on every replica; and a worker asleep in that pause
/// stops at once on SIGTERM.
#[tokio::test]
async fn an_upstream_cannot_freeze_provider_work() {
    let sim = SimConfig { rate_limit_rate: 1.0, rate_limits_as_429: true, retry_after_secs: 86_400, ..fast_sim() };
    let mut stack = Stack::start(sim, 1, &[("UPSTREAM_MAX_PAUSE_MS", "30000")]).await;
    let replenish = stack.post("/api/pool/replenish", json!({ "count": 1 }), 30).await;
    assert_eq!(replenish.status(), StatusCode::OK);
    let ahead = || async {
        let query = "SELECT EXTRACT(EPOCH FROM max(tat) - now())::float8 FROM rate_limits";
        sqlx::query_scalar::<_, Option<f64>>(query).fetch_one(&stack.db.pool).await.unwrap().unwrap_or(0.0)
    };
    let paused =
        crate::stack::eventually(Duration::from_secs(10), || async { (ahead().await > 5.0).then_some(()) }).await;
    assert!(paused.is_some(), "the 429 paused the shared limit");
    assert!(ahead().await <= 31.0, "paused {} s, beyond the 30 s cap", ahead().await);
    // The provision's retry now sleeps in the shared pause (the simulator keeps
    // answering 429): SIGTERM ends that sleep, not the pause's end.
    stack.sim.sim.clear_requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), stack.stop_worker(0)).await;
    let status = stopped.expect("a worker asleep in a 30 s pause stops on SIGTERM, well before it ends");
    assert!(status.success(), "{status:?}");
}

/// A body of anything but JSON whitespace is not an empty body: a form feed is
/// refused with 400 and enqueues nothing (found by the fuzzer's stateful phase).
#[tokio::test]
async fn a_body_of_odd_whitespace_is_refused() {
    let stack = Stack::start(fast_sim(), 0, &[]).await;
    for body in ["\x0c", "\x0bnull", "\x0c{}"] {
        let response = stack
            .request(Method::POST, "/api/pool/reconcile")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
    }
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'reconcile'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing was enqueued");
}
