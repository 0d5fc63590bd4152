//! Pool against the upstream as it really behaves (SPEC §5): create-instance not
//! idempotent, creates that fail part-way or outlast their caller, destroys that
//! answer 200 and leave the service, joins awaiting acceptance, services vanishing
//! behind Pool's back, and rate limits that arrive as 500/502. No service Pool pays
//! for goes untracked; each one no row owns is an orphan, shown.

use std::time::Duration;

use pool::{
    queue::JobDoc,
    sim::{Faults, SimConfig},
    store::JobState,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{NO_SCHEDULES, fast_sim},
    stack::{Stack, eventually},
};

async fn finished(stack: &Stack, path: &str, body: Value) -> JobDoc {
    let response = stack.post(path, body, 60).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let job: JobDoc = response.json().await.unwrap();
    stack.wait_job(&job.id, Duration::from_secs(60)).await
}

async fn reconcile(stack: &Stack) -> Value {
    let job = finished(stack, "/api/pool/reconcile", json!({})).await;
    assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    job.result.unwrap()
}

/// Creates `n` instances and waits for them to be idle; returns their ids.
async fn fill(stack: &Stack, n: u32) -> Vec<String> {
    let job = finished(stack, "/api/pool/replenish", json!({ "count": n })).await;
    let ids: Vec<String> = serde_json::from_value(job.result.unwrap()["instanceIds"].clone()).unwrap();
    stack.wait_for_counts("idle", Duration::from_secs(60), |c| c["idle"] == i64::from(n)).await;
    ids
}

fn creates_of(stack: &Stack, id: &str) -> usize {
    let requests = stack.sim.sim.requests();
    requests.iter().filter(|r| r.path == "/create-instance" && r.instance_id.as_deref() == Some(id)).count()
}

