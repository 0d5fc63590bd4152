//! The API fuzzed from its own OpenAPI document (schemathesis, installed by
//! `scripts/fuzz-deps`): with and without the key, every answer conforms to
//! `/openapi.json` (status codes, content types, bodies) with every key scope, schema-valid requests are
//! accepted and invalid ones rejected, and there is no 5xx but the documented 503
//! `no_idle_instance` of a claim (`tests/fuzz/pool_checks.py`).

use std::time::Duration;

use crate::{
    helpers::{API_KEY, fast_sim},
    stack::Stack,
};

const CLAIM_KEY: &str = "test-claim-key";

async fn schemathesis(stack: &Stack, key: Option<&str>) -> (bool, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = tokio::process::Command::new(format!("{root}/tests/fuzz/.venv/bin/st"));
    command
        .args(["--config-file", &format!("{root}/tests/fuzz/schemathesis.toml")])
        .args(["run", &stack.url("/openapi.json"), "--checks", "all", "--exclude-checks", "not_a_server_error"])
        .args(["--max-examples", "25", "--generation-deterministic", "--no-color"])
        .env("PYTHONPATH", format!("{root}/tests/fuzz"))
        .env("SCHEMATHESIS_HOOKS", "pool_checks")
        // Its cache of found examples goes here, not into the checkout.
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .kill_on_drop(true);
    if let Some(key) = key {
        command.args(["--header", &format!("Authorization: Bearer {key}")]);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("schemathesis finishes within 5 minutes")
        .expect("schemathesis runs (scripts/fuzz-deps installs it)");
    let report = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), report)
}

#[tokio::test]
async fn the_api_conforms_to_its_openapi_document_under_fuzzing() {
    let stack = Stack::start(fast_sim(), 1, &[("POOL_MIN_IDLE", "2"), ("POOL_CLAIM_KEYS", CLAIM_KEY)]).await;
    stack.wait_for_counts("2 idle", Duration::from_secs(30), |c| c["idle"] == 2).await;
    for (scope, key) in [("an operator key", Some(API_KEY)), ("a claim key", Some(CLAIM_KEY)), ("no key", None)] {
        let (passed, report) = schemathesis(&stack, key).await;
        assert!(passed, "fuzzing with {scope} found failures:\n{report}");
    }
    let health = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the web process survived");
}
