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

/// The default pause after a rate limit that came without `Retry-After`.
const PAUSE: Duration = Duration::from_secs(42);

fn services(url: &str, key: Option<&str>, timeout: Duration) -> ServicesClient {
    let config = ServicesConfig {
        url: url.to_owned(),
        api_key: key.map(SecretString::from),
        timeout,
        create_timeout: timeout,
        rate_limit_pause: PAUSE,
        max_pause: Duration::from_secs(300),
    };
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
    let batch = client.status_batch(Some(std::slice::from_ref(&id))).await.unwrap();
    assert_eq!(batch.services.len(), 1);
    assert_eq!(batch.services[0].name.as_deref(), Some(format!("convos-agent-{id}").as_str()));
    assert_eq!(batch.services[0].service_id.as_deref(), Some(created.service_id.as_str()));

    let destroyed = client.destroy(&id).await.unwrap();
    assert_eq!(destroyed.destroyed["service"], true);
    assert!(client.status_batch(Some(std::slice::from_ref(&id))).await.unwrap().services.is_empty());
    let gone = client.destroy(&id).await.unwrap_err();
    assert!(matches!(gone, UpstreamError::NotFound { .. }), "{gone:?}");
    assert_eq!(gone.next(), Next::Gone);
}

/// Upstream's create is not idempotent: a second call for one id makes a second
/// service, then answers 500; both are listed under the id. The kinder, idempotent
/// create is a switch.
#[tokio::test]
async fn a_second_create_makes_a_second_service_then_fails() {
    let sim = spawn_sim(fast_sim()).await;
    let client = services(&sim.url, None, Duration::from_secs(5));
    let id = InstanceId::generate();
    let first = client.create_instance(&id).await.unwrap();
    let err = client.create_instance(&id).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Server { status: 500, .. }), "{err:?}");
    assert!(err.to_string().contains("duplicate key"), "{err}");
    let listed = client.status_batch(Some(std::slice::from_ref(&id))).await.unwrap().services;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_ne!(listed[0].service_id, listed[1].service_id);
    assert_eq!(sim.sim.tracked_ids(), vec![id.to_string()], "services keeps one row");
    assert!(sim.sim.services_of(id.as_str()).iter().any(|s| s.tracked && s.service_id == first.service_id));

    sim.sim.set_faults(Faults { idempotent_create: Some(true), ..Faults::default() });
    let other = InstanceId::generate();
    let a = client.create_instance(&other).await.unwrap();
    let b = client.create_instance(&other).await.unwrap();
    assert_eq!(a.service_id, b.service_id, "the switch restores an idempotent create");
}

/// A provider fault after the service exists answers 500 and leaves the service
/// behind, with no row at services (so its destroy is a 404).
#[tokio::test]
async fn a_create_failing_part_way_leaves_its_service() {
    let sim = spawn_sim(SimConfig { create_fault_rate: 1.0, ..fast_sim() }).await;
    let client = services(&sim.url, None, Duration::from_secs(5));
    let id = InstanceId::generate();
    let err = client.create_instance(&id).await.unwrap_err();
    assert_eq!(err.status(), Some(500), "{err:?}");
    assert_eq!(sim.sim.services_of(id.as_str()).len(), 1, "the service was made before the fault");
    assert!(sim.sim.tracked_ids().is_empty(), "but services never recorded it");
    assert!(matches!(client.destroy(&id).await.unwrap_err(), UpstreamError::NotFound { .. }));
}

/// Create takes as long as its provider calls; a caller that gives up does not stop
/// it: the service and its row appear anyway.
#[tokio::test]
async fn a_slow_create_goes_on_after_its_caller_times_out() {
    let sim = spawn_sim(SimConfig { provider_call: Duration::from_millis(100), ..fast_sim() }).await;
    let id = InstanceId::generate();
    let err = services(&sim.url, None, Duration::from_millis(250)).create_instance(&id).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    let made = crate::stack::eventually(Duration::from_secs(5), || async {
        (sim.sim.tracked_ids() == vec![id.to_string()]).then_some(())
    })
    .await;
    assert!(made.is_some(), "the create finished upstream");
    assert_eq!(sim.sim.services_of(id.as_str()).len(), 1);
}

/// Railway's delete failing: 200 with `destroyed.service = false`, services' row
/// gone (every later destroy is a 404), the service still listed.
#[tokio::test]
async fn a_failed_destroy_answers_200_and_leaves_the_service() {
    let sim = spawn_sim(SimConfig { destroy_fault_rate: 1.0, ..fast_sim() }).await;
    let client = services(&sim.url, None, Duration::from_secs(5));
    let id = InstanceId::generate();
    client.create_instance(&id).await.unwrap();
    let destroyed = client.destroy(&id).await.unwrap();
    assert_eq!(destroyed.destroyed["service"], false);
    assert_eq!(client.status_batch(Some(std::slice::from_ref(&id))).await.unwrap().services.len(), 1);
    assert!(matches!(client.destroy(&id).await.unwrap_err(), UpstreamError::NotFound { .. }));
}

