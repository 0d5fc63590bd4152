//! Smoke runs of `pool-bench` at `--quick` sizes: the command creates its databases,
//! runs real processes (the `pool` binary built beside it) and ends with its JSON
//! line. Performance is never asserted here; the numbers live in docs/BENCHMARKS.md.

use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

/// Runs `pool-bench <scenario> --quick`; returns its last stdout line as JSON.
async fn quick_bench(scenario: &str) -> Value {
    let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL must be set; run the suite with ./scripts/test");
    let run = Command::new(env!("CARGO_BIN_EXE_pool-bench"))
        .args([scenario, "--quick"])
        .env_clear()
        .env("DATABASE_URL", admin)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Keep the checkout's `.env` (if a developer has one) out of the tests.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run).await.expect("bench finishes").expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pool-bench {scenario} failed ({}):\n{stdout}\n{stderr}", out.status);
    let last = stdout.lines().last().unwrap_or_default();
    let json: Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last:?}"));
    assert_eq!(json["scenario"], scenario, "{json}");
    json
}

#[tokio::test]
async fn claim_quick_prints_its_json_line() {
    let json = quick_bench("claim").await;
    assert_eq!(json["runs"].as_array().map(Vec::len), Some(3), "{json}");
}

#[tokio::test]
async fn queue_drain_quick_prints_its_json_line() {
    let json = quick_bench("queue-drain").await;
    assert!(json["best"]["jobs_per_sec"].is_number(), "{json}");
}

#[tokio::test]
async fn availability_quick_prints_its_json_line() {
    let json = quick_bench("availability").await;
    let runs = json["runs"].as_array().expect("runs");
    let buffers: Vec<&str> = runs.iter().filter_map(|r| r["buffer"].as_str()).collect();
    assert_eq!(buffers, ["static", "adaptive", "static"], "{json}");
    for run in runs {
        assert_eq!(run["claims"], json["claims"], "every run replays the same trace: {json}");
        assert!(run["warm_instance_minutes"].as_f64().is_some_and(|m| m > 0.0), "{json}");
        let bursts = run["bursts"].as_array().expect("bursts");
        assert_eq!(Some(bursts.len() as u64), json["trace"]["bursts"].as_u64(), "{json}");
        let in_bursts: u64 = bursts.iter().filter_map(|b| b["claims"].as_u64()).sum();
        assert!(in_bursts >= json["trace"]["burst_size"].as_u64().unwrap_or(u64::MAX), "{json}");
    }
    assert!(json["verdict"]["no_idle_instance"].is_number(), "{json}");
}

/// Without the original service's directory the side-by-side run says so and skips
/// (CI has no copy of it); with one, its run is recorded in docs/BENCHMARKS.md.
#[tokio::test]
async fn versus_without_the_original_skips_with_a_reason() {
    let json = quick_bench("versus").await;
    assert!(json["skipped"].as_str().is_some_and(|r| r.contains("POOL_BENCH_ORIGINAL")), "{json}");
}
