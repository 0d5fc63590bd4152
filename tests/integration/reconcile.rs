//! Reconcile (SPEC §2.2, job `reconcile`) end to end: real `pool web` + `pool worker`
//! processes against the in-process simulator. The reconcile schedule is switched off
//! so every reconcile is one we trigger (`POST /api/pool/reconcile`, `Prefer: wait`)
//! and each step's outcome can be asserted exactly; the readiness follow-up
//! (`check_ready`), which makes new instances idle by reconcile's rules, is paused.

use std::time::Duration;

use pool::{queue::JobDoc, sim::Faults, store::JobState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::fast_sim,
    stack::{Stack, eventually},
};

/// A cron that never fires during a test (midnight on January 1st).
const NO_RECONCILE: (&str, &str) = ("RECONCILE_SCHEDULE", "0 0 0 1 1 *");

async fn start(overrides: &[(&str, &str)]) -> Stack {
    let mut all = vec![NO_RECONCILE];
    all.extend_from_slice(overrides);
    let stack = Stack::start(fast_sim(), 1, &all).await;
    let paused = stack.request(Method::POST, "/api/jobs/kinds/check_ready/pause").send().await.unwrap();
    assert_eq!(paused.status(), StatusCode::OK);
    stack
}

/// Runs one reconcile to completion and returns its report (the job's result).
async fn reconcile(stack: &Stack) -> Value {
    let response = stack.request(Method::POST, "/api/pool/reconcile").header("prefer", "wait=30").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "reconcile finished within the wait");
    let job: JobDoc = response.json().await.unwrap();
    assert_eq!(job.kind, "reconcile");
    assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    job.result.expect("a reconcile reports what it did")
}

/// The row's status, `None` when the row is gone.
async fn status_of(stack: &Stack, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM instances WHERE id = $1")
        .bind(id)
        .fetch_optional(&stack.db.pool)
        .await
        .unwrap()
}

/// Replenishes `n` instances and waits until the services API created all of them
/// and their builds finished; returns their ids. They are still `provisioning`.
async fn create(stack: &Stack, n: u32) -> Vec<String> {
    let response = stack.post("/api/pool/replenish", json!({ "count": n }), 30).await;
    assert_eq!(response.status(), StatusCode::OK);
    let job: JobDoc = response.json().await.unwrap();
    assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    let ids: Vec<String> = serde_json::from_value(job.result.unwrap()["instanceIds"].clone()).unwrap();
    assert_eq!(ids.len(), n as usize);
    let created = eventually(Duration::from_secs(30), || async {
        let with_service: i64 =
            sqlx::query_scalar("SELECT count(*) FROM instances WHERE id = ANY($1) AND service_id IS NOT NULL")
                .bind(&ids)
                .fetch_one(&stack.db.pool)
                .await
                .unwrap();
        (with_service == i64::from(n)).then_some(())
    })
    .await;
    assert!(created.is_some(), "provision jobs did not create all services; rows: {:?}", stack.rows().await);
    ids
}

/// Waits until the simulator reports `SUCCESS` for every id (the build is over).
async fn wait_built(stack: &Stack, ids: &[String]) {
    let built = eventually(Duration::from_secs(10), || async {
        ids.iter().all(|id| stack.sim.sim.service(id).is_some_and(|s| s.deploy_status == "SUCCESS")).then_some(())
    })
    .await;
    assert!(built.is_some(), "simulated builds did not finish");
}

/// `n` idle instances: created, built, and health-checked into the pool by one reconcile.
async fn warm(stack: &Stack, n: u32) -> Vec<String> {
    let ids = create(stack, n).await;
    wait_built(stack, &ids).await;
    let report = reconcile(stack).await;
    assert_eq!(report["becameIdle"], n, "{report}");
    for id in &ids {
        assert_eq!(status_of(stack, id).await.as_deref(), Some("idle"), "{id}");
    }
    ids
}

async fn dismiss(stack: &Stack, id: &str, wait: bool) -> reqwest::Response {
    let mut request = stack.request(Method::DELETE, &format!("/api/pool/crashed/{id}"));
    if wait {
        request = request.header("prefer", "wait=30");
    }
    request.send().await.unwrap()
}

