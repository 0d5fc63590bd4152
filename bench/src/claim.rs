//! `claim`: K concurrent HTTP clients claiming with `Prefer: wait=30` against a large
//! pre-warmed pool (instant provision), through real `pool web` and `pool worker`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{
    cpu,
    harness::{self, API_KEY, BenchDb, Stack},
    report::{self, Latency},
};

/// `(K, claims)` per run; the first `WARMUP` claims (not measured) open connections
/// and fill caches on every side.
const RUNS: [(usize, usize); 3] = [(1, 300), (8, 2000), (32, 2000)];
const RUNS_QUICK: [(usize, usize); 3] = [(1, 30), (8, 100), (32, 100)];
const WARMUP: (usize, usize) = (4, 40);
/// Idle rows beyond what the runs use, so the pool never runs dry.
const SPARE: usize = 100;

/// Client-side view of one load run.
pub struct Load {
    pub k: usize,
    pub latencies_ms: Vec<f64>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub wall: Duration,
    /// CPU seconds spent during the run by web, worker, Postgres and this process
    /// (the clients and the simulator).
    pub cpu: [f64; 4],
}

impl Load {
    /// The JSON object of this run.
    pub fn json(&self) -> Value {
        let mut samples = self.latencies_ms.clone();
        let latency = Latency::of(&mut samples);
        json!({
            "k": self.k,
            "claims": self.latencies_ms.len(),
            "errors": self.errors,
            "p50_ms": latency.p50_ms,
            "p95_ms": latency.p95_ms,
            "p99_ms": latency.p99_ms,
            "max_ms": latency.max_ms,
            "claims_per_sec": report::per_sec(self.latencies_ms.len(), self.wall),
            "cpu_ms_per_claim": self.cpu_per_claim(),
        })
    }

    /// CPU milliseconds per successful claim, by process.
    fn cpu_per_claim(&self) -> Value {
        let n = self.latencies_ms.len().max(1) as f64;
        let [web, worker, postgres, bench] = self.cpu.map(|s| report::round2(s * 1000.0 / n));
        json!({ "web": web, "worker": worker, "postgres": postgres, "bench_and_sim": bench })
    }
}

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let runs = if quick { RUNS_QUICK } else { RUNS };
    let idle = runs.iter().map(|(_, n)| n).sum::<usize>() + WARMUP.1 + SPARE;
    let stack = start("claim", idle).await?;
    let loads = measure(&stack, &runs).await;
    let stopped = stack.stop().await;
    let loads = loads?;
    stopped?;
    let rows: Vec<Vec<String>> = loads.iter().map(row).collect();
    let headers = ["K", "claims", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "claims/s"];
    report::table(&format!("claim: POST /api/pool/claim, Prefer: wait=30, {idle} idle instances"), &headers, &rows);
    if let Some(err) = loads.iter().find_map(|l| l.first_error.as_ref()) {
        println!("  first error: {err}");
    }
    Ok(
        json!({ "scenario": "claim", "quick": quick, "idle": idle, "runs": loads.iter().map(Load::json).collect::<Vec<_>>() }),
    )
}

fn row(load: &Load) -> Vec<String> {
    let j = load.json();
    let mut cells = vec![load.k.to_string(), load.latencies_ms.len().to_string(), load.errors.to_string()];
    cells.extend(["p50_ms", "p95_ms", "p99_ms", "max_ms"].map(|k| format!("{:.2}", j[k].as_f64().unwrap_or_default())));
    cells.push(format!("{:.1}", j["claims_per_sec"].as_f64().unwrap_or_default()));
    cells
}

async fn measure(stack: &Stack, runs: &[(usize, usize)]) -> anyhow::Result<Vec<Load>> {
    warm_up(stack).await?;
    let mut loads = Vec::new();
    for &(k, total) in runs {
        loads.push(load(stack, k, total).await?);
    }
    Ok(loads)
}

/// Some claims that are not measured; fails if they do not succeed.
pub async fn warm_up(stack: &Stack) -> anyhow::Result<()> {
    let warmup = load(stack, WARMUP.0, WARMUP.1).await?;
    if let Some(err) = warmup.first_error {
        anyhow::bail!("warm-up claims failed ({} of {}): {err}", warmup.errors, WARMUP.1);
    }
    Ok(())
}

