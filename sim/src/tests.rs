//! End-to-end tests of the simulator over real HTTP on 127.0.0.1:0.

use std::time::Duration;

use futures::{StreamExt, stream};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::{Faults, SimConfig, Simulator, SpawnedSim};

fn client() -> Client {
    // reqwest is built with `rustls-no-provider`; plain http still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

async fn spawn(config: SimConfig) -> SpawnedSim {
    Simulator::new(config).spawn().await.expect("simulator binds")
}

/// A config whose services are ready as soon as they exist.
fn instant() -> SimConfig {
    SimConfig { build_time: Duration::ZERO, ..SimConfig::default() }
}

async fn create(http: &Client, url: &str, id: &str) -> reqwest::Response {
    let body = json!({ "instanceId": id, "name": format!("convos-agent-{id}"), "tools": ["openrouter", "agentmail"] });
    http.post(format!("{url}/create-instance")).json(&body).send().await.expect("create sends")
}

async fn batch(http: &Client, url: &str, body: Value) -> Vec<Value> {
    let response = http.post(format!("{url}/status/batch")).json(&body).send().await.expect("batch sends");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("batch is JSON");
    assert_eq!(body["projectId"], "sim-project");
    body["services"].as_array().expect("services array").clone()
}

#[tokio::test]
async fn create_is_not_idempotent() {
    let sim = spawn(SimConfig::default()).await;
    let http = client();
    let first: Value = create(&http, &sim.url, "abcdefghijkl").await.json().await.unwrap();
    assert_eq!(first["url"], format!("{}/i/abcdefghijkl", sim.url));
    let again = create(&http, &sim.url, "abcdefghijkl").await;
    assert_eq!(again.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(again.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("duplicate key"));
    assert_eq!(sim.sim.service_ids(), ["abcdefghijkl", "abcdefghijkl"], "a second service of the id");
    assert_eq!(sim.sim.service("abcdefghijkl").unwrap().service_id, first["serviceId"].as_str().unwrap());

    let bad = create(&http, &sim.url, "too-short").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn status_goes_from_building_to_success() {
    let config = SimConfig { build_time: Duration::from_millis(50), ..SimConfig::default() };
    let sim = spawn(config).await;
    let http = client();
    create(&http, &sim.url, "aaaaaaaaaaaa").await;
    create(&http, &sim.url, "bbbbbbbbbbbb").await;
    let services = batch(&http, &sim.url, json!({ "instanceIds": ["aaaaaaaaaaaa"] })).await;
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["deployStatus"], "BUILDING");
    assert_eq!(services[0]["image"], "ghcr.io/sim/openclaw:latest");

    // Poll rather than assume timing: the machine may be slow.
    let mut status = Value::Null;
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = batch(&http, &sim.url, json!({})).await[0]["deployStatus"].clone();
        if status == "SUCCESS" {
            break;
        }
    }
    assert_eq!(status, "SUCCESS");
    // An empty body means "all services".
    let all = http.post(format!("{}/status/batch", sim.url)).send().await.unwrap();
    assert_eq!(all.json::<Value>().await.unwrap()["services"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn destroy_then_404() {
    let sim = spawn(instant()).await;
    let http = client();
    create(&http, &sim.url, "abcdefghijkl").await;
    let destroy = || http.delete(format!("{}/destroy/abcdefghijkl", sim.url)).send();
    let first = destroy().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.json::<Value>().await.unwrap()["destroyed"]["service"], true);
    let second = destroy().await.unwrap();
    assert_eq!(second.status(), StatusCode::NOT_FOUND);
    assert_eq!(second.json::<Value>().await.unwrap()["code"], "not_found");
    let health = http.get(format!("{}/i/abcdefghijkl/pool/health", sim.url)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_provisions_bind_exactly_once() {
    let config = SimConfig { provision_time: Duration::from_millis(20), ..instant() };
    let sim = spawn(config).await;
    let http = client();
    create(&http, &sim.url, "abcdefghijkl").await;
    let url = format!("{}/i/abcdefghijkl/pool/provision", sim.url);
    let body = json!({ "agentName": "Ada", "instructions": "be nice", "joinUrl": "https://x.invalid/j" });
    let calls = (0..20).map(|_| http.post(&url).json(&body).send());
    let responses = futures::future::join_all(calls).await;
    let mut ok = Vec::new();
    let mut refused = 0;
    for response in responses {
        match response.unwrap().status() {
            StatusCode::OK => ok.push(()),
            // Upstream's answer to a second provision of a bound instance.
            StatusCode::INTERNAL_SERVER_ERROR => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok.len(), refused), (1, 19));
    let status: Value =
        http.get(format!("{}/i/abcdefghijkl/convos/status", sim.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["conversation"]["id"].as_str(), sim.sim.conversation_of("abcdefghijkl").as_deref());
    assert_eq!(status["streaming"], true);
}

#[tokio::test]
async fn provision_answers_and_validates() {
    let sim = spawn(SimConfig { build_time: Duration::from_secs(3600), ..SimConfig::default() }).await;
    let http = client();
    create(&http, &sim.url, "abcdefghijkl").await;
    let url = format!("{}/i/abcdefghijkl/pool/provision", sim.url);
    let provision = |body: Value| http.post(&url).json(&body).send();
    let bad = provision(json!({ "agentName": "", "instructions": "x" })).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let building = provision(json!({ "agentName": "Ada", "instructions": "x" })).await.unwrap();
    assert_eq!(building.status(), StatusCode::SERVICE_UNAVAILABLE);

    sim.sim.set_ready("abcdefghijkl", true);
    let ok: Value = provision(json!({ "agentName": "Ada", "instructions": "x" })).await.unwrap().json().await.unwrap();
    let conversation = ok["conversationId"].as_str().unwrap();
    assert!(conversation.starts_with("conv_"));
    assert_eq!(ok["inviteUrl"], format!("https://sim.convos.invalid/invite/{conversation}"));
    assert_eq!(ok["joined"], false);
}

#[tokio::test]
async fn failure_rate_one_answers_500_plain_text() {
    let sim = spawn(SimConfig { failure_rate: 1.0, ..SimConfig::default() }).await;
    let http = client();
    let response = create(&http, &sim.url, "abcdefghijkl").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "body should not be JSON: {text}");
    assert!(sim.sim.service_ids().is_empty());
    // Control routes are exempt from faults.
    let config = http.get(format!("{}/_sim/config", sim.url)).send().await.unwrap();
    assert_eq!(config.status(), StatusCode::OK);
}

#[tokio::test]
async fn rate_limit_rate_one_answers_429_with_retry_after() {
    let sim = spawn(SimConfig::default()).await;
    let http = client();
    let faults = json!({ "rate_limit_rate": 1.0, "retry_after_secs": 7, "rate_limits_as_429": true });
    let put = http.put(format!("{}/_sim/config", sim.url)).json(&faults);
    assert_eq!(put.send().await.unwrap().status(), StatusCode::OK);
    let response = batch_raw(&http, &sim.url).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "rate_limited");

    sim.sim.set_faults(Faults { rate_limit_rate: Some(0.0), ..Faults::default() });
    assert_eq!(batch_raw(&http, &sim.url).await.status(), StatusCode::OK);
}

async fn batch_raw(http: &Client, url: &str) -> reqwest::Response {
    http.post(format!("{url}/status/batch")).send().await.unwrap()
}

#[tokio::test]
async fn request_log_records_final_statuses() {
    let config = SimConfig { services_api_key: Some("k".into()), ..instant() };
    let sim = spawn(config).await;
    let http = client();
    assert_eq!(create(&http, &sim.url, "abcdefghijkl").await.status(), StatusCode::UNAUTHORIZED);
    let authed = http.post(format!("{}/create-instance", sim.url)).bearer_auth("k");
    let created = authed.json(&json!({ "instanceId": "abcdefghijkl" })).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    http.get(format!("{}/i/abcdefghijkl/pool/health", sim.url)).send().await.unwrap();
    http.get(format!("{}/_sim/instances", sim.url)).send().await.unwrap();

    let log = sim.sim.requests();
    let seen: Vec<_> = log.iter().map(|r| (r.path.as_str(), r.instance_id.as_deref(), r.status)).collect();
    assert_eq!(
        seen,
        [
            ("/create-instance", Some("abcdefghijkl"), 401),
            ("/create-instance", Some("abcdefghijkl"), 200),
            ("/i/abcdefghijkl/pool/health", Some("abcdefghijkl"), 200),
        ]
    );
    let over_http: Vec<super::LoggedRequest> =
        http.get(format!("{}/_sim/requests", sim.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(over_http, log);
    http.delete(format!("{}/_sim/requests", sim.url)).send().await.unwrap();
    assert!(sim.sim.requests().is_empty());
}

#[tokio::test]
async fn controls_change_what_pool_sees() {
    let sim = spawn(instant()).await;
    let http = client();
    let control = |path: &str, body: Value| http.post(format!("{}/_sim/instances{path}", sim.url)).json(&body).send();
    control("", json!({ "instanceId": "someone-else" })).await.unwrap();
    control("/someone-else/deploy-status", json!({ "status": "CRASHED" })).await.unwrap();
    let services = batch(&http, &sim.url, json!({})).await;
    assert_eq!(
        (services[0]["name"].as_str(), services[0]["deployStatus"].as_str()),
        (Some("convos-agent-someone-else"), Some("CRASHED"))
    );
    control("/someone-else/bind", json!({ "conversationId": "c1" })).await.unwrap();
    assert_eq!(sim.sim.conversation_of("someone-else").as_deref(), Some("c1"));
    let missing = control("/nope/ready", json!({ "ready": false })).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    http.delete(format!("{}/_sim/instances/someone-else", sim.url)).send().await.unwrap();
    assert!(batch(&http, &sim.url, json!({})).await.is_empty());
    let unknown = http.get(format!("{}/no/such/route", sim.url)).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["code"], "not_found");
}

#[tokio::test]
async fn three_thousand_creates_show_in_one_batch() {
    let sim = spawn(SimConfig::default()).await;
    let http = client();
    let statuses: Vec<StatusCode> = stream::iter(0..3_000)
        .map(|n| {
            let (http, url) = (&http, &sim.url);
            async move { create(http, url, &format!("inst{n:08}")).await.status() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(batch(&http, &sim.url, json!({})).await.len(), 3_000);
}
