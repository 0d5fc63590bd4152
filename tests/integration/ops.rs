//! The operator surface: OpenAPI covers every route, metrics, the dashboard page.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    helpers::{API_KEY, TestApp, TestDb, fast_sim, test_config},
    stack::{Stack, eventually},
};

/// Every route of SPEC §3 (the dashboard `/` aside), as the router serves them.
const ROUTES: [(&str, &str); 28] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/version"),
    ("get", "/metrics"),
    ("get", "/api/pool/counts"),
    ("get", "/api/pool/agents"),
    ("post", "/api/pool/claim"),
    ("post", "/api/pool/replenish"),
    ("post", "/api/pool/drain"),
    ("post", "/api/pool/reconcile"),
    ("post", "/api/pool/enrich"),
    ("delete", "/api/pool/instances/{id}"),
    ("delete", "/api/pool/crashed/{id}"),
    ("get", "/api/jobs"),
    ("get", "/api/jobs/{id}"),
    ("post", "/api/jobs/{id}/retry"),
    ("post", "/api/jobs/{id}/cancel"),
    ("post", "/api/jobs/retry"),
    ("post", "/api/jobs/cancel"),
    ("get", "/api/jobs/kinds"),
    ("post", "/api/jobs/kinds/{kind}/pause"),
    ("post", "/api/jobs/kinds/{kind}/resume"),
    ("get", "/api/pool/instances"),
    ("get", "/api/stats"),
    ("get", "/openapi.json"),
    ("get", "/"),
    ("get", "/app.js"),
    ("get", "/style.css"),
];

/// Routes that are not API operations and so are not in the document.
const UNDOCUMENTED: [&str; 4] = ["/openapi.json", "/", "/app.js", "/style.css"];

#[tokio::test]
async fn openapi_documents_every_route_and_every_route_is_served() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), db.pool.clone()).await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in ROUTES {
        if !UNDOCUMENTED.contains(&path) {
            let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing from the document"))[method];
            assert!(op.is_object(), "{method} {path} missing from the document");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has no responses");
        }
        // Served: any answer but the fallback's "no such route".
        let concrete = path.replace("{id}", "abcdefghijkl").replace("{kind}", "abcdefghijkl");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.http.request(m, app.url(&concrete)).send().await.unwrap();
        if r.status() == 404 {
            let body: Value = r.json().await.unwrap_or_default();
            assert_ne!(body["error"], "no such route", "{method} {path} is not routed");
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().map_or(0, |o| o.len())).sum();
    assert_eq!(documented, ROUTES.len() - UNDOCUMENTED.len(), "the document lists a route the test does not know");
    assert!(doc["components"]["schemas"]["JobDoc"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn dashboard_is_served_without_the_key() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), db.pool.clone()).await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("app.js") && !html.contains(API_KEY));
    for asset in ["/app.js", "/style.css"] {
        let r = app.http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(!r.text().await.unwrap().contains(API_KEY));
    }
}

#[tokio::test]
async fn metrics_show_pool_jobs_upstream_calls_and_timings() {
    let stack =
        Stack::start(fast_sim(), 1, &[("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")])
            .await;
    let job: pool::queue::JobDoc =
        stack.post("/api/pool/replenish", json!({"count": 2}), 30).await.json().await.unwrap();
    assert_eq!(job.status, pool::store::JobState::Succeeded);
    stack
        .wait_for_counts("2 provisioned", Duration::from_secs(20), |c| {
            c["provisioning"].as_i64().unwrap() + c["idle"].as_i64().unwrap() == 2
        })
        .await;
    // Job totals on the page are at most a few seconds old: wait for all of them.
    let needles = [
        "pool_upstream_calls_total{target=\"services\",code=\"200\"}",
        "pool_instances{status=\"provisioning\"}",
        "pool_jobs{kind=\"replenish\",status=\"succeeded\"} 2",
        "pool_workers_alive 1",
        "pool_min_idle 0",
        "pool_http_requests_total{method=\"POST\",route=\"/api/pool/replenish\",status=\"200\"} 1",
        "pool_http_request_seconds_count{method=\"POST\",route=\"/api/pool/replenish\"} 1",
        "pool_build_info{version=\"0.1.0\",commit=\"",
        "pool_jobs{kind=\"provision_instance\",status=\"succeeded\"} 2",
        "pool_job_run_seconds_bucket{kind=\"replenish\"",
        "pool_job_queue_wait_seconds_count{kind=\"provision_instance\"} 2",
        "pool_jobs_finished_total{kind=\"replenish\",status=\"succeeded\"} 2",
    ];
    let text = eventually(Duration::from_secs(30), || async {
        let text = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
        needles.iter().all(|needle| text.contains(needle)).then_some(text)
    })
    .await;
    if text.is_none() {
        let text = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let missing: Vec<_> = needles.iter().filter(|n| !text.contains(*n)).collect();
        panic!("missing {missing:?} in\n{text}");
    }
}

/// Logs are JSON lines even without POOL_ENVIRONMENT: job lines carry the job id and kind,
/// request lines the matched route, status and latency.
#[tokio::test]
async fn json_logs_carry_job_and_request_fields() {
    // No POOL_ENVIRONMENT and no text asked for: JSON all the same.
    let overrides =
        [("POOL_LOG_FORMAT", ""), ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")];
    let stack = Stack::start(fast_sim(), 1, &overrides).await;
    let job: pool::queue::JobDoc =
        stack.post("/api/pool/replenish", json!({"count": 1}), 30).await.json().await.unwrap();
    assert_eq!(job.status, pool::store::JobState::Succeeded);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let worker_log = std::fs::read_to_string(stack.log_path("worker-1")).unwrap();
    let web_log = std::fs::read_to_string(stack.log_path("web")).unwrap();
    let lines = |log: &str| -> Vec<Value> { log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect() };

    let job_lines: Vec<Value> = lines(&worker_log)
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("job ") || m.contains("instance created")))
        .collect();
    assert!(job_lines.len() >= 2, "job lines in\n{worker_log}");
    for line in &job_lines {
        let field = |name: &str| line.get(name).or_else(|| line["span"].get(name)).cloned();
        assert!(field("job_id").is_some() && field("kind").is_some(), "job line without ids: {line}");
    }
    let requests: Vec<Value> =
        lines(&web_log).into_iter().filter(|l| l["message"] == "finished processing request").collect();
    let replenish = requests
        .iter()
        .find(|l| l["span"]["route"] == "/api/pool/replenish")
        .unwrap_or_else(|| panic!("no request line in\n{web_log}"));
    assert!(replenish.get("status").is_some() && replenish.get("latency").is_some(), "{replenish}");
}