/// (a) A service deleted behind Pool's back: one batch without it only counts the
/// absence; the second removes the row. Other rows are untouched.
#[tokio::test]
async fn vanished_service_row_is_removed_after_two_batches() {
    let stack = start(&[]).await;
    let ids = warm(&stack, 2).await;
    let (gone, kept) = (&ids[0], &ids[1]);

    assert!(stack.sim.sim.remove_service(gone));

    let first = reconcile(&stack).await;
    assert_eq!(first["vanished"], 0, "{first}");
    assert_eq!(status_of(&stack, gone).await.as_deref(), Some("idle"), "one missing batch is not enough");
    let missing: i32 = sqlx::query_scalar("SELECT missing_batches FROM instances WHERE id = $1")
        .bind(gone)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(missing, 1);

    let second = reconcile(&stack).await;
    assert_eq!(second["vanished"], 1, "{second}");
    assert_eq!(status_of(&stack, gone).await, None, "row removed after the second missing batch");
    assert_eq!(status_of(&stack, kept).await.as_deref(), Some("idle"));
    assert_eq!(stack.rows().await.len(), 1);

    // A service that comes back in between (a flaky listing) resets the count:
    // absent, present, absent again is never "two consecutive" batches.
    stack.sim.sim.set_unlisted(kept, true);
    reconcile(&stack).await;
    stack.sim.sim.set_unlisted(kept, false);
    reconcile(&stack).await;
    stack.sim.sim.set_unlisted(kept, true);
    let report = reconcile(&stack).await;
    assert_eq!(report["vanished"], 0, "{report}");
    assert!(status_of(&stack, kept).await.is_some(), "absences were not consecutive");
    let report = reconcile(&stack).await;
    assert_eq!(report["vanished"], 1, "{report}");
    assert_eq!(status_of(&stack, kept).await, None);
}

