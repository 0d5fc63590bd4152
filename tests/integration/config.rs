//! Configuration errors stop real processes with a message naming the variable.

use crate::helpers::{base_env, pool_command};

async fn stderr_of_failed_web(env: std::collections::HashMap<String, String>) -> String {
    let output = pool_command(&["web"], &env).output().await.expect("run pool web");
    assert!(!output.status.success(), "pool web must refuse to start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn missing_api_key_stops_web_with_its_name() {
    let mut env = base_env("postgres://127.0.0.1:1/x", "http://127.0.0.1:1");
    env.remove("POOL_API_KEY");
    let stderr = stderr_of_failed_web(env).await;
    assert!(stderr.contains("POOL_API_KEY"), "{stderr}");
}

#[tokio::test]
async fn malformed_port_stops_web_with_its_name() {
    let mut env = base_env("postgres://127.0.0.1:1/x", "http://127.0.0.1:1");
    env.insert("PORT".into(), "eighty".into());
    let stderr = stderr_of_failed_web(env).await;
    assert!(stderr.contains("PORT"), "{stderr}");
}

#[tokio::test]
async fn secrets_do_not_appear_in_startup_errors() {
    let mut env = base_env("postgres://user:hunter2secret@127.0.0.1:1/x", "http://127.0.0.1:1");
    env.insert("SERVICES_API_KEY".into(), "svc-topsecret".into());
    env.insert("DATABASE_ACQUIRE_TIMEOUT_MS".into(), "500".into());
    // A database that refuses connections: migrate fails (after the acquire timeout)
    // and says why.
    let output = pool_command(&["migrate"], &env).output().await.expect("run pool migrate");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    // A configuration error of web names the variable, not the secrets next to it.
    env.insert("POOL_MIN_IDLE".into(), "many".into());
    let stderr = stderr_of_failed_web(env).await;
    assert!(stderr.contains("POOL_MIN_IDLE"), "{stderr}");
    for leaked in ["hunter2secret", "svc-topsecret", "test-pool-key"] {
        assert!(!stderr.contains(leaked), "{stderr}");
    }
}
