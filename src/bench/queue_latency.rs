//! `queue-latency`: 8 producers enqueue single `noop` jobs through the normal enqueue
//! path at a steady total rate while one `pool worker` runs them; the handler reports
//! how long each job waited between its enqueue and its start.

use std::time::{Duration, Instant};

use chrono::Utc;
use pool_jobs::Noop;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::{
    harness::{self, BenchDb, Proc},
    queue_drain::{self, NOOP},
    report::{self, Latency},
};
use crate::config::{Config, JobsConfig};

const JOBS: usize = 20_000;
const JOBS_QUICK: usize = 1_000;
const PRODUCERS: usize = 8;
/// Total enqueue rate of all producers together (a producer that falls behind
/// catches up at once, so the average holds).
const RATE_PER_SEC: f64 = 1_000.0;

struct Measured {
    latency: Latency,
    enqueue_per_sec: f64,
    jobs_per_sec: f64,
}

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let jobs = if quick { JOBS_QUICK } else { JOBS };
    let db = BenchDb::create("queue-latency").await?;
    let measured = measure(&db, jobs).await;
    db.drop().await;
    let m = measured?;
    let mut cells = vec![jobs.to_string(), format!("{:.1}", m.enqueue_per_sec)];
    cells.extend(m.latency.cells());
    cells.push(format!("{:.1}", m.jobs_per_sec));
    let headers = ["jobs", "enqueued/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "jobs/s"];
    let title = format!("queue-latency: {PRODUCERS} producers at {RATE_PER_SEC} jobs/s in total, enqueue -> handler start");
    report::table(&title, &headers, &[cells]);
    Ok(json!({
        "scenario": "queue-latency",
        "quick": quick,
        "jobs": jobs,
        "producers": PRODUCERS,
        "target_rate_per_sec": RATE_PER_SEC,
        "enqueued_per_sec": m.enqueue_per_sec,
        "p50_ms": m.latency.p50_ms,
        "p95_ms": m.latency.p95_ms,
        "p99_ms": m.latency.p99_ms,
        "max_ms": m.latency.max_ms,
        "jobs_per_sec": m.jobs_per_sec,
    }))
}

async fn measure(db: &BenchDb, jobs: usize) -> anyhow::Result<Measured> {
    let sim = harness::instant_sim().await?;
    let env = harness::child_env(&db.url, &sim.url, harness::free_port()?, &[]);
    let config = Config::from_lookup(|name| env.get(name).cloned())?;
    let worker = Proc::spawn("worker", &env)?;
    let measured = produce_and_wait(db, &config.jobs, jobs).await;
    let stopped = worker.stop().await;
    let measured = measured?;
    stopped?;
    Ok(measured)
}

async fn produce_and_wait(db: &BenchDb, config: &JobsConfig, jobs: usize) -> anyhow::Result<Measured> {
    // One unmeasured job: the worker is up and listening once it is done.
    let mut conn = db.pool.acquire().await?;
    crate::queue::enqueue(&mut conn, &Noop { sent_at_us: None }, config).await?;
    drop(conn);
    queue_drain::wait_done(&db.pool, 1, Duration::from_secs(60)).await?;
    let started_at = Utc::now();
    let started = Instant::now();
    let mut producers = JoinSet::new();
    for p in 0..PRODUCERS {
        producers.spawn(produce(db.pool.clone(), config.clone(), p, jobs, started));
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    let enqueue_per_sec = report::per_sec(jobs, started.elapsed());
    queue_drain::wait_done(&db.pool, jobs + 1, Duration::from_secs(600)).await?;
    let mut latencies = latencies_ms(&db.pool).await?;
    anyhow::ensure!(latencies.len() == jobs, "{} of {jobs} jobs reported a latency", latencies.len());
    let last_done: chrono::DateTime<Utc> =
        sqlx::query_scalar(&format!("SELECT max(done_at) FROM apalis.jobs WHERE job_type = '{NOOP}'")).fetch_one(&db.pool).await?;
    let wall = (last_done - started_at).to_std().unwrap_or_default();
    Ok(Measured { latency: Latency::of(&mut latencies), enqueue_per_sec, jobs_per_sec: report::per_sec(jobs, wall) })
}

/// Producer `p` enqueues jobs `p, p + 8, p + 16, …`, each at its slot of the schedule.
async fn produce(db: sqlx::PgPool, config: JobsConfig, p: usize, jobs: usize, started: Instant) -> anyhow::Result<()> {
    let mut conn = db.acquire().await?;
    for i in (p..jobs).step_by(PRODUCERS) {
        tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / RATE_PER_SEC)).into()).await;
        let job = Noop { sent_at_us: Some(Utc::now().timestamp_micros()) };
        crate::queue::enqueue(&mut conn, &job, &config).await?;
    }
    Ok(())
}

/// The enqueue → handler-start latency every measured job reported, in ms.
async fn latencies_ms(db: &sqlx::PgPool) -> anyhow::Result<Vec<f64>> {
    let micros: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT (last_result -> 'Ok' ->> 'latencyUs')::bigint FROM apalis.jobs
         WHERE job_type = '{NOOP}' AND status = 'Done' AND last_result -> 'Ok' ? 'latencyUs'"
    ))
    .fetch_all(db)
    .await?;
    Ok(micros.into_iter().map(|us| us as f64 / 1000.0).collect())
}
