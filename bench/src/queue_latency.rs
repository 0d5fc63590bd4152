//! `queue-latency`: 8 producers enqueue single `noop` jobs through the normal enqueue
//! path at a steady total rate while one `pool worker` runs them; the handler reports
//! how long each job waited between its enqueue and its start. Each phase runs on a
//! fresh database with a fresh worker.

use std::time::{Duration, Instant};

use chrono::Utc;
use pool::{
    config::{Config, JobsConfig},
    jobs::{Job, noop::Noop},
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{
    harness::{self, BenchDb, Proc},
    queue_drain,
    report::{self, Latency},
};

const PRODUCERS: usize = 8;

/// `(label, jobs, total enqueue rate per second, worker settings)`. The first run is
/// the target load; the second, at a rate the default worker keeps up with, shows the
/// latency of the path itself rather than of a backlog. A producer that falls behind
/// its schedule catches up at once, so the average rate holds when it can.
type Phase = (&'static str, usize, f64, &'static [(&'static str, &'static str)]);
const PHASES: [Phase; 2] = [("1000/s", 20_000, 1_000.0, &[]), ("50/s", 1_000, 50.0, &[])];
const PHASES_QUICK: [Phase; 2] = [("1000/s", 1_000, 1_000.0, &[]), ("50/s", 100, 50.0, &[])];

struct Measured {
    phase: Phase,
    latency: Latency,
    enqueue_per_sec: f64,
    jobs_per_sec: f64,
}

impl Measured {
    fn json(&self) -> Value {
        let (label, jobs, rate, env) = self.phase;
        let env: serde_json::Map<String, Value> = env.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        json!({
            "phase": label,
            "jobs": jobs,
            "target_rate_per_sec": rate,
            "env": env,
            "enqueued_per_sec": self.enqueue_per_sec,
            "p50_ms": self.latency.p50_ms,
            "p95_ms": self.latency.p95_ms,
            "p99_ms": self.latency.p99_ms,
            "max_ms": self.latency.max_ms,
            "jobs_per_sec": self.jobs_per_sec,
        })
    }

    fn cells(&self) -> Vec<String> {
        let mut cells = vec![self.phase.0.to_owned(), self.phase.1.to_string(), format!("{:.1}", self.enqueue_per_sec)];
        cells.extend(self.latency.cells());
        cells.push(format!("{:.1}", self.jobs_per_sec));
        cells
    }
}

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let phases = if quick { &PHASES_QUICK } else { &PHASES };
    let mut runs = Vec::new();
    for phase in phases {
        let db = BenchDb::create("queue-latency").await?;
        let measured = measure(&db, *phase).await;
        db.drop().await;
        runs.push(measured?);
    }
    let headers = ["target rate", "jobs", "enqueued/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "jobs/s"];
    let title = format!("queue-latency: {PRODUCERS} producers, single noop jobs, enqueue -> handler start");
    report::table(&title, &headers, &runs.iter().map(Measured::cells).collect::<Vec<_>>());
    Ok(json!({
        "scenario": "queue-latency",
        "quick": quick,
        "producers": PRODUCERS,
        "runs": runs.iter().map(Measured::json).collect::<Vec<_>>(),
    }))
}

async fn measure(db: &BenchDb, phase: Phase) -> anyhow::Result<Measured> {
    let sim = harness::instant_sim().await?;
    let env = harness::child_env(&db.url, &sim.url, harness::free_port()?, phase.3);
    let config = Config::from_lookup(|name| env.get(name).cloned())?;
    let worker = Proc::spawn("worker", &env)?;
    let measured = produce_and_wait(db, &config.jobs, phase).await;
    let stopped = worker.stop().await;
    let measured = measured?;
    stopped?;
    Ok(measured)
}

async fn produce_and_wait(db: &BenchDb, config: &JobsConfig, phase: Phase) -> anyhow::Result<Measured> {
    let (_, jobs, rate, _) = phase;
    // One unmeasured job: the worker is up and listening once it is done.
    let mut conn = db.pool.acquire().await?;
    pool::queue::enqueue(&mut conn, &Noop { sent_at_us: None }, config).await?;
    drop(conn);
    queue_drain::wait_done(&db.pool, 1, Duration::from_secs(60)).await?;
    let started_at = Utc::now();
    let started = Instant::now();
    let mut producers = JoinSet::new();
    for p in 0..PRODUCERS {
        producers.spawn(produce(db.pool.clone(), config.clone(), (p, jobs, rate), started));
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    let enqueue_per_sec = report::per_sec(jobs, started.elapsed());
    queue_drain::wait_done(&db.pool, jobs + 1, Duration::from_secs(600)).await?;
    let mut latencies = latencies_ms(&db.pool).await?;
    anyhow::ensure!(latencies.len() == jobs, "{} of {jobs} jobs reported a latency", latencies.len());
    let last_done: chrono::DateTime<Utc> = sqlx::query_scalar("SELECT max(finished_at) FROM jobs WHERE kind = $1")
        .bind(Noop::KIND)
        .fetch_one(&db.pool)
        .await?;
    let wall = (last_done - started_at).to_std().unwrap_or_default();
    Ok(Measured {
        phase,
        latency: Latency::of(&mut latencies),
        enqueue_per_sec,
        jobs_per_sec: report::per_sec(jobs, wall),
    })
}

/// Producer `p` enqueues jobs `p, p + 8, p + 16, …` of `jobs`, each at its slot of
/// a schedule of `rate` jobs per second.
async fn produce(
    db: sqlx::PgPool,
    config: JobsConfig,
    (p, jobs, rate): (usize, usize, f64),
    started: Instant,
) -> anyhow::Result<()> {
    let mut conn = db.acquire().await?;
    for i in (p..jobs).step_by(PRODUCERS) {
        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let job = Noop { sent_at_us: Some(Utc::now().timestamp_micros()) };
        pool::queue::enqueue(&mut conn, &job, &config).await?;
    }
    Ok(())
}

/// The enqueue → handler-start latency every measured job reported, in ms.
async fn latencies_ms(db: &sqlx::PgPool) -> anyhow::Result<Vec<f64>> {
    let micros: Vec<i64> = sqlx::query_scalar(
        "SELECT (result ->> 'latencyUs')::bigint FROM jobs
         WHERE kind = $1 AND state = 'succeeded' AND result ? 'latencyUs'",
    )
    .bind(Noop::KIND)
    .fetch_all(db)
    .await?;
    Ok(micros.into_iter().map(|us| us as f64 / 1000.0).collect())
}
