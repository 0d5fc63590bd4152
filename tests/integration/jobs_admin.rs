//! Job administration: listing with filters and cursor, totals, cancel and retry,
//! through the API and the `pool jobs` command.

use std::time::Duration;

use pool::{
    jobs::{drain_idle::DrainIdle, replenish::Replenish},
    queue::{self, JobDoc},
    store::JobState,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{API_KEY, TestApp, TestDb, pool_command, test_config},
    stack::{Stack, eventually},
};

async fn app() -> (TestApp, TestDb, pool::config::Config) {
    let db = TestDb::new().await;
    let config = test_config(&db.url, "http://127.0.0.1:1", &[]);
    (TestApp::spawn(config.clone(), db.pool.clone()).await, db, config)
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let r = app.http.get(app.url(path)).bearer_auth(API_KEY).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn post(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let r = app.http.request(Method::POST, app.url(path)).bearer_auth(API_KEY).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn list_filters_paginates_and_totals() {
    let (app, db, config) = app().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let mut ids = Vec::new();
    for count in 1..=3 {
        ids.push(queue::enqueue(&mut conn, &DrainIdle { count }, &config.jobs).await.unwrap().id().to_owned());
    }
    ids.push(queue::enqueue(&mut conn, &Replenish { count: Some(1) }, &config.jobs).await.unwrap().id().to_owned());
    sqlx::query("UPDATE jobs SET state = 'succeeded', finished_at = now(), result = '{}' WHERE id = $1")
        .bind(&ids[0])
        .execute(&db.pool)
        .await
        .unwrap();

    let (status, page) = get(&app, "/api/jobs").await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(|id| id.as_str()).collect();
    assert_eq!(listed, newest_first);
    assert_eq!(page["totals"], json!({"queued": 3, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 0}));

    let (_, drains) = get(&app, "/api/jobs?kind=drain_idle&status=queued").await;
    assert_eq!(drains["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(drains["totals"]["succeeded"], 1, "totals follow the kind filter only");

    let (_, first) = get(&app, "/api/jobs?limit=2").await;
    let cursor = first["nextBefore"].as_str().expect("a next page").to_owned();
    let (_, second) = get(&app, &format!("/api/jobs?limit=2&before={cursor}")).await;
    let second_ids: Vec<&str> = second["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(second_ids, [ids[1].as_str(), ids[0].as_str()]);

    for bad in [
        "/api/jobs?status=done",
        "/api/jobs?kind=nope",
        "/api/jobs?limit=0",
        "/api/jobs?before=x",
        "/api/jobs?color=red",
    ] {
        let (status, body) = get(&app, bad).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}");
    }
}

#[tokio::test]
async fn cancel_and_retry_follow_the_job_state() {
    let (app, db, config) = app().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let id = queue::enqueue(&mut conn, &Replenish { count: Some(1) }, &config.jobs).await.unwrap().id().to_owned();

    let (status, job) = post(&app, &format!("/api/jobs/{id}/cancel")).await;
    assert_eq!((status, job["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (status, body) = post(&app, &format!("/api/jobs/{id}/cancel")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("job_state_conflict")));
    let (status, job) = post(&app, &format!("/api/jobs/{id}/retry")).await;
    assert_eq!((status, job["status"].as_str(), job["attempts"].as_i64()), (StatusCode::OK, Some("queued"), Some(0)));
    let (status, _) = post(&app, "/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(sqlx::query_scalar::<_, i64>("SELECT count(*) FROM instances").fetch_one(&db.pool).await.unwrap(), 0);
}

#[tokio::test]
async fn a_running_job_stops_at_its_next_safe_point() {
    let sim = pool::sim::SimConfig { latency: Duration::from_secs(2), ..crate::helpers::fast_sim() };
    let stack =
        Stack::start(sim, 1, &[("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")]).await;
    let job: JobDoc = stack.post("/api/pool/reconcile", json!({}), 0).await.json().await.unwrap();
    let running = eventually(Duration::from_secs(10), || async {
        let doc: JobDoc =
            stack.request(Method::GET, &format!("/api/jobs/{}", job.id)).send().await.unwrap().json().await.unwrap();
        (doc.status == JobState::Running).then_some(doc)
    })
    .await;
    assert!(running.is_some(), "reconcile started");
    let cancel = stack.post(&format!("/api/jobs/{}/cancel", job.id), json!({}), 0).await;
    let cancel: JobDoc = cancel.json().await.unwrap();
    assert_eq!(cancel.status, JobState::Running, "a running job finishes its current step");
    let done = stack.wait_job(&job.id, Duration::from_secs(20)).await;
    assert_eq!(done.status, JobState::Cancelled, "{done:?}");
}

#[tokio::test]
async fn jobs_command_lists_cancels_and_retries() {
    let (_app, db, config) = app().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let id = queue::enqueue(&mut conn, &DrainIdle { count: 1 }, &config.jobs).await.unwrap().id().to_owned();
    let env = crate::helpers::base_env(&db.url, "http://127.0.0.1:1");
    let run = |args: Vec<String>| {
        let env = env.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            pool_command(&args, &env).output().await.unwrap()
        }
    };
    let list = run(vec!["jobs".into(), "list".into(), "--json".into()]).await;
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let doc: JobDoc = serde_json::from_slice(list.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(doc.id, id);
    let cancel = run(vec!["jobs".into(), "cancel".into(), id.to_string()]).await;
    assert!(cancel.status.success());
    let again = run(vec!["jobs".into(), "cancel".into(), id.to_string()]).await;
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("cancelled"));
    let retry = run(vec!["jobs".into(), "retry".into(), id.to_string()]).await;
    assert!(retry.status.success());
    let doc: JobDoc = serde_json::from_slice(&retry.stdout).unwrap();
    assert_eq!(doc.status, JobState::Queued);
}

async fn post_json(app: &TestApp, path: &str, body: Value) -> Value {
    app.http.post(app.url(path)).bearer_auth(API_KEY).json(&body).send().await.unwrap().json().await.unwrap()
}

/// Bulk retry and cancel by filter (API and `pool jobs`): every selected job moves,
/// others stay; of failed singletons only the newest is retried, and none while an
/// active one holds the key.
#[tokio::test]
async fn bulk_retry_and_cancel_follow_the_filter() {
    let (app, db, _) = app().await;
    let insert = |kind: &'static str, state: &'static str, dedupe: Option<&'static str>| {
        let pool = db.pool.clone();
        async move {
            let job = crate::fixtures::failed(kind).state(state).args(json!({"count": 1}));
            match dedupe {
                Some(key) => job.dedupe(key),
                None => job,
            }
            .insert(&pool)
            .await
        }
    };
    let failed_drains = [insert("drain_idle", "failed", None).await, insert("drain_idle", "failed", None).await];
    let cancelled_drain = insert("drain_idle", "cancelled", None).await;
    let _older = insert("replenish", "failed", Some("singleton")).await;
    let newer = insert("replenish", "failed", Some("singleton")).await;
    let failed_kill = insert("kill_instance", "failed", None).await;

    let r = app.http.post(app.url("/api/jobs/retry")).bearer_auth(API_KEY).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 400, "a filter is required");
    let r = app.http.post(app.url("/api/jobs/retry")).bearer_auth(API_KEY).json(&json!({"status": "queued"}));
    assert_eq!(r.send().await.unwrap().status(), 400, "retry applies to failed or cancelled jobs");

    let r = post_json(&app, "/api/jobs/retry", json!({"kind": "drain_idle", "status": "failed"})).await;
    assert_eq!(r["retried"], 2, "{r}");
    let state = |id: pool::domain::JobId| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT state FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    for id in &failed_drains {
        assert_eq!(state(id.clone()).await, "queued");
    }
    assert_eq!(state(cancelled_drain.clone()).await, "cancelled", "not selected");
    assert_eq!(state(failed_kill.clone()).await, "failed", "not selected");

    let cli_env = crate::helpers::base_env(&db.url, "http://127.0.0.1:1");
    let out = pool_command(&["jobs", "retry", "--kind", "replenish"], &cli_env).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["ids"], json!([newer]), "only the newest singleton");
    let again = pool_command(&["jobs", "retry", "--kind", "replenish"], &cli_env).output().await.unwrap();
    let printed: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(printed["retried"], 0, "the retried singleton is active: {printed}");

    let r = post_json(&app, "/api/jobs/cancel", json!({"kind": "drain_idle"})).await;
    assert_eq!(r, json!({"cancelled": 2, "stopRequested": 0}));
    for id in &failed_drains {
        assert_eq!(state(id.clone()).await, "cancelled");
    }
}

/// `pool enqueue` and `pool jobs` need nothing but `DATABASE_URL`; payloads are
/// checked against their kind; a reconcile is the singleton; bad statuses are refused
/// by the command line itself.
#[tokio::test]
async fn enqueue_and_jobs_commands_need_only_the_database() {
    let db = TestDb::new().await;
    let env: std::collections::HashMap<String, String> = [("DATABASE_URL".to_owned(), db.url.clone())].into();
    let run = |args: &[&str]| {
        let env = env.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            pool_command(&args, &env).output().await.unwrap()
        }
    };
    let drain = run(&["enqueue", "drain_idle", r#"{"count": 2}"#]).await;
    assert!(drain.status.success(), "{}", String::from_utf8_lossy(&drain.stderr));
    let doc: Value = serde_json::from_slice(&drain.stdout).unwrap();
    assert_eq!((doc["kind"].as_str(), doc["args"]["count"].as_u64()), (Some("drain_idle"), Some(2)), "{doc}");

    let first: Value = serde_json::from_slice(&run(&["enqueue", "reconcile"]).await.stdout).unwrap();
    let second: Value = serde_json::from_slice(&run(&["enqueue", "reconcile"]).await.stdout).unwrap();
    assert_eq!(first["id"], second["id"], "one reconcile while one is queued");

    for bad in
        [&["enqueue", "drain_idle", r#"{"cnt": 2}"#][..], &["enqueue", "paint"], &["jobs", "list", "--status", "done"]]
    {
        let out = run(bad).await;
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
    let listed = run(&["jobs", "list", "--status", "queued", "--json"]).await;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 2);
}
