//! The HTTP API without workers: validation, auth, exact claim answers, idempotency
//! keys, `Prefer: wait` timing out to 202, and agents redaction.

use pool::{queue::JobDoc, store::JobState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{API_KEY, TestApp, TestDb, test_config};

struct Api {
    app: TestApp,
    db: TestDb,
}

impl Api {
    async fn start(overrides: &[(&str, &str)]) -> Self {
        let db = TestDb::new().await;
        let app = TestApp::spawn(test_config(&db.url, "http://127.0.0.1:1", overrides), db.pool.clone()).await;
        Self { app, db }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app.http.request(method, self.app.url(path)).bearer_auth(API_KEY)
    }

    async fn claim(&self, body: Value) -> reqwest::Response {
        self.req(Method::POST, "/api/pool/claim").json(&body).send().await.unwrap()
    }

    /// Idle rows as a worker would leave them.
    async fn add_idle(&self, n: usize) {
        for i in 0..n {
            let age = std::time::Duration::from_secs(100 - i as u64);
            crate::fixtures::idle(&format!("idle{i:08}")).aged(age).insert(&self.db.pool).await;
        }
    }

    async fn jobs_of(&self, kind: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = $1")
            .bind(kind)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("JSON error body");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn mutations_require_the_api_key() {
    let api = Api::start(&[]).await;
    for (method, path) in [
        (Method::POST, "/api/pool/claim"),
        (Method::POST, "/api/pool/drain"),
        (Method::POST, "/api/pool/reconcile"),
        (Method::DELETE, "/api/pool/instances/abcdefghijkl"),
        (Method::GET, "/api/jobs/x"),
    ] {
        let r = api
            .app
            .http
            .request(method.clone(), api.app.url(path))
            .bearer_auth("wrong")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (StatusCode::UNAUTHORIZED, "unauthorized".into()), "{method} {path}");
    }
    assert_eq!(api.jobs_of("reconcile").await, 0, "a rejected request changes nothing");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let api =
        Api::start(&[("POOL_ENVIRONMENT", "production"), ("POOL_INSTANCE_KEY", crate::helpers::INSTANCE_KEY)]).await;
    api.add_idle(1).await;
    let bad = [
        json!({"agentName": ""}),
        json!({"agentName": "x".repeat(101)}),
        json!({"instructions": "x".repeat(64 * 1024 + 1)}),
        json!({"joinUrl": "http://popup.convos.org/abc"}),
        json!({"joinUrl": "https://dev.convos.org/abc"}),
        json!({"agentName": "Ada", "color": "blue"}),
        json!({"agentName": 7}),
    ];
    for body in bad {
        let (status, code) = error_code(api.claim(body.clone()).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"), "{body}");
    }
    for body in [json!({"count": 0}), json!({"count": 21}), json!({})] {
        let r = api.req(Method::POST, "/api/pool/drain").json(&body).send().await.unwrap();
        assert_eq!(error_code(r).await.0, StatusCode::BAD_REQUEST, "{body}");
    }
    let r = api.req(Method::DELETE, "/api/pool/instances/short").send().await.unwrap();
    assert_eq!(error_code(r).await.0, StatusCode::BAD_REQUEST);
    let r = api.req(Method::DELETE, "/api/pool/instances/abcdefghijkl").send().await.unwrap();
    assert_eq!(error_code(r).await, (StatusCode::NOT_FOUND, "not_found".into()));
    let counts: Value = api.app.http.get(api.app.url("/api/pool/counts")).send().await.unwrap().json().await.unwrap();
    assert_eq!(counts["idle"], 1, "nothing was reserved: {counts}");
    assert_eq!(api.jobs_of("claim_and_provision").await + api.jobs_of("drain_idle").await, 0);
}

#[tokio::test]
async fn claim_reserves_exactly_and_answers_503_when_empty() {
    let api = Api::start(&[]).await;
    api.add_idle(2).await;
    let mut reserved = Vec::new();
    for _ in 0..2 {
        let r = api.claim(json!({"agentName": "Ada"})).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let job: JobDoc = r.json().await.unwrap();
        assert_eq!(location, format!("/api/jobs/{}", job.id));
        assert_eq!((job.kind.as_str(), job.status), ("claim_and_provision", JobState::Queued));
        let holder: String =
            sqlx::query_scalar("SELECT id FROM instances WHERE claim_job_id = $1 AND status = 'claiming'")
                .bind(&job.id)
                .fetch_one(&api.db.pool)
                .await
                .unwrap();
        reserved.push(holder);
    }
    assert_eq!(reserved, ["idle00000000", "idle00000001"], "oldest idle first");
    let (status, code) = error_code(api.claim(json!({})).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "no_idle_instance"));
    assert_eq!(api.jobs_of("replenish").await, 1, "replenish enqueued once (deduplicated)");
}

#[tokio::test]
async fn idempotency_key_returns_the_same_job_and_rejects_another_body() {
    let api = Api::start(&[]).await;
    api.add_idle(3).await;
    let send =
        |body: Value| api.req(Method::POST, "/api/pool/claim").header("idempotency-key", "k-1").json(&body).send();
    let first: JobDoc = send(json!({"agentName": "Ada"})).await.unwrap().json().await.unwrap();
    let again: JobDoc = send(json!({"agentName": "Ada"})).await.unwrap().json().await.unwrap();
    assert_eq!(first.id, again.id);
    let (status, code) = error_code(send(json!({"agentName": "Bob"})).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "idempotency_conflict"));
    assert_eq!(api.jobs_of("claim_and_provision").await, 1);
    let claiming: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE status = 'claiming'")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    assert_eq!(claiming, 1, "one instance reserved for one key");
}

#[tokio::test]
async fn prefer_wait_without_a_worker_answers_202_after_the_wait() {
    let api = Api::start(&[]).await;
    let r = api.req(Method::POST, "/api/pool/reconcile").header("prefer", "wait=1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let job: JobDoc = r.json().await.unwrap();
    assert_eq!(job.status, JobState::Queued);
    // A second reconcile while one is queued is the same job.
    let again: JobDoc = api.req(Method::POST, "/api/pool/reconcile").send().await.unwrap().json().await.unwrap();
    assert_eq!(again.id, job.id);
    let r = api.req(Method::GET, "/api/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV").send().await.unwrap();
    assert_eq!(error_code(r).await.0, StatusCode::NOT_FOUND);
    let r = api.req(Method::POST, &format!("/api/jobs/{}/retry", job.id)).send().await.unwrap();
    assert_eq!(error_code(r).await, (StatusCode::CONFLICT, "job_state_conflict".into()));
}

#[tokio::test]
async fn agents_hide_instructions_and_invite_without_the_key() {
    let api = Api::start(&[]).await;
    sqlx::query("INSERT INTO instances (id, status, agent_name, instructions, invite_url, conversation_id, claimed_at) VALUES ('claimed00001', 'claimed', 'Ada', 'secret plan', 'https://invite', 'c1', now())")
        .execute(&api.db.pool).await.unwrap();
    let anonymous: Value =
        api.app.http.get(api.app.url("/api/pool/agents")).send().await.unwrap().json().await.unwrap();
    let agent = &anonymous["claimed"][0];
    assert_eq!(agent["agentName"], "Ada");
    assert!(agent.get("instructions").is_none() && agent.get("inviteUrl").is_none(), "{agent}");
    let authed: Value = api.req(Method::GET, "/api/pool/agents").send().await.unwrap().json().await.unwrap();
    assert_eq!(authed["claimed"][0]["instructions"], "secret plan");
    assert_eq!(authed["claimed"][0]["inviteUrl"], "https://invite");
    let lean: Value =
        api.req(Method::GET, "/api/pool/agents?instructions=false").send().await.unwrap().json().await.unwrap();
    assert!(lean["claimed"][0].get("instructions").is_none(), "{lean}");
    assert_eq!(lean["claimed"][0]["inviteUrl"], "https://invite");
}

/// `/api/pool/agents` is paged: `limit` rows at a time, `nextOffset` until the last.
#[tokio::test]
async fn agents_come_a_page_at_a_time() {
    let api = Api::start(&[]).await;
    sqlx::query(
        "INSERT INTO instances (id, status, agent_name, conversation_id, claimed_at)
         SELECT 'page' || lpad(n::text, 8, '0'), 'claimed', 'A' || n, 'c' || n, now() - make_interval(secs => n)
         FROM generate_series(1, 5) n",
    )
    .execute(&api.db.pool)
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut path = "/api/pool/agents?limit=2".to_owned();
    loop {
        let page: Value = api.req(Method::GET, &path).send().await.unwrap().json().await.unwrap();
        let rows = page["claimed"].as_array().unwrap();
        assert!(rows.len() <= 2, "{page}");
        seen.extend(rows.iter().map(|r| r["agentName"].as_str().unwrap().to_owned()));
        match page["nextOffset"].as_i64() {
            Some(next) => path = format!("/api/pool/agents?limit=2&offset={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["A1", "A2", "A3", "A4", "A5"], "newest claim first, each once");
    for bad in ["limit=0", "limit=501", "offset=-1", "colour=red"] {
        let r = api.req(Method::GET, &format!("/api/pool/agents?{bad}")).send().await.unwrap();
        assert_eq!(error_code(r).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// Errors produced outside the handlers are JSON too (413 for a large
/// `Content-Length`, 405), actions without input reject any field, and a job is
/// read with 200 whatever its status.
#[tokio::test]
async fn every_error_is_json_and_bodies_are_strict() {
    let api = Api::start(&[]).await;
    let huge = "x".repeat(200 * 1024);
    let too_large = api.req(Method::POST, "/api/pool/claim").header("content-type", "application/json").body(huge);
    let answer = error_code(too_large.send().await.unwrap()).await;
    assert_eq!(answer, (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".to_owned()));
    let answer = error_code(api.req(Method::PUT, "/api/pool/counts").send().await.unwrap()).await;
    assert_eq!(answer, (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".to_owned()));

    let reconcile = api.req(Method::POST, "/api/pool/reconcile").json(&json!({"force": true}));
    let (status, _) = error_code(reconcile.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(api.jobs_of("reconcile").await, 0, "a rejected request changes nothing");
    let accepted = api.req(Method::POST, "/api/pool/reconcile").json(&json!({})).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let job: JobDoc = accepted.json().await.unwrap();
    for action in ["retry", "cancel"] {
        let r = api.req(Method::POST, &format!("/api/jobs/{}/{action}", job.id)).json(&json!({"why": "x"}));
        let (status, _) = error_code(r.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{action}");
    }
    let read = api.req(Method::GET, &format!("/api/jobs/{}", job.id)).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK, "reading a queued job accepted nothing");
    assert_eq!(read.json::<JobDoc>().await.unwrap().status, JobState::Queued);
}

/// A client written to the original service's contract (SPEC §9): with
/// `POOL_CLAIM_CONTRACT=original` a claim answers 200 with exactly the original
/// fields once bound, and 503 `{"error"}` when the pool is empty; a client may opt in
/// or out per request with `Pool-Claim-Contract`.
#[tokio::test]
async fn original_clients_get_the_original_claim_answer() {
    let stack = crate::stack::Stack::start(
        crate::helpers::fast_sim(),
        1,
        &[("POOL_MIN_IDLE", "1"), ("POOL_CLAIM_CONTRACT", "original")],
    )
    .await;
    stack.wait_for_counts("1 idle", std::time::Duration::from_secs(30), |c| c["idle"] == 1).await;
    // The original client: a plain POST, no Prefer, no job documents.
    let r =
        stack.request(Method::POST, "/api/pool/claim").json(&json!({ "agentName": "Legacy" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Map<String, Value> = r.json().await.unwrap();
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["conversationId", "gatewayUrl", "instanceId", "inviteUrl", "joined"]);
    assert!(body["inviteUrl"].as_str().is_some_and(|u| u.starts_with("https://")), "{body:?}");
    assert!(body["conversationId"].as_str().is_some(), "{body:?}");

    // Keep the pool empty: the services API fails every new instance from here on.
    stack.sim.sim.set_faults(pool::sim::Faults { failure_rate: Some(1.0), ..pool::sim::Faults::default() });
    let empty = stack.request(Method::POST, "/api/pool/claim").json(&json!({})).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err: Value = empty.json().await.unwrap();
    assert!(err["error"].as_str().is_some_and(|e| !e.is_empty()), "{err}");

    // A client that moved on asks for job documents.
    let jobs = stack.request(Method::POST, "/api/pool/claim").header("pool-claim-contract", "jobs").json(&json!({}));
    let answer = jobs.send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "still empty; answered in the job contract");
    let bad = stack.request(Method::POST, "/api/pool/claim").header("pool-claim-contract", "v0").json(&json!({}));
    assert_eq!(bad.send().await.unwrap().status(), StatusCode::BAD_REQUEST);
}