async fn service_id_of(stack: &Stack, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT service_id FROM instances WHERE id = $1")
        .bind(id)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

async fn fleet_orphans(stack: &Stack) -> Vec<Value> {
    let fleet: Value =
        stack.request(reqwest::Method::GET, "/api/pool/instances").send().await.unwrap().json().await.unwrap();
    fleet["orphans"].as_array().cloned().unwrap_or_default()
}

/// create-instance outlasts Pool's create timeout (six slow provider calls): the
/// retry learns from `/status/batch` that the service exists and takes it over.
/// One create per instance, one service per instance, each row owning its own.
#[tokio::test]
async fn a_create_that_times_out_is_taken_over_not_repeated() {
    let sim = SimConfig { provider_call: Duration::from_millis(250), ..fast_sim() };
    let stack = Stack::start(sim, 2, &[("SERVICES_CREATE_TIMEOUT_MS", "600")]).await;
    let mut ids = fill(&stack, 3).await;
    // The instances may be idle before upstream finishes the creates Pool gave up
    // on (its row comes last): wait for services to record every one.
    ids.sort();
    let recorded = eventually(Duration::from_secs(30), || async { (stack.sim.sim.tracked_ids() == ids).then_some(()) });
    assert!(recorded.await.is_some(), "services recorded {:?} of {ids:?}", stack.sim.sim.tracked_ids());
    for id in &ids {
        assert_eq!(creates_of(&stack, id), 1, "{id}: one create-instance");
        let services = stack.sim.sim.services_of(id);
        assert_eq!(services.len(), 1, "{id}: one service: {services:?}");
        assert_eq!(service_id_of(&stack, id).await.as_deref(), Some(services[0].service_id.as_str()));
    }
    let report = reconcile(&stack).await;
    assert_eq!(report["orphans"], 0, "{report}");
}

/// A provider fault after the service exists answers 500, leaving a service with no
/// domain that upstream will never finish: the retry neither creates a second one
/// nor waits for the stuck timeout. It removes the row (replenish makes another)
/// and shows the service as an orphan, never re-adopted.
#[tokio::test]
async fn a_create_failing_part_way_leaves_an_orphan_not_a_second_service() {
    let sim = SimConfig { create_fault_rate: 1.0, ..fast_sim() };
    let stack = Stack::start(sim, 1, &NO_SCHEDULES).await;
    let job = finished(&stack, "/api/pool/replenish", json!({ "count": 1 })).await;
    let [id] = <[String; 1]>::try_from(
        serde_json::from_value::<Vec<String>>(job.result.unwrap()["instanceIds"].clone()).unwrap(),
    )
    .unwrap();
    let failed = eventually(Duration::from_secs(30), || async {
        let requests = stack.sim.sim.requests();
        requests.iter().any(|r| r.path == "/create-instance" && r.status == 500).then_some(())
    });
    assert!(failed.await.is_some(), "the create failed part-way");
    stack.sim.sim.set_faults(Faults { create_fault_rate: Some(0.0), ..Faults::default() });
    let gone = eventually(Duration::from_secs(30), || async {
        stack.rows().await.iter().all(|(row, _)| *row != id).then_some(())
    });
    assert!(gone.await.is_some(), "the half-made instance's row is removed");
    assert_eq!(creates_of(&stack, &id), 1, "no second create");
    assert_eq!(stack.sim.sim.services_of(&id).len(), 1);
    assert_eq!(stack.counts().await["orphans"], 1);
    let report = reconcile(&stack).await;
    assert_eq!((report["adopted"].as_i64(), report["orphans"].as_i64()), (Some(0), Some(1)), "{report}");
    assert!(stack.rows().await.is_empty(), "an orphan is never adopted as capacity");
}

/// A second service of a row's id (as a blind retry makes): an orphan within one
/// reconcile, in the counts, `/metrics` and the fleet, not capacity; forgotten once
/// someone deletes it at the provider.
#[tokio::test]
async fn a_duplicate_service_is_an_orphan_until_deleted() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    let [id] = <[String; 1]>::try_from(fill(&stack, 1).await).unwrap();
    let body = json!({ "instanceId": id, "name": format!("convos-agent-{id}"), "tools": [] });
    let again = stack.http.post(format!("{}/create-instance", stack.sim.url)).json(&body).send().await.unwrap();
    assert_eq!(again.status(), 500, "upstream refuses the second row");
    let duplicate = stack.sim.sim.services_of(&id).into_iter().find(|s| !s.tracked).expect("a second service");

    let report = reconcile(&stack).await;
    assert_eq!(report["orphans"], 1, "{report}");
    let counts = stack.counts().await;
    assert_eq!((counts["orphans"].as_i64(), counts["idle"].as_i64()), (Some(1), Some(1)), "{counts}");
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("pool_orphan_services 1"), "{metrics}");
    let orphans = fleet_orphans(&stack).await;
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0]["serviceId"], duplicate.service_id.as_str());
    assert_eq!(orphans[0]["instanceId"], id.as_str());
    assert!(orphans[0]["firstSeenAt"].is_string());
    assert_eq!(
        service_id_of(&stack, &id).await,
        stack.sim.sim.services_of(&id).into_iter().find(|s| s.tracked).map(|s| s.service_id)
    );

    assert!(stack.sim.sim.delete_service(&duplicate.service_id));
    let report = reconcile(&stack).await;
    assert_eq!(report["orphans"], 0, "{report}");
    assert!(fleet_orphans(&stack).await.is_empty());
    assert_eq!(stack.counts().await["idle"], 1);
}

/// Railway's delete fails and services answers 200 with `service: false`: Pool
/// confirms by id, finds the service still listed, and keeps it as an orphan
/// (never recorded as destroyed and forgotten, never re-adopted).
#[tokio::test]
async fn a_destroy_that_leaves_the_service_is_an_orphan() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    let [id] = <[String; 1]>::try_from(fill(&stack, 1).await).unwrap();
    stack.sim.sim.set_faults(Faults { destroy_fault_rate: Some(1.0), ..Faults::default() });
    let response = stack
        .request(reqwest::Method::DELETE, &format!("/api/pool/instances/{id}"))
        .header("prefer", "wait=30")
        .send()
        .await
        .unwrap();
    let killed: JobDoc = response.json().await.unwrap();
    assert_eq!(killed.status, JobState::Succeeded, "{killed:?}");
    assert_eq!(killed.result.as_ref().unwrap()["destroyed"], false, "the result says so: {killed:?}");
    assert_eq!(stack.sim.sim.services_of(&id).len(), 1, "the service still runs");
    let orphans = fleet_orphans(&stack).await;
    assert_eq!(orphans.len(), 1, "{orphans:?}");
    assert_eq!(orphans[0]["instanceId"], id.as_str());
    let report = reconcile(&stack).await;
    assert_eq!((report["adopted"].as_i64(), report["orphans"].as_i64()), (Some(0), Some(1)), "{report}");
    assert!(stack.rows().await.is_empty());
}

