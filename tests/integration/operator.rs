//! What operators read beyond the job list: fleet-wide job metrics that
//! no replica multiplies, the charts' per-minute data, the whole fleet, and pausing
//! a job kind.

use std::time::Duration;

use pool::{queue::JobDoc, store::JobState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{NO_SCHEDULES, fast_sim},
    stack::{Stack, eventually},
};

async fn text(stack: &Stack, url: &str) -> String {
    stack.http.get(url).send().await.unwrap().text().await.unwrap()
}

async fn json_of(stack: &Stack, method: Method, path: &str) -> (StatusCode, Value) {
    let r = stack.request(method, path).send().await.unwrap();
    (r.status(), r.json().await.unwrap_or_default())
}

/// Two workers run 60 jobs; a web replica started only afterwards shows each job
/// counted once, as does the first one: the counts live in Postgres, written by
/// the worker that ran the job, not gathered by each web process on its own.
#[tokio::test]
async fn job_metrics_count_each_job_once_whatever_replica_is_scraped() {
    let stack = Stack::start(fast_sim(), 2, &NO_SCHEDULES).await;
    let jobs: Vec<_> = (0..60).map(|_| pool::store::NewJob::new(crate::helpers::kind("noop"), json!({}), 3)).collect();
    pool::store::jobs::enqueue_many(&stack.db.pool, &jobs).await.unwrap();
    let done = eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'noop' AND state = 'succeeded'")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
        (n == 60).then_some(())
    })
    .await;
    assert!(done.is_some(), "60 noop jobs succeed");

    let (_late_web, late) = stack.another_web().await;
    let needles = [
        "pool_jobs_finished_total{kind=\"noop\",status=\"succeeded\"} 60\n",
        "pool_job_queue_wait_seconds_count{kind=\"noop\"} 60\n",
        "pool_job_run_seconds_bucket{kind=\"noop\",le=\"+Inf\"} 60\n",
        "# TYPE pool_job_run_seconds histogram\n",
    ];
    for url in [stack.url("/metrics"), format!("{late}/metrics")] {
        let seen = eventually(Duration::from_secs(20), || async {
            let page = text(&stack, &url).await;
            needles.iter().all(|n| page.contains(n)).then_some(())
        })
        .await;
        assert!(seen.is_some(), "{url} lacks {needles:?}:\n{}", text(&stack, &url).await);
    }
}

