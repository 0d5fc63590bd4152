//! The operator surface: OpenAPI covers every route, metrics, the dashboard page.

use std::{collections::BTreeSet, time::Duration};

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

/// The methods probed on every documented path (HEAD follows GET in axum).
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `path` with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "abcdefghijkl").replace("{kind}", "abcdefghijkl")
}

/// The document is generated from the router, so it cannot list a route the router
/// lacks. What could still go wrong is a handler routed with a plain `.route`: served,
/// yet not in the document. So the document must equal SPEC's list, every listed
/// route must be served, and every method of a documented path that the document does
/// not list must be refused (405), not answered.
#[tokio::test]
async fn openapi_documents_every_route_and_every_route_is_served() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), db.pool.clone()).await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(|method| (method.clone(), path.clone())))
        .filter(|(method, _)| METHODS.contains(&method.as_str()))
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|(_, path)| !UNDOCUMENTED.contains(path))
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, expected, "the document and SPEC's routes differ");
    for (method, path) in ROUTES {
        if !UNDOCUMENTED.contains(&path) {
            let op = &paths[path][method];
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has no responses");
        }
        // Served: any answer but the fallback's "no such route".
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.http.request(m, app.url(&concrete(path))).send().await.unwrap();
        if r.status() == 404 {
            let body: Value = r.json().await.unwrap_or_default();
            assert_ne!(body["error"], "no such route", "{method} {path} is not routed");
        }
    }
    for (path, item) in paths {
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app.http.request(m, app.url(&concrete(path))).send().await.unwrap();
            assert_eq!(r.status(), 405, "{method} {path} is served but not documented");
        }
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

/// `JobDoc.args` and `result` name one schema per job kind (titled with it), and the
/// 401 answer is one shared response that every operation behind the key references.
#[tokio::test]
async fn openapi_types_job_documents_and_shares_error_answers() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), db.pool.clone()).await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(target) => schemas[target.strip_prefix("#/components/schemas/").unwrap()].clone(),
            None => schema.clone(),
        }
    };
    let kinds: BTreeSet<&str> = pool::jobs::KINDS.iter().map(|kind| kind.as_str()).collect();
    let job = &schemas["JobDoc"]["properties"];
    let args: Vec<Value> = job["args"]["anyOf"].as_array().expect("args is a union").iter().map(resolve).collect();
    let titles: BTreeSet<&str> = args.iter().map(|s| s["title"].as_str().expect("titled with its kind")).collect();
    assert_eq!(args.len(), kinds.len(), "one payload schema per kind");
    assert_eq!(titles, kinds);
    let results: Vec<Value> =
        job["result"]["anyOf"].as_array().expect("result is a union").iter().map(resolve).collect();
    let (null, results): (Vec<Value>, Vec<Value>) = results.into_iter().partition(|s| s["type"] == "null");
    assert_eq!(null.len(), 1, "result is nullable");
    let titles: BTreeSet<&str> = results.iter().map(|s| s["title"].as_str().expect("titled with its kind")).collect();
    assert_eq!(results.len(), kinds.len(), "one result schema per kind");
    assert_eq!(titles, kinds);

    let unauthorized = json!({"$ref": "#/components/responses/Unauthorized"});
    assert_eq!(doc["components"]["responses"]["Unauthorized"]["description"], "Missing or invalid API key");
    let mut secured = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let answer = &op["responses"]["401"];
            if op.get("security").is_some() {
                secured += 1;
                assert_eq!(answer, &unauthorized, "{method} {path}: 401 is the shared answer");
            } else if !answer.is_null() {
                // A route where a key only adds fields refuses a key it does not know.
                assert_eq!(answer, &unauthorized, "{method} {path}: 401 is the shared answer");
            }
            if !answer.is_null() {
                let scoped = (&op["responses"]["403"]["$ref"], &op["responses"]["429"]["$ref"]);
                assert_eq!(scoped.0, "#/components/responses/Forbidden", "{method} {path}");
                assert_eq!(scoped.1, "#/components/responses/TooManyAuthFailures", "{method} {path}");
            }
        }
    }
    assert!(secured >= 16, "{secured} operations behind the key");
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