/// A service deleted behind Pool's back: before its row goes, Pool calls destroy
/// for the id, so services frees its row and the tool resources.
#[tokio::test]
async fn a_vanished_service_is_freed_at_services_before_its_row_goes() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    let [id] = <[String; 1]>::try_from(fill(&stack, 1).await).unwrap();
    assert!(stack.sim.sim.remove_service(&id));
    assert_eq!(stack.sim.sim.tracked_ids(), vec![id.clone()], "services still holds its row");
    reconcile(&stack).await;
    let report = reconcile(&stack).await;
    assert_eq!(report["vanished"], 1, "{report}");
    assert!(stack.rows().await.is_empty());
    assert!(stack.sim.sim.tracked_ids().is_empty(), "services freed the instance");
}

/// A join awaiting the other side's acceptance answers `conversationId: null`: the
/// claim succeeds (saying so), and reconcile fills the id in once the instance
/// knows it.
#[tokio::test]
async fn a_join_awaiting_acceptance_succeeds() {
    let sim = SimConfig { join_pending: true, ..fast_sim() };
    let stack = Stack::start(sim, 1, &NO_SCHEDULES).await;
    let [id] = <[String; 1]>::try_from(fill(&stack, 1).await).unwrap();
    let body = json!({ "agentName": "Ada", "joinUrl": "https://dev.convos.org/v2?i=abc" });
    let claim = finished(&stack, "/api/pool/claim", body).await;
    assert_eq!(claim.status, JobState::Succeeded, "{claim:?}");
    let result = claim.result.unwrap();
    assert_eq!((result["joined"].as_bool(), result["awaitingAcceptance"].as_bool()), (Some(true), Some(true)));
    assert!(result["conversationId"].is_null(), "{result}");
    assert_eq!(stack.rows().await, vec![(id.clone(), "claimed".to_owned())]);

    let report = reconcile(&stack).await;
    assert_eq!(report["conversationsFilled"], 1, "{report}");
    let stored: Option<String> = sqlx::query_scalar("SELECT conversation_id FROM instances WHERE id = $1")
        .bind(&id)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, stack.sim.sim.conversation_of(&id));
}

/// A second provision answers 500 (upstream retried the gateway's 409): the claim
/// learns from `/convos/status` that the instance is bound and completes, instead
/// of marking a bound instance `crashed`.
#[tokio::test]
async fn a_provision_answered_500_on_a_bound_instance_completes_the_claim() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    let [id] = <[String; 1]>::try_from(fill(&stack, 1).await).unwrap();
    // Bound by a provision whose answer was lost: the instance knows, Pool does not.
    stack.sim.sim.bind(&id, "conv_earlier");
    let claim = finished(&stack, "/api/pool/claim", json!({ "agentName": "Ada" })).await;
    assert_eq!(claim.status, JobState::Succeeded, "{claim:?}");
    assert_eq!(claim.result.unwrap()["conversationId"], "conv_earlier");
    assert_eq!(stack.rows().await, vec![(id, "claimed".to_owned())]);
}

/// Provider rate limits arrive as 500 (create, with the words in the text) or 502
/// (status batch) and no `Retry-After`: every replica pauses for the default pause.
#[tokio::test]
async fn provider_rate_limits_in_500s_pause_every_replica() {
    let stack =
        Stack::start(fast_sim(), 2, &[NO_SCHEDULES[0], NO_SCHEDULES[1], ("SERVICES_RATE_LIMIT_PAUSE_MS", "3000")])
            .await;
    stack.sim.sim.set_faults(Faults { rate_limit_rate: Some(1.0), ..Faults::default() });
    stack.sim.sim.clear_requests();
    let replenish = finished(&stack, "/api/pool/replenish", json!({ "count": 4 })).await;
    assert_eq!(replenish.status, JobState::Succeeded);
    let limited = eventually(Duration::from_secs(10), || async {
        let requests = stack.sim.sim.requests();
        requests.iter().any(|r| r.path == "/create-instance" && r.status == 500).then_some(())
    })
    .await;
    assert!(limited.is_some(), "a create was rate limited");
    let paused = eventually(Duration::from_secs(5), || async {
        let query = "SELECT bool_or(tat > now() + interval '1 second') FROM rate_limits";
        let paused: Option<bool> = sqlx::query_scalar(query).fetch_one(&stack.db.pool).await.unwrap();
        paused.unwrap_or(false).then_some(())
    })
    .await;
    assert!(paused.is_some(), "the pause is shared in the database");
    // Four provisions on two workers: with the pause shared, the first 500 holds
    // every other call back for 3 s (calls already past the limiter may land just
    // after it, so the window starts a second in).
    tokio::time::sleep(Duration::from_millis(2800)).await;
    let requests = stack.sim.sim.requests();
    let calls: Vec<u64> = requests.iter().filter(|r| r.path == "/create-instance").map(|r| r.at_ms).collect();
    let first = calls[0];
    let early: Vec<_> = calls.iter().filter(|at| **at >= first + 1000 && **at < first + 2800).collect();
    assert!(early.is_empty(), "services calls during the shared pause: {calls:?}");
}