/// (b) An unknown `convos-agent-<id>` service is adopted as a `provisioning` row, and
/// the next reconcile health-checks it into `idle`. Services that are not Pool's
/// (another name, or an id that is not a Pool instance id) are left alone.
#[tokio::test]
async fn unknown_agent_service_is_adopted_and_becomes_idle() {
    let stack = start(&[]).await;
    let stranger = "Adopt_me-123";
    stack.sim.sim.add_service(stranger);
    // Named like ours but not a valid instance id, and validly-id'd but named otherwise.
    stack.sim.sim.add_service("short");
    let response = stack
        .http
        .post(format!("{}/_sim/instances", stack.sim.url))
        .json(&json!({ "instanceId": "NotOurs12345", "name": "someone-elses-service" }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    wait_built(&stack, &[stranger.to_owned()]).await;

    let first = reconcile(&stack).await;
    assert_eq!(first["adopted"], 1, "{first}");
    assert_eq!(stack.rows().await, vec![(stranger.to_owned(), "provisioning".to_owned())]);
    let (name, service_id, url): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT name, service_id, url FROM instances WHERE id = $1")
            .bind(stranger)
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    let service = stack.sim.sim.service(stranger).unwrap();
    assert_eq!(name.as_deref(), Some("convos-agent-Adopt_me-123"));
    assert_eq!(service_id.as_deref(), Some(service.service_id.as_str()));
    assert_eq!(url, Some(format!("{}/i/{stranger}", stack.sim.url)));

    let second = reconcile(&stack).await;
    assert_eq!(second["adopted"], 0, "{second}");
    assert_eq!(second["becameIdle"], 1, "{second}");
    assert_eq!(stack.rows().await, vec![(stranger.to_owned(), "idle".to_owned())]);
    // Nothing was destroyed at the provider, ours or not.
    let mut services = stack.sim.sim.service_ids();
    services.sort();
    assert_eq!(services, vec!["Adopt_me-123", "NotOurs12345", "short"]);
}

/// (b') An unknown service that is already bound to a conversation (a claimed agent
/// whose row was lost) must not be offered to the next claim: it may be adopted, but
/// never as `idle`. Today it becomes idle; the next claim gets 409 "already bound",
/// crashes the instance and fails the user's claim.
#[tokio::test]
async fn adopted_service_already_bound_is_never_idle() {
    let stack = start(&[]).await;
    let stranger = "Bound_agent1";
    stack.sim.sim.add_service(stranger);
    stack.sim.sim.bind(stranger, "conv_lost_row");
    wait_built(&stack, &[stranger.to_owned()]).await;

    let first = reconcile(&stack).await;
    assert_eq!(first["adopted"], 1, "{first}");
    reconcile(&stack).await;
    reconcile(&stack).await;
    let rows = stack.rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_ne!(rows[0].1, "idle", "a bound instance must not be claimable: {rows:?}");

    // What an operator sees: the user's claim must not land on it (an idle instance
    // is bound at once; this one waits its 3 s in line and is turned away).
    let claim = stack.post("/api/pool/claim", json!({ "agentName": "Bob" }), 3).await;
    let body: Value = claim.json().await.unwrap();
    assert_ne!(body["status"], "failed", "a claim was handed the bound instance: {body}");
    assert_eq!(stack.sim.sim.conversation_of(stranger).as_deref(), Some("conv_lost_row"));
}

/// (c) `claimed` → `crashed` when the deploy dies; back to `claimed` only when the
/// deploy is healthy again AND the instance reports the same conversation; dismiss.
#[tokio::test]
async fn crashed_claim_recovers_only_with_same_conversation_and_can_be_dismissed() {
    let stack = start(&[]).await;
    let ids = warm(&stack, 2).await;

    let claim = stack.post("/api/pool/claim", json!({ "agentName": "Ada" }), 30).await;
    assert_eq!(claim.status(), StatusCode::OK);
    let job: JobDoc = claim.json().await.unwrap();
    assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    let result = job.result.unwrap();
    let id = result["instanceId"].as_str().unwrap().to_owned();
    let conversation = result["conversationId"].as_str().unwrap().to_owned();
    let other = ids.iter().find(|i| **i != id).unwrap().clone();
    assert_eq!(status_of(&stack, &id).await.as_deref(), Some("claimed"));

    // Dismiss applies to crashed instances only.
    let response = dismiss(&stack, &id, false).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_crashed", "{body}");
    assert_eq!(dismiss(&stack, &other, false).await.status(), StatusCode::CONFLICT);
    let response = dismiss(&stack, "NoSuchId0000", false).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert!(body["code"].is_string() && body["error"].is_string(), "{body}");

    // The deploy dies: claimed → crashed. The idle neighbour is untouched.
    stack.sim.sim.set_deploy_status(&id, Some("CRASHED"));
    let report = reconcile(&stack).await;
    assert_eq!(report["crashed"], 1, "{report}");
    assert_eq!(status_of(&stack, &id).await.as_deref(), Some("crashed"));
    assert_eq!(status_of(&stack, &other).await.as_deref(), Some("idle"));
    let agents: Value = stack.http.get(stack.url("/api/pool/agents")).send().await.unwrap().json().await.unwrap();
    assert_eq!(agents["crashed"].as_array().unwrap().len(), 1, "{agents}");
    assert_eq!(agents["crashed"][0]["id"], id.as_str());
    assert_eq!(agents["claimed"].as_array().unwrap().len(), 0, "{agents}");

    // Same conversation, but the deploy is still dead: stays crashed.
    assert_eq!(stack.sim.sim.conversation_of(&id).as_deref(), Some(conversation.as_str()));
    let report = reconcile(&stack).await;
    assert_eq!(report["recovered"], 0, "{report}");
    assert_eq!(status_of(&stack, &id).await.as_deref(), Some("crashed"));

    // Healthy again, but bound to another conversation: stays crashed.
    stack.sim.sim.set_deploy_status(&id, None);
    stack.sim.sim.bind(&id, "other");
    assert_eq!(stack.sim.sim.service(&id).unwrap().deploy_status, "SUCCESS");
    let report = reconcile(&stack).await;
    assert_eq!(report["recovered"], 0, "{report}");
    assert_eq!(status_of(&stack, &id).await.as_deref(), Some("crashed"));

    // Healthy and the same conversation: claimed again, conversation unchanged.
    stack.sim.sim.bind(&id, &conversation);
    let report = reconcile(&stack).await;
    assert_eq!(report["recovered"], 1, "{report}");
    let (status, stored): (String, Option<String>) =
        sqlx::query_as("SELECT status, conversation_id FROM instances WHERE id = $1")
            .bind(&id)
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "claimed");
    assert_eq!(stored.as_deref(), Some(conversation.as_str()));

    // Crash again and dismiss: row deleted, service destroyed.
    stack.sim.sim.set_deploy_status(&id, Some("CRASHED"));
    let report = reconcile(&stack).await;
    assert_eq!(report["crashed"], 1, "{report}");
    let response = dismiss(&stack, &id, true).await;
    assert_eq!(response.status(), StatusCode::OK);
    let job: JobDoc = response.json().await.unwrap();
    assert_eq!(job.kind, "dismiss_crashed");
    assert_eq!(job.status, JobState::Succeeded, "{job:?}");
    assert_eq!(status_of(&stack, &id).await, None, "row deleted");
    assert!(stack.sim.sim.service(&id).is_none(), "service destroyed at the provider");
    assert_eq!(status_of(&stack, &other).await.as_deref(), Some("idle"));
    assert!(stack.sim.sim.service(&other).is_some());
    assert_eq!(dismiss(&stack, &id, false).await.status(), StatusCode::NOT_FOUND, "already gone");
}

/// (d) Provisioning instances not ready within `POOL_STUCK_TIMEOUT_MS` are drained
/// and destroyed: one whose build never ends, one built but never healthy. A healthy
/// one created at the same time becomes idle and stays.
#[tokio::test]
async fn stuck_provisioning_instances_are_drained_and_destroyed() {
    const STUCK_MS: i64 = 3000;
    let stack = start(&[("POOL_STUCK_TIMEOUT_MS", "3000")]).await;
    let ids = create(&stack, 3).await;
    let (building, unhealthy, healthy) = (&ids[0], &ids[1], &ids[2]);
    stack.sim.sim.set_deploy_status(building, Some("BUILDING"));
    stack.sim.sim.set_ready(unhealthy, false);
    wait_built(&stack, &[unhealthy.clone(), healthy.clone()]).await;

    let first = reconcile(&stack).await;
    assert_eq!(first["becameIdle"], 1, "{first}");
    assert_eq!(status_of(&stack, healthy).await.as_deref(), Some("idle"));
    // Only meaningful if the rows were younger than the timeout during that reconcile,
    // which they certainly were if they still are now.
    // `None` when they are already gone (drained by that very reconcile).
    let oldest_ms: Option<f64> = sqlx::query_scalar(
        "SELECT max(EXTRACT(EPOCH FROM now() - status_changed_at) * 1000)::float8 FROM instances WHERE id = ANY($1)",
    )
    .bind(vec![building.clone(), unhealthy.clone()])
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    if oldest_ms.is_some_and(|ms| ms < STUCK_MS as f64) {
        assert_eq!(first["draining"], 0, "{first}");
        assert_eq!(status_of(&stack, building).await.as_deref(), Some("provisioning"));
        assert_eq!(status_of(&stack, unhealthy).await.as_deref(), Some("provisioning"));
    }

    let past = eventually(Duration::from_secs(20), || async {
        let all_old: bool = sqlx::query_scalar(
            "SELECT COALESCE(bool_and(now() - status_changed_at > make_interval(secs => $2::float8 / 1000 + 0.2)), true)
             FROM instances WHERE id = ANY($1)",
        )
        .bind(vec![building.clone(), unhealthy.clone()])
        .bind(STUCK_MS as f64)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
        all_old.then_some(())
    })
    .await;
    assert!(past.is_some(), "rows never aged past the stuck timeout");

    let second = reconcile(&stack).await;
    // On a slow machine the first reconcile may already have been past the timeout.
    let drained = first["draining"].as_u64().unwrap() + second["draining"].as_u64().unwrap();
    assert_eq!(drained, 2, "{first} {second}");
    assert_eq!(stack.rows().await, vec![(healthy.clone(), "idle".to_owned())]);
    assert_eq!(stack.sim.sim.service_ids(), vec![healthy.clone()], "stuck services destroyed at the provider");
    let destroys: Vec<String> = stack
        .sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.starts_with("/destroy/"))
        .filter_map(|r| r.instance_id)
        .collect();
    let mut destroys_sorted = destroys.clone();
    destroys_sorted.sort();
    let mut expected = vec![building.clone(), unhealthy.clone()];
    expected.sort();
    assert_eq!(destroys_sorted, expected, "exactly one destroy per stuck instance");

    // An idle instance is never "stuck", however old.
    let report = reconcile(&stack).await;
    assert_eq!(report["draining"], 0, "{report}");
    assert_eq!(stack.rows().await, vec![(healthy.clone(), "idle".to_owned())]);
}

