//! `waiters`: 1,000 claims waiting at once (`Prefer: wait=60`, no idle instance) on
//! one `pool web`: its resident memory, and how many waiting requests each
//! finished job wakes, for jobs of others and for the claims themselves.

use std::time::{Duration, Instant};

use anyhow::Context;
use pool::{
    jobs::Job,
    store::jobs::{self, NewJob},
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{
    harness::{self, API_KEY, BenchDb, Stack, mb},
    report,
};

const WAITERS: usize = 1_000;
const WAITERS_QUICK: usize = 100;
/// Jobs of others finished while the claims wait.
const OTHERS: usize = 20;
const LIMIT: Duration = Duration::from_secs(50);

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let n = if quick { WAITERS_QUICK } else { WAITERS };
    let db = BenchDb::create("waiters").await?;
    let sim = harness::instant_sim().await?;
    // Nothing creates instances: the claims wait until the bench adds idle rows.
    for kind in [
        pool::jobs::replenish::Replenish::KIND,
        pool::jobs::provision_instance::ProvisionInstance::KIND,
        pool::jobs::check_ready::CheckReady::KIND,
    ] {
        jobs::pauses::pause(&db.pool, kind).await?;
    }
    // The line admits them all (POOL_MAX_WAITING caps it at 100 by default).
    let cap = (n + 1).to_string();
    let stack = Stack::start(db, sim, &[("POOL_MAX_WAITING", cap.as_str())]).await?;
    let measured = measure(&stack, n).await;
    let stopped = stack.stop().await;
    let result = measured?;
    stopped?;
    report::table(
        &format!("waiters: {n} claims waiting at once on one web"),
        &["web RSS idle MB", "web RSS waiting MB", "wake-ups per other job", "wake-ups per claim", "claims answered"],
        &[vec![
            result["web_idle_rss_mb"].to_string(),
            result["web_waiting_rss_mb"].to_string(),
            result["wakeups_per_other_finish"].to_string(),
            result["wakeups_per_claim_finish"].to_string(),
            result["claims_answered_200"].to_string(),
        ]],
    );
    Ok(result)
}

async fn measure(stack: &Stack, n: usize) -> anyhow::Result<Value> {
    let db = &stack.db.pool;
    let idle_rss = stack.web.mem().rss_kb;
    let mut clients = JoinSet::new();
    for _ in 0..n {
        clients.spawn(claim(stack.http.clone(), format!("{}/api/pool/claim", stack.web_url)));
    }
    wait_for(LIMIT, || async {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE waiting").fetch_one(db).await?;
        Ok(waiting as usize >= n)
    })
    .await
    .context("the claims did not all wait")?;
    let waiting_rss = stack.web.mem().rss_kb;
    let before = wakeups(stack).await?;
    let others: Vec<NewJob> = (0..OTHERS).map(|_| NewJob::new(pool::jobs::noop::Noop::KIND, json!({}), 1)).collect();
    jobs::enqueue_many(db, &others).await?;
    wait_for(LIMIT, || async {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'noop' AND state = 'succeeded'")
            .fetch_one(db)
            .await?;
        Ok(done as usize >= OTHERS)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_others = wakeups(stack).await?;
    let served = Instant::now();
    harness::insert_idle(db, &stack.sim, n).await?;
    let mut answered = 0;
    while let Some(status) = clients.join_next().await {
        answered += usize::from(status?.is_ok_and(|s| s == 200));
    }
    let serve_secs = served.elapsed().as_secs_f64();
    let after_claims = wakeups(stack).await?;
    let per = |woken: (f64, f64), from: (f64, f64)| report::round2((woken.0 - from.0) / (woken.1 - from.1).max(1.0));
    Ok(json!({
        "scenario": "waiters",
        "waiters": n,
        "web_idle_rss_mb": mb(idle_rss),
        "web_waiting_rss_mb": mb(waiting_rss),
        "wakeups_per_other_finish": per(after_others, before),
        "wakeups_per_claim_finish": per(after_claims, after_others),
        "claims_answered_200": answered,
        "serve_secs": report::round2(serve_secs),
    }))
}

/// One waiting claim; its HTTP status.
async fn claim(http: reqwest::Client, url: String) -> anyhow::Result<u16> {
    let response = http
        .post(url)
        .bearer_auth(API_KEY)
        .header("Prefer", "wait=60")
        .json(&json!({ "agentName": "bench" }))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// `(waiting requests woken by a notification, finish notifications)` so far.
async fn wakeups(stack: &Stack) -> anyhow::Result<(f64, f64)> {
    let page = stack.http.get(format!("{}/metrics", stack.web_url)).send().await?.text().await?;
    let value =
        |name: &str| page.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    Ok((
        value("pool_job_waiter_wakeups_total").unwrap_or(0.0),
        value("pool_job_finish_notifications_total").unwrap_or(0.0),
    ))
}

async fn wait_for<F, Fut>(limit: Duration, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !done().await? {
        anyhow::ensure!(Instant::now() < deadline, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