/// Railway's 429 arrives as a 500 with "rate limited" in the text, or from a status
/// batch as a 502 that no longer says why, never with `Retry-After`: the client
/// makes both a rate limit with the default pause. The 429 form is a switch.
#[tokio::test]
async fn provider_rate_limits_arrive_as_500_and_502() {
    let sim = spawn_sim(SimConfig { rate_limit_rate: 1.0, ..fast_sim() }).await;
    let client = services(&sim.url, None, Duration::from_secs(5));
    let err = client.create_instance(&InstanceId::generate()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::RateLimited { status: 500, .. }), "{err:?}");
    assert_eq!(err.next(), Next::Retry { after: Some(PAUSE) });
    let err = client.status_batch(None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::RateLimited { status: 502, .. }), "{err:?}");
    let kept = sim.sim.requests().iter().all(|r| r.status == 500 || r.status == 502);
    assert!(kept, "{:?}", sim.sim.requests());
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
    let sim =
        spawn_sim(SimConfig { rate_limit_rate: 1.0, retry_after_secs: 7, rate_limits_as_429: true, ..fast_sim() })
            .await;
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

/// A second provision of a bound instance: upstream retries the gateway's 409 and
/// answers 500 after a while; some versions answer 409 (a switch).
#[tokio::test]
async fn instance_provision_binds_once_then_fails() {
    let config = SimConfig { build_time: Duration::ZERO, rebind_time: Duration::from_millis(200), ..fast_sim() };
    let sim = spawn_sim(config).await;
    let id = InstanceId::generate();
    let created = services(&sim.url, None, Duration::from_secs(5)).create_instance(&id).await.unwrap();
    let url = created.url.expect("sim gives a url");
    let client = instances();

    assert!(client.health(&url).await.unwrap().ready);
    let bound = client.provision(&url, &provision_body()).await.unwrap();
    let status = client.convos_status(&url).await.unwrap();
    assert_eq!(status.conversation.map(|c| c.id), bound.conversation_id.clone());

    let err = client.provision(&url, &provision_body()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Server { status: 500, .. }), "{err:?}");
    assert_eq!(sim.sim.conversation_of(id.as_str()), bound.conversation_id);

    sim.sim.set_faults(Faults { rebind_conflict: Some(true), ..Faults::default() });
    let err = client.provision(&url, &provision_body()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Conflict { .. }), "{err:?}");
}

/// A join the other side has yet to accept: 200, `joined: true`, no conversation id.
#[tokio::test]
async fn a_pending_join_answers_without_a_conversation_id() {
    let sim = spawn_sim(SimConfig { build_time: Duration::ZERO, join_pending: true, ..fast_sim() }).await;
    let id = InstanceId::generate();
    let url = services(&sim.url, None, Duration::from_secs(5)).create_instance(&id).await.unwrap().url.unwrap();
    let body = ProvisionRequest { join_url: Some("https://convos.invalid/join/x".into()), ..provision_body() };
    let bound = instances().provision(&url, &body).await.unwrap();
    assert!(bound.joined);
    assert_eq!(bound.conversation_id, None);
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

/// An upstream that redirects (where the key would follow) or answers a body larger
/// than any real answer (a listing of 250,000 services, a destroy of 9 MiB): neither
/// is followed nor read to its end.
#[tokio::test]
async fn redirects_are_not_followed_and_huge_answers_not_read() {
    use axum::{Router, http::StatusCode as Code, response::IntoResponse, routing::post};
    let big = "x".repeat(9 * 1024 * 1024);
    let listing = "x".repeat(65 * 1024 * 1024);
    let app = Router::new()
        .route("/status/batch", post(move || async move { listing.clone() }))
        .route("/destroy/{id}", axum::routing::delete(move || async move { big.clone() }))
        .route(
            "/create-instance",
            post(|| async {
                (Code::FOUND, [(axum::http::header::LOCATION, "http://127.0.0.1:1/steal")]).into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = services(&url, Some("k"), Duration::from_secs(10));
    let err = client.create_instance(&InstanceId::generate()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Rejected { status: 302, .. }), "not followed: {err:?}");
    let err = client.status_batch(None).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Decode { .. }) && err.to_string().contains("larger than"), "{err:?}");
    let err = client.destroy(&InstanceId::generate()).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Decode { .. }) && err.to_string().contains("larger than"), "{err:?}");
}

/// The instance key never travels in clear: a plain-http instance URL off this
/// machine is not called at all.
#[tokio::test]
async fn the_instance_key_is_never_sent_over_plain_http() {
    let err = instances().health("http://instance.example.invalid").await.unwrap_err();
    assert!(matches!(err, UpstreamError::Insecure { .. }), "{err:?}");
    assert!(err.never_sent());
}

/// The listing of every service grows with the fleet (about 250 bytes a service):
/// 100,000 services are read whole, not refused as an oversized answer.
#[tokio::test]
async fn a_listing_of_a_hundred_thousand_services_is_read() {
    let sim = spawn_sim(fast_sim()).await;
    for _ in 0..100_000 {
        sim.sim.add_service(InstanceId::generate().as_str());
    }
    let client = services(&sim.url, None, Duration::from_secs(30));
    let batch = client.status_batch(None).await.unwrap();
    assert_eq!(batch.services.len(), 100_000);
}