/// (d') The stuck timeout holds whatever the deploy reports: a `provisioning` row
/// whose deploy status Pool does not recognise (here `MIGRATING`) is not ready, so
/// past `POOL_STUCK_TIMEOUT_MS` it must be drained like any other stuck instance.
/// Otherwise it counts towards `idle + provisioning` forever and is never replaced.
#[tokio::test]

async fn stuck_provisioning_with_unrecognised_deploy_status_is_drained() {
    let stack = start(&[("POOL_STUCK_TIMEOUT_MS", "1000")]).await;
    let ids = create(&stack, 1).await;
    let id = &ids[0];
    stack.sim.sim.set_deploy_status(id, Some("MIGRATING"));
    let past = eventually(Duration::from_secs(20), || async {
        let old: bool = sqlx::query_scalar(
            "SELECT COALESCE(bool_and(now() - status_changed_at > interval '1.2 seconds'), true) FROM instances",
        )
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
        old.then_some(())
    })
    .await;
    assert!(past.is_some());
    let report = reconcile(&stack).await;
    assert_eq!(report["draining"], 1, "{report}");
    assert_eq!(status_of(&stack, id).await, None);
    assert!(stack.sim.sim.service(id).is_none(), "destroyed at the provider");
}

/// (e) Railway `SLEEPING` is not dead: a sleeping idle instance stays idle across
/// reconciles, while a `CRASHED` idle neighbour in the same batches is drained.
#[tokio::test]
async fn sleeping_idle_instance_is_kept() {
    let stack = start(&[]).await;
    let ids = warm(&stack, 2).await;
    let (sleeping, dead) = (&ids[0], &ids[1]);
    stack.sim.sim.set_deploy_status(sleeping, Some("SLEEPING"));
    stack.sim.sim.set_deploy_status(dead, Some("CRASHED"));

    let report = reconcile(&stack).await;
    assert_eq!(report["draining"], 1, "{report}");
    assert_eq!(stack.rows().await, vec![(sleeping.clone(), "idle".to_owned())]);
    assert!(stack.sim.sim.service(dead).is_none(), "the dead one was destroyed");

    for _ in 0..3 {
        let report = reconcile(&stack).await;
        assert_eq!(report["draining"], 0, "{report}");
        assert_eq!(report["vanished"], 0, "{report}");
        assert_eq!(stack.rows().await, vec![(sleeping.clone(), "idle".to_owned())]);
    }
    let deploy: Option<String> = sqlx::query_scalar("SELECT deploy_status FROM instances WHERE id = $1")
        .bind(sleeping)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(deploy.as_deref(), Some("SLEEPING"));
    assert_eq!(stack.sim.sim.service(sleeping).unwrap().deploy_status, "SLEEPING", "not destroyed");
    // Idle instances are not health-checked (a sleeping one would be woken up).
    let health_checks =
        stack.sim.sim.requests().into_iter().filter(|r| r.path == format!("/i/{sleeping}/pool/health")).count();
    assert_eq!(health_checks, 1, "only the check that made it idle");
}

