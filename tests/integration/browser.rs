//! The dashboard in headless Chromium (tests/browser/dashboard.mjs, playwright-core):
//! the page loads, counts match the API, a claim from the form shows its invite URL,
//! and a failed job is retried from the job list.

use std::time::Duration;

use crate::{
    helpers::{API_KEY, fast_sim},
    stack::Stack,
};

#[tokio::test]
async fn dashboard_claims_and_retries_in_a_real_browser() {
    let stack = Stack::start(fast_sim(), 1, &[("POOL_MIN_IDLE", "2"), ("RECONCILE_SCHEDULE", "*/2 * * * * *")]).await;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2).await;
    // A job that failed for good, as an operator would find it.
    sqlx::query(
        "INSERT INTO jobs (id, kind, args, state, attempts, max_attempts, runs, started_at, finished_at, error)
         VALUES ($1, 'replenish', '{\"count\":1}', 'failed', 3, 3, 3, now(), now(),
                 'services API: HTTP 500: upstream exploded')",
    )
    .bind(ulid::Ulid::generate().to_string())
    .execute(&stack.db.pool)
    .await
    .unwrap();

    let root = env!("CARGO_MANIFEST_DIR");
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let output = tokio::process::Command::new("node")
        .arg(format!("{root}/tests/browser/dashboard.mjs"))
        .arg(&stack.web_url)
        .arg(API_KEY)
        .env("SCREENSHOT_DIR", &shots)
        .output()
        .await
        .expect("node runs (scripts/browser-deps installs the browser test's needs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "browser test failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("invite"), "{stdout}");
}
