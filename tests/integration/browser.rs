//! The dashboard in headless Chromium (tests/browser/dashboard.mjs, playwright-core):
//! the page loads, counts match the API, the charts draw (hour and day), the fleet
//! table and its orphaned services match `GET /api/pool/instances`, a claim from the form shows its invite URL,
//! a failed job is retried from the job list, a job's panel opened by keyboard shows
//! its attempt history and retries it, every failed job is retried at once, and a
//! kind is paused and resumed — with no script, console or server error on the way.

use std::{io::Write, time::Duration};

use serde_json::json;
use sqlx::PgPool;

use crate::{
    helpers::{API_KEY, fast_sim},
    stack::Stack,
};

/// Inserts a job that failed for good after `attempts` runs; returns its id.
async fn failed_job(db: &PgPool, kind: &str, args: &str, attempts: i32, error: &str) -> String {
    let args = serde_json::from_str(args).expect("JSON args");
    crate::fixtures::failed(kind).args(args).runs(attempts).error(error).insert(db).await.to_string()
}

/// Records one earlier run of `job` in `job_attempts`, `ago` seconds back.
async fn attempt(db: &PgPool, job: &str, run: i32, outcome: &str, error: &str, worker: &str, ago: f64) {
    sqlx::query(
        "INSERT INTO job_attempts (job_id, run, outcome, error, worker_id, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, now() - make_interval(secs => $6), now() - make_interval(secs => $6 - 1))",
    )
    .bind(job)
    .bind(run)
    .bind(outcome)
    .bind(error)
    .bind(worker)
    .bind(ago)
    .execute(db)
    .await
    .expect("insert an attempt");
}

#[tokio::test]
async fn dashboard_claims_and_retries_in_a_real_browser() {
    // No schedules: the worker's start-up replenish fills the pool, and no scheduled
    // job pushes the fixtures below off the job list's first page while it runs.
    let never = "0 0 0 1 1 *";
    let settings = [
        ("POOL_MIN_IDLE", "2"),
        ("RECONCILE_SCHEDULE", never),
        ("REPLENISH_SCHEDULE", never),
        ("RAILWAY_PROJECT_ID", "proj-1"),
    ];
    let stack = Stack::start(fast_sim(), 1, &settings).await;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2).await;
    // A second service of an instance's id, as a blind retry of create-instance
    // makes upstream: an orphan below the fleet, with its Railway link.
    let (id, _) = stack.rows().await.remove(0);
    let body = json!({ "instanceId": id, "name": format!("convos-agent-{id}"), "tools": [] });
    stack.http.post(format!("{}/create-instance", stack.sim.url)).json(&body).send().await.expect("create");
    let reconcile = stack.post("/api/pool/reconcile", json!({}), 30).await;
    assert_eq!(reconcile.status(), 200);
    stack.wait_for_counts("an orphan", Duration::from_secs(30), |c| c["orphans"] == 1).await;
    let db = &stack.db.pool;
    // Jobs that failed for good, as an operator would find them: one to retry from the
    // list, one with two recorded attempts for the detail panel, two for the bulk retry.
    let retry = failed_job(db, "replenish", r#"{"count":1}"#, 3, "services API: HTTP 500: upstream exploded").await;
    let history = failed_job(db, "noop", "{}", 2, "fixture: the second attempt failed too").await;
    attempt(db, &history, 1, "retry", "fixture: the first attempt failed", "worker-fixture-1", 120.0).await;
    attempt(db, &history, 2, "failed", "fixture: the second attempt failed too", "worker-fixture-2", 60.0).await;
    let mut bulk = Vec::new();
    for n in 1..=2 {
        bulk.push(failed_job(db, "noop", "{}", 1, &format!("fixture: bulk retry candidate {n}")).await);
    }
    let fixtures = json!({ "retry": retry, "history": history, "bulk": bulk, "pauseKind": "noop" });

    let root = env!("CARGO_MANIFEST_DIR");
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let output = tokio::process::Command::new("node")
        .arg(format!("{root}/tests/browser/dashboard.mjs"))
        .arg(&stack.web_url)
        .arg(API_KEY)
        .env("SCREENSHOT_DIR", &shots)
        .env("FIXTURE_JOBS", fixtures.to_string())
        .output()
        .await
        .expect("node runs (scripts/browser-deps installs the browser test's needs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed\n{stdout}\n{stderr}");
    let needles = [
        "invite",
        "1 orphaned services",
        "2 attempts (retry, failed)",
        "Escape closed it",
        "paused",
        "claims bound at once",
    ];
    for needle in needles.into_iter().chain(["all steps passed"]) {
        assert!(stdout.contains(needle), "{needle:?} missing from\n{stdout}");
    }
    // The steps with --nocapture; where the screenshots are, always (libtest captures
    // only the print macros).
    println!("{stdout}");
    let _ = writeln!(std::io::stderr(), "dashboard screenshots: {}", shots.display());
}
