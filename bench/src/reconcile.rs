//! `reconcile`: one reconcile over N idle instances (rows in the table, ready services
//! in the simulator), requested through `pool web` and run by `pool worker`; its
//! duration, the upstream calls it made, and the worker's peak memory. N = 1,000,
//! 10,000 and 100,000.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    harness::{self, API_KEY, BenchDb, Stack, mb},
    report,
};
use pool::{queue::JobDoc, store::JobState};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const SIZES_QUICK: [usize; 1] = [200];

/// One reconcile run.
struct Outcome {
    instances: usize,
    /// `finishedAt - startedAt` of the job.
    job: Duration,
    /// The HTTP request with `Prefer: wait=60`, enqueue to answer.
    wall: Duration,
    services_calls: usize,
    status_batch_calls: usize,
    instance_calls: usize,
    worker_before_kb: u64,
    worker_peak_kb: u64,
    result: Value,
}

impl Outcome {
    fn json(&self) -> Value {
        json!({
            "instances": self.instances,
            "job_ms": report::ms(self.job),
            "wall_ms": report::ms(self.wall),
            "services_calls": self.services_calls,
            "status_batch_calls": self.status_batch_calls,
            "instance_calls": self.instance_calls,
            "worker_rss_before_mb": mb(self.worker_before_kb),
            "worker_peak_rss_mb": mb(self.worker_peak_kb),
            "rows": self.result["rows"],
            "errors": self.result["errors"].as_array().map_or(0, Vec::len),
        })
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.instances.to_string(),
            format!("{:.1}", report::ms(self.job)),
            format!("{:.1}", report::ms(self.wall)),
            self.services_calls.to_string(),
            self.instance_calls.to_string(),
            format!("{:.1}", mb(self.worker_peak_kb)),
        ]
    }
}

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let sizes = if quick { &SIZES_QUICK[..] } else { &SIZES[..] };
    let mut outcomes = Vec::new();
    for &n in sizes {
        outcomes.push(reconcile_once(n).await?);
    }
    let headers = ["instances", "job ms", "wall ms", "services calls", "instance calls", "worker peak MB"];
    let rows: Vec<Vec<String>> = outcomes.iter().map(Outcome::cells).collect();
    report::table("reconcile: POST /api/pool/reconcile, Prefer: wait=60, all rows idle and ready", &headers, &rows);
    Ok(
        json!({ "scenario": "reconcile", "quick": quick, "runs": outcomes.iter().map(Outcome::json).collect::<Vec<_>>() }),
    )
}

/// A fresh database, simulator and processes with `n` idle instances; one reconcile.
async fn reconcile_once(n: usize) -> anyhow::Result<Outcome> {
    let db = BenchDb::create("reconcile").await?;
    let sim = harness::instant_sim().await?;
    if let Err(err) = harness::insert_idle(&db.pool, &sim, n).await {
        db.drop().await;
        return Err(err);
    }
    let stack = Stack::start(db, sim, &[]).await?;
    let outcome = measure(&stack, n).await;
    let stopped = stack.stop().await;
    let outcome = outcome?;
    stopped?;
    Ok(outcome)
}

async fn measure(stack: &Stack, n: usize) -> anyhow::Result<Outcome> {
    let worker_before_kb = stack.worker.mem().rss_kb;
    stack.sim.sim.clear_requests();
    let started = Instant::now();
    let response = stack
        .http
        .post(format!("{}/api/pool/reconcile", stack.web_url))
        .bearer_auth(API_KEY)
        .header("Prefer", "wait=60")
        .send()
        .await?;
    let wall = started.elapsed();
    let status = response.status();
    let doc: JobDoc = response.json().await?;
    anyhow::ensure!(
        doc.status == JobState::Succeeded,
        "reconcile answered HTTP {status}, job {:?}: {:?}",
        doc.status,
        doc.error
    );
    let job = match (doc.started_at, doc.finished_at) {
        (Some(start), Some(end)) => (end - start).to_std().unwrap_or_default(),
        _ => anyhow::bail!("reconcile job has no start or finish time"),
    };
    let requests = stack.sim.sim.requests();
    let (instance, services): (Vec<_>, Vec<_>) = requests.iter().partition(|r| r.path.starts_with("/i/"));
    Ok(Outcome {
        instances: n,
        job,
        wall,
        services_calls: services.len(),
        status_batch_calls: services.iter().filter(|r| r.path == "/status/batch").count(),
        instance_calls: instance.len(),
        worker_before_kb,
        worker_peak_kb: stack.worker.mem().hwm_kb,
        result: doc.result.unwrap_or_default(),
    })
}
