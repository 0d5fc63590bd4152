//! The upstream clients against the simulator: success paths and every error class.

use std::time::Duration;

use pool::{
    config::ServicesConfig,
    domain::InstanceId,
    instance::{InstanceClient, ProvisionRequest},
    services::{ServicesClient, Throttle},
    sim::{Faults, SimConfig},
    upstream::{Next, UpstreamError},
};
use secrecy::SecretString;

use crate::helpers::{fast_sim, free_port, spawn_sim};

fn services(url: &str, key: Option<&str>, timeout: Duration) -> ServicesClient {
    let config = ServicesConfig { url: url.to_owned(), api_key: key.map(SecretString::from), timeout };
    ServicesClient::new(&config, Throttle::Unlimited)
}

fn instances() -> InstanceClient {
    InstanceClient::new(SecretString::from("k"), Duration::from_secs(5), Duration::from_secs(5), Throttle::Unlimited)
}

fn provision_body() -> ProvisionRequest {
    ProvisionRequest { agent_name: "Ada".into(), instructions: "Be kind.".into(), join_url: None }
}

#[tokio::test]
async fn create_status_and_destroy_round_trip() {
    let sim = spawn_sim(fast_sim()).await;
    let client = services(&sim.url, None, Duration::from_secs(5));
    let id = InstanceId::generate();

    let created = client.create_instance(&id).await.unwrap();
    assert_eq!(created.instance_id, id);
    let again = client.create_instance(&id).await.unwrap();
    assert_eq!(again.service_id, created.service_id, "create is idempotent on instanceId");

    let batch = client.status_batch(Some(std::slice::from_ref(&id))).await.unwrap();
    assert_eq!(batch.services.len(), 1);
    assert_eq!(batch.services[0].name.as_deref(), Some(format!("convos-agent-{id}").as_str()));

    client.destroy(&id).await.unwrap();
    let gone = client.destroy(&id).await.unwrap_err();
    assert!(matches!(gone, UpstreamError::NotFound { .. }), "{gone:?}");
    assert_eq!(gone.next(), Next::Gone);
}

#[tokio::test]
async fn wrong_api_key_is_a_permanent_rejection() {
    let sim = spawn_sim(SimConfig { services_api_key: Some("right".into()), ..fast_sim() }).await;
    let err = services(&sim.url, Some("wrong"), Duration::from_secs(5)).status_batch(None).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.next(), Next::GiveUp);
    services(&sim.url, Some("right"), Duration::from_secs(5)).status_batch(None).await.expect("right key works");
}

#[tokio::test]
async fn server_error_with_text_body_is_retryable_and_keeps_the_message() {
    let sim = spawn_sim(SimConfig { failure_rate: 1.0, ..fast_sim() }).await;
    let err = services(&sim.url, None, Duration::from_secs(5)).status_batch(None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Server { status: 500, .. }), "{err:?}");
    assert_eq!(err.next(), Next::Retry { after: None });
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let sim = spawn_sim(SimConfig { rate_limit_rate: 1.0, retry_after_secs: 7, ..fast_sim() }).await;
    let err =
        services(&sim.url, None, Duration::from_secs(5)).create_instance(&InstanceId::generate()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::RateLimited { status: 429, .. }), "{err:?}");
    assert_eq!(err.next(), Next::Retry { after: Some(Duration::from_secs(7)) });
}

#[tokio::test]
async fn slow_upstream_times_out_as_retryable() {
    let sim = spawn_sim(SimConfig { latency: Duration::from_secs(3), ..fast_sim() }).await;
    let err = services(&sim.url, None, Duration::from_millis(200)).status_batch(None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    assert!(!err.never_sent(), "a timed-out request may have acted");
    assert_eq!(err.next(), Next::Retry { after: None });
}

#[tokio::test]
async fn refused_connection_is_known_not_to_have_been_sent() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let err = services(&url, None, Duration::from_secs(2)).status_batch(None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Connect { .. }), "{err:?}");
    assert!(err.never_sent());
}

#[tokio::test]
async fn instance_provision_binds_once_then_conflicts() {
    let sim = spawn_sim(SimConfig { build_time: Duration::ZERO, ..SimConfig::default() }).await;
    let id = InstanceId::generate();
    let created = services(&sim.url, None, Duration::from_secs(5)).create_instance(&id).await.unwrap();
    let url = created.url.expect("sim gives a url");
    let client = instances();

    assert!(client.health(&url).await.unwrap().ready);
    let bound = client.provision(&url, &provision_body()).await.unwrap();
    let status = client.convos_status(&url).await.unwrap();
    assert_eq!(status.conversation.map(|c| c.id), Some(bound.conversation_id.clone()));

    let err = client.provision(&url, &provision_body()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Conflict { .. }), "{err:?}");
    assert_eq!(sim.sim.conversation_of(id.as_str()), Some(bound.conversation_id));
}

#[tokio::test]
async fn instance_not_ready_answers_503_without_binding() {
    let sim = spawn_sim(SimConfig { build_time: Duration::from_secs(3600), ..SimConfig::default() }).await;
    let id = InstanceId::generate();
    let url = services(&sim.url, None, Duration::from_secs(5)).create_instance(&id).await.unwrap().url.unwrap();
    let err = instances().provision(&url, &provision_body()).await.unwrap_err();
    assert_eq!(err.status(), Some(503), "{err:?}");
    assert_eq!(sim.sim.conversation_of(id.as_str()), None);
    sim.sim.set_faults(Faults::default());
}