/// The charts' data: claims per minute with the 503s among them, the claim latency
/// of bound claims, jobs finished by kind and status, and warm against the minimum.
#[tokio::test]
async fn stats_show_claims_latency_jobs_and_the_warm_pool_per_minute() {
    let stack = Stack::start(fast_sim(), 1, &[("POOL_MIN_IDLE", "1"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")]).await;
    stack.wait_for_counts("1 idle", Duration::from_secs(30), |c| c["idle"] == 1).await;
    let bound = stack.post("/api/pool/claim", json!({}), 30).await;
    assert_eq!(bound.status(), StatusCode::OK);
    let empty = stack.post("/api/pool/claim", json!({}), 0).await;
    assert_eq!(empty.status(), StatusCode::SERVICE_UNAVAILABLE);

    let stats = eventually(Duration::from_secs(20), || async {
        let (code, s) = json_of(&stack, Method::GET, "/api/stats?range=hour").await;
        assert_eq!(code, StatusCode::OK, "{s}");
        let sum = |name: &str| s[name].as_array().unwrap().iter().filter_map(Value::as_f64).sum::<f64>();
        let finished = s["jobsFinished"].as_array().unwrap().iter().any(|j| {
            j["kind"] == "claim_and_provision"
                && j["status"] == "succeeded"
                && j["counts"].as_array().unwrap().iter().any(|c| c == 1.0)
        });
        (sum("claims") == 2.0
            && sum("claimsEmpty") == 1.0
            && sum("claimP50Ms") > 0.0
            && sum("warm") >= 0.0
            && s["warm"].as_array().unwrap().iter().any(Value::is_number)
            && finished
            && sum("queueWaitP95Ms") > 0.0)
            .then_some(s)
    })
    .await;
    let stats = match stats {
        Some(stats) => stats,
        None => panic!("stats never showed the claims: {}", json_of(&stack, Method::GET, "/api/stats").await.1),
    };
    let t = stats["t"].as_array().unwrap();
    assert_eq!((t.len(), stats["stepSeconds"].as_i64()), (60, Some(60)));
    for series in ["warm", "minIdleSeries", "claims", "claimsEmpty", "claimP50Ms", "claimP95Ms", "queueWaitP50Ms"] {
        assert_eq!(stats[series].as_array().unwrap().len(), 60, "{series}");
    }
    assert_eq!(stats["minIdleSeries"].as_array().unwrap().iter().rev().find_map(Value::as_f64), Some(1.0));
    let (code, day) = json_of(&stack, Method::GET, "/api/stats?range=day").await;
    assert_eq!((code, day["t"].as_array().unwrap().len()), (StatusCode::OK, 1440));
    let (code, bad) = json_of(&stack, Method::GET, "/api/stats?range=week").await;
    assert_eq!((code, bad["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
}

/// Every instance, whatever its status, with a link to its service in Railway.
#[tokio::test]
async fn fleet_lists_every_instance_with_its_railway_link() {
    let overrides = [("POOL_MIN_IDLE", "3"), ("RAILWAY_PROJECT_ID", "proj-1"), ("RAILWAY_ENVIRONMENT_ID", "sim-env")];
    let stack = Stack::start(fast_sim(), 1, &overrides).await;
    stack.wait_for_counts("3 idle", Duration::from_secs(30), |c| c["idle"] == 3).await;
    let claim = stack.post("/api/pool/claim", json!({}), 30).await;
    assert_eq!(claim.status(), StatusCode::OK);
    // Refilled, so the fleet holds still while it is compared with the table.
    stack.wait_for_counts("3 idle again", Duration::from_secs(30), |c| c["idle"] == 3 && c["provisioning"] == 0).await;
    sqlx::query("INSERT INTO instances (id, status, last_error) VALUES ('crashedone01', 'crashed', 'deploy CRASHED')")
        .execute(&stack.db.pool)
        .await
        .unwrap();

    let (code, all) = json_of(&stack, Method::GET, "/api/pool/instances?limit=200").await;
    assert_eq!(code, StatusCode::OK, "{all}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&stack.db.pool).await.unwrap();
    assert_eq!(all["total"].as_i64(), Some(rows));
    let list = all["instances"].as_array().unwrap();
    assert_eq!(list.len() as i64, rows);
    let statuses: Vec<&str> = list.iter().filter_map(|i| i["status"].as_str()).collect();
    assert!(statuses.contains(&"claimed") && statuses.contains(&"crashed"), "{statuses:?}");
    let claimed = list.iter().find(|i| i["status"] == "claimed").unwrap();
    let service = claimed["serviceId"].as_str().unwrap();
    assert_eq!(
        claimed["railwayUrl"],
        format!("https://railway.com/project/proj-1/service/{service}?environmentId=sim-env")
    );
    let crashed = list.iter().find(|i| i["id"] == "crashedone01").unwrap();
    assert_eq!((crashed["lastError"].as_str(), &crashed["railwayUrl"]), (Some("deploy CRASHED"), &Value::Null));

    let (_, page) = json_of(&stack, Method::GET, "/api/pool/instances?status=crashed&limit=1").await;
    assert_eq!((page["total"].as_i64(), page["instances"].as_array().unwrap().len()), (Some(1), 1));
    for bad in ["status=gone", "limit=0", "offset=-1", "colour=red"] {
        let (code, body) = json_of(&stack, Method::GET, &format!("/api/pool/instances?{bad}")).await;
        assert_eq!((code, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}");
    }
}

/// A paused kind's jobs stay queued while other kinds run; `/metrics` and the kinds
/// list show the pause; after resume the job runs.
#[tokio::test]
async fn a_paused_kind_stays_queued_until_resumed() {
    let stack = Stack::start(fast_sim(), 1, &NO_SCHEDULES).await;
    let (code, kind) = json_of(&stack, Method::POST, "/api/jobs/kinds/replenish/pause").await;
    assert_eq!((code, &kind["paused"]), (StatusCode::OK, &json!(true)), "{kind}");

    let response = stack.post("/api/pool/replenish", json!({"count": 1}), 0).await;
    let held: JobDoc = response.json().await.unwrap();
    // Enqueued after the replenish: had the pause not held, the fetch that took this
    // job would have taken the replenish too (or earlier).
    let other: JobDoc = stack.post("/api/pool/enrich", json!({}), 30).await.json().await.unwrap();
    assert_eq!(other.status, JobState::Succeeded);
    let still = stack.wait_job(&held.id, Duration::from_secs(1)).await;
    assert_eq!(still.status, JobState::Queued, "a paused kind's job stays queued: {still:?}");

    let (_, kinds) = json_of(&stack, Method::GET, "/api/jobs/kinds").await;
    let replenish = kinds["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "replenish").unwrap().clone();
    assert_eq!((&replenish["paused"], replenish["queued"].as_i64() >= Some(1)), (&json!(true), true), "{kinds}");
    let metrics = text(&stack, &stack.url("/metrics")).await;
    assert!(metrics.contains("pool_job_kind_paused{kind=\"replenish\"} 1\n"), "{metrics}");
    assert!(metrics.contains("pool_job_kind_paused{kind=\"reconcile\"} 0\n"), "{metrics}");

    let (code, kind) = json_of(&stack, Method::POST, "/api/jobs/kinds/replenish/resume").await;
    assert_eq!((code, &kind["paused"]), (StatusCode::OK, &json!(false)), "{kind}");
    let done = stack.wait_job(&held.id, Duration::from_secs(30)).await;
    assert_eq!(done.status, JobState::Succeeded, "{done:?}");

    let (code, body) = json_of(&stack, Method::POST, "/api/jobs/kinds/nosuchkind/pause").await;
    assert_eq!((code, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
    let anonymous = stack.http.post(stack.url("/api/jobs/kinds/replenish/pause")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