/// (f) `POST /api/pool/reconcile` returns the queued or running reconcile instead of
/// enqueueing a second one; once it finished, a new one is enqueued.
#[tokio::test]
async fn reconcile_requests_are_deduplicated_while_one_is_active() {
    let stack = start(&[]).await;
    // Every services call takes 3 s, so the reconcile stays queued/running a while.
    stack.sim.sim.set_faults(Faults { latency_ms: Some(3000), ..Faults::default() });

    let post = || async {
        let response = stack.request(Method::POST, "/api/pool/reconcile").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = response.headers().get("location").unwrap().to_str().unwrap().to_owned();
        let job: JobDoc = response.json().await.unwrap();
        assert_eq!(location, format!("/api/jobs/{}", job.id));
        job
    };
    let (a, b) = tokio::join!(post(), post());
    assert_eq!(a.id, b.id, "two concurrent requests, one job");
    assert!(matches!(a.status, JobState::Queued | JobState::Running), "{a:?}");

    let running = eventually(Duration::from_secs(20), || async {
        let job: JobDoc =
            stack.request(Method::GET, &format!("/api/jobs/{}", a.id)).send().await.unwrap().json().await.unwrap();
        (job.status == JobState::Running).then_some(job)
    })
    .await;
    assert!(running.is_some(), "the reconcile never started");
    let c = post().await;
    assert_eq!(c.id, a.id, "a running reconcile absorbs new requests");
    assert_eq!(c.status, JobState::Running);

    let done = stack.wait_job(&a.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");
    let d = post().await;
    assert_ne!(d.id, a.id, "a finished reconcile does not absorb new requests");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'reconcile'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 2);
}