/// A database with `idle` pre-warmed instances, the instant simulator, web and worker.
pub async fn start(scenario: &str, idle: usize) -> anyhow::Result<Stack> {
    let db = BenchDb::create(scenario).await?;
    let sim = harness::instant_sim().await?;
    if let Err(err) = harness::insert_idle(&db.pool, &sim, idle).await {
        db.drop().await;
        return Err(err);
    }
    Stack::start(db, sim, &[]).await
}

/// `total` claims by `k` concurrent clients, each with its own keep-alive connection.
pub async fn load(stack: &Stack, k: usize, total: usize) -> anyhow::Result<Load> {
    let url = format!("{}/api/pool/claim", stack.web_url);
    let cpu_before = cpu_now(stack);
    let driven = drive(&url, k, total, Answer::Job).await?;
    let cpu_after = cpu_now(stack);
    Ok(Load {
        k,
        latencies_ms: driven.latencies_ms,
        errors: driven.errors.len(),
        first_error: driven.errors.into_iter().next(),
        wall: driven.wall,
        cpu: std::array::from_fn(|i| cpu_after[i] - cpu_before[i]),
    })
}

/// What a claim's answer must be to count as a success.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// Pool's: 200 with the `succeeded` job (`Prefer: wait=30`).
    Job,
    /// The original service's: 200 with the claimed `instanceId`.
    Original,
}

/// What the clients of one load saw.
pub struct Driven {
    pub latencies_ms: Vec<f64>,
    pub errors: Vec<String>,
    pub wall: Duration,
}

/// `total` claims at `url` by `k` concurrent clients, each with its own keep-alive
/// connection.
pub async fn drive(url: &str, k: usize, total: usize, answer: Answer) -> anyhow::Result<Driven> {
    let url = Arc::new(url.to_owned());
    let tickets = Arc::new(AtomicUsize::new(total));
    let mut clients = JoinSet::new();
    let started = Instant::now();
    for _ in 0..k {
        let http = harness::http_client()?;
        clients.spawn(client_loop(http, url.clone(), tickets.clone(), answer));
    }
    let mut driven = Driven { latencies_ms: Vec::with_capacity(total), errors: Vec::new(), wall: Duration::ZERO };
    while let Some(done) = clients.join_next().await {
        let (latencies, errors) = done?;
        driven.latencies_ms.extend(latencies);
        driven.errors.extend(errors);
    }
    driven.wall = started.elapsed();
    Ok(driven)
}

/// CPU seconds so far of web, worker, Postgres and this process.
fn cpu_now(stack: &Stack) -> [f64; 4] {
    let of = |pid: u32| cpu::process_secs(pid).unwrap_or_default();
    [of(stack.web.pid), of(stack.worker.pid), cpu::postgres_secs(), of(std::process::id())]
}

/// One client: claims until the shared tickets run out; latencies of the successes.
async fn client_loop(
    http: reqwest::Client,
    url: Arc<String>,
    tickets: Arc<AtomicUsize>,
    answer: Answer,
) -> (Vec<f64>, Vec<String>) {
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    while tickets.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        let sent = Instant::now();
        match claim_once(&http, &url, answer).await {
            Ok(()) => latencies.push(report::ms(sent.elapsed())),
            Err(err) => errors.push(err),
        }
    }
    (latencies, errors)
}

/// One claim; succeeds only on 200 with the answer expected.
async fn claim_once(http: &reqwest::Client, url: &str, answer: Answer) -> Result<(), String> {
    let response = http
        .post(url)
        .bearer_auth(API_KEY)
        .header("Prefer", "wait=30")
        .json(&json!({ "agentName": "bench" }))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| format!("HTTP {status}: unreadable body: {e}"))?;
    let ok = match answer {
        Answer::Job => body["status"] == "succeeded",
        Answer::Original => body["instanceId"].is_string(),
    };
    if status != reqwest::StatusCode::OK || !ok {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(())
}
