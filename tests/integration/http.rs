//! The web process: health routes, JSON errors, and a real process stopping on SIGTERM.

use std::time::Duration;

use axum::{Router, routing::post};
use pool::http::extract::ApiJson;
use serde_json::Value;

use crate::helpers::{
    PoolProcess, TestApp, TestDb, base_env, fast_sim, free_port, spawn_sim, test_config, wait_until_up,
};

async fn app() -> (TestApp, TestDb) {
    let db = TestDb::new().await;
    let config = test_config(&db.url, "http://127.0.0.1:1", &[]);
    (TestApp::spawn(config, db.pool.clone()).await, db)
}

#[tokio::test]
async fn health_ready_and_version_answer() {
    let (app, _db) = app().await;
    let health: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["ok"], true);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let version: Value = app.http.get(app.url("/version")).send().await.unwrap().json().await.unwrap();
    assert_eq!(version["environment"], "staging");
    assert!(version["version"].is_string() && version["commit"].is_string());
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_unreachable() {
    let db = TestDb::new().await;
    let dead = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{}/x", free_port()))
        .unwrap();
    let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", &[]), dead).await;
    let response = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "database_unavailable");
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let (app, _db) = app().await;
    let response = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Probe {
    #[serde(default)]
    count: Option<u32>,
}

/// The JSON extractor every mutation uses: malformed, mistyped, unknown-field and
/// wrong-content-type bodies all get the JSON error shape with 400.
#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let router =
        Router::new().route("/probe", post(|ApiJson(p): ApiJson<Probe>| async move { format!("{:?}", p.count) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/probe", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = crate::helpers::http_client();
    let cases = [
        ("application/json", "{not json"),
        ("application/json", r#"{"count":"three"}"#),
        ("application/json", r#"{"count":3,"extra":1}"#),
        ("text/plain", r#"{"count":3}"#),
        // Not an object: serde would read an array into a struct whose fields are optional.
        ("application/json", "[]"),
        ("application/json", "[3]"),
        ("application/json", "3"),
    ];
    for (content_type, body) in cases {
        let r = client.post(&url).header("content-type", content_type).body(body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let json: Value = r.json().await.expect("JSON error body");
        assert_eq!(json["code"], "invalid_request", "{body}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let ok = client.post(&url).header("content-type", "application/json").body(r#"{"count":3}"#).send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "Some(3)");
    let empty = client.post(&url).send().await.unwrap();
    assert_eq!(empty.text().await.unwrap(), "None", "no body is {{}}");
}

#[tokio::test]
async fn web_process_serves_and_stops_gracefully_on_sigterm() {
    let db = TestDb::new().await;
    let sim = spawn_sim(fast_sim()).await;
    let port = free_port();
    let mut env = base_env(&db.url, &sim.url);
    env.insert("PORT".into(), port.to_string());
    let mut web = PoolProcess::spawn(&["web"], &env);
    wait_until_up(&format!("http://127.0.0.1:{port}/readyz"), Duration::from_secs(20)).await;
    web.terminate();
    let status = web.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "graceful exit, got {status}");
}