/// With `RAILWAY_ENVIRONMENT_ID` set, services of another environment in the same
/// project are neither adopted nor destroyed, whatever their state; they are counted.
#[tokio::test]
async fn services_of_other_environments_are_left_alone() {
    let stack = start(&[("RAILWAY_ENVIRONMENT_ID", "sim-env")]).await;
    let (ours, theirs, dead) = ("OursAAAAAAAA", "TheirsBBBBBB", "TheirDeadCCC");
    for id in [ours, theirs, dead] {
        stack.sim.sim.add_service(id);
    }
    stack.sim.sim.set_environment(theirs, "production-env");
    stack.sim.sim.set_environment(dead, "production-env");
    stack.sim.sim.set_deploy_status(dead, Some("CRASHED"));
    wait_built(&stack, &[ours.to_owned(), theirs.to_owned()]).await;

    let report = reconcile(&stack).await;
    assert_eq!(report["adopted"], 1, "{report}");
    assert_eq!(report["otherEnvironments"], 2, "{report}");
    assert_eq!(stack.rows().await, vec![(ours.to_owned(), "provisioning".to_owned())]);
    for _ in 0..3 {
        reconcile(&stack).await;
    }
    let mut services = stack.sim.sim.service_ids();
    services.sort();
    assert_eq!(services, vec![ours, dead, theirs], "nothing of the other environment destroyed");
    assert!(!stack.sim.sim.requests().iter().any(|r| r.path.starts_with("/destroy")), "no destroy call at all");
}

/// A claimed row is removed as vanished only when `/status/batch` asked for its id
/// confirms the service is gone: a listing that merely leaves it out (twice) keeps it.
#[tokio::test]
async fn a_claimed_row_vanishes_only_when_absence_is_confirmed_by_id() {
    let stack = start(&[]).await;
    let ids = warm(&stack, 1).await;
    let claim = stack.post("/api/pool/claim", json!({ "agentName": "Kept" }), 10).await;
    assert_eq!(claim.status(), StatusCode::OK);
    let id = &ids[0];
    assert_eq!(status_of(&stack, id).await.as_deref(), Some("claimed"));

    stack.sim.sim.set_unlisted(id, true);
    stack.sim.sim.clear_requests();
    for _ in 0..3 {
        let report = reconcile(&stack).await;
        assert_eq!(report["vanished"], 0, "{report}");
    }
    assert_eq!(status_of(&stack, id).await.as_deref(), Some("claimed"), "left out of listings, found by id");
    let batches = stack.sim.sim.requests().iter().filter(|r| r.path == "/status/batch").count();
    assert!(batches > 3, "absence was checked by id after the listings ({batches} batch calls)");

    // Gone for real: the next reconcile's check by id confirms it.
    assert!(stack.sim.sim.remove_service(id));
    let report = reconcile(&stack).await;
    assert_eq!(report["vanished"], 1, "{report}");
    assert_eq!(status_of(&stack, id).await, None);
}

/// Rows no job will ever move reach a resting state an operator sees: a `claiming`
/// row whose claim job is gone and whose deploy is dead (or that cannot be asked past
/// the stuck timeout), and an adopted row whose health is fine but whose binding
/// cannot be read, end `crashed` with the reason.
#[tokio::test]
async fn rows_no_job_owns_end_crashed_with_the_reason() {
    let stack = start(&[("POOL_STUCK_TIMEOUT_MS", "1500")]).await;
    let ids = warm(&stack, 2).await;
    let (dead, silent) = (&ids[0], &ids[1]);
    // Claim jobs that no longer exist hold both rows.
    sqlx::query("UPDATE instances SET status = 'claiming', claim_job_id = 'gone-' || id WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    stack.sim.sim.set_deploy_status(dead, Some("CRASHED"));
    stack.sim.sim.set_status_broken(silent, true);
    let adopted = "AdoptedSilnt";
    stack.sim.sim.add_service(adopted);
    stack.sim.sim.set_status_broken(adopted, true);
    wait_built(&stack, &[adopted.to_owned()]).await;

    reconcile(&stack).await;
    assert_eq!(status_of(&stack, dead).await.as_deref(), Some("crashed"), "dead deploy: at once");
    assert_eq!(status_of(&stack, silent).await.as_deref(), Some("claiming"), "not before the stuck timeout");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    reconcile(&stack).await;
    reconcile(&stack).await;
    for id in [dead.as_str(), silent.as_str(), adopted] {
        assert_eq!(status_of(&stack, id).await.as_deref(), Some("crashed"), "{id}");
    }
    let errors: Vec<Option<String>> =
        sqlx::query_scalar("SELECT last_error FROM instances ORDER BY id").fetch_all(&stack.db.pool).await.unwrap();
    assert!(errors.iter().all(|e| e.as_deref().is_some_and(|e| !e.is_empty())), "{errors:?}");
    let mut services = stack.sim.sim.service_ids();
    services.sort();
    assert_eq!(services.len(), 3, "nothing that may be bound was destroyed");
}