/// Upstream binds an instance only at the end of a provision, which goes on when
/// its caller dies. A claim re-run (its worker SIGKILLed mid-provision, rescued by
/// another) that finds no binding yet does not provision again — that would bind a
/// second conversation — but looks again once the first provision must be over, and
/// completes from the binding it made. One provision, one conversation.
#[tokio::test]
async fn a_rerun_waits_for_a_provision_still_running() {
    let sim = SimConfig { bind_late: true, provision_time: Duration::from_secs(6), ..fast_sim() };
    let settings = [
        NO_SCHEDULES[0],
        NO_SCHEDULES[1],
        ("JOB_HEARTBEAT_MS", "500"),
        ("JOB_RESCUE_AFTER_MS", "2000"),
        ("PROVISION_TIMEOUT_MS", "8000"),
    ];
    let mut stack = Stack::start(sim, 1, &settings).await;
    let [id] = <[String; 1]>::try_from(fill(&stack, 1).await).unwrap();
    let claim: JobDoc = stack.post("/api/pool/claim", json!({ "agentName": "Slow" }), 0).await.json().await.unwrap();
    let sent = eventually(Duration::from_secs(10), || async {
        let query = "SELECT provision_sent_at IS NOT NULL FROM instances WHERE id = $1";
        let sent: bool = sqlx::query_scalar(query).bind(&id).fetch_one(&stack.db.pool).await.unwrap();
        sent.then_some(())
    });
    assert!(sent.await.is_some(), "the provision was sent");
    stack.kill_worker(0).await;
    stack.add_worker();
    let done = stack.wait_job(&claim.id, Duration::from_secs(40)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    let conversation = stack.sim.sim.conversation_of(&id).expect("bound by the first provision");
    assert_eq!(done.result.as_ref().unwrap()["conversationId"], conversation.as_str());
    let requests = stack.sim.sim.requests();
    let provisions = requests.iter().filter(|r| r.path == format!("/i/{id}/pool/provision")).count();
    assert_eq!(provisions, 1, "one provision: the re-run did not send a second");
    assert_eq!(stack.rows().await, vec![(id, "claimed".to_owned())]);
}

/// A `provisioning` row Pool did not create (the original service's `starting`
/// row, migrated) already has its service. Replenish does not re-drive its
/// provision, and a provision of it takes the listed service over: create-instance,
/// not idempotent upstream, is never called for it.
#[tokio::test]
async fn a_row_pool_did_not_create_is_never_created_again() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    let id = pool::domain::InstanceId::generate().to_string();
    stack.sim.sim.add_service(&id);
    sqlx::query("INSERT INTO instances (id, name, url, status) VALUES ($1, $2, $3, 'provisioning')")
        .bind(&id)
        .bind(format!("convos-agent-{id}"))
        .bind(format!("{}/i/{id}", stack.sim.url))
        .execute(&stack.db.pool)
        .await
        .unwrap();
    let replenish = finished(&stack, "/api/pool/replenish", json!({})).await;
    assert_eq!(replenish.status, JobState::Succeeded, "{replenish:?}");
    // A provision of it anyway (an operator's `pool enqueue`): it finds the service.
    let payload = json!({ "instanceId": id }).to_string();
    let out =
        crate::helpers::pool_command(&["enqueue", "provision_instance", &payload], &stack.env).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let provision = stack.wait_job(job["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(provision.status, JobState::Succeeded, "{provision:?}");
    reconcile(&stack).await;
    assert_eq!(creates_of(&stack, &id), 0, "create-instance was never called for it");
    assert_eq!(stack.sim.sim.services_of(&id).len(), 1);
    stack.wait_for_counts("the row became idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
}
