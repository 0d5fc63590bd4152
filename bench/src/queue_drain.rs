//! `queue-drain`: `noop` jobs inserted in bulk with one statement, then one
//! `pool worker` started to drain them; once with the default settings and once per
//! candidate setting (per-kind concurrency, fetch batch size, connection pool).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pool::jobs::{Job, noop::Noop};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{
    cpu,
    harness::{self, BenchDb, Proc, mb},
    report,
};

const JOBS: usize = 20_000;
const JOBS_QUICK: usize = 2_000;
/// How long one drain may take before the run is abandoned.
const LIMIT: Duration = Duration::from_secs(600);

type Setting = (&'static str, &'static [(&'static str, &'static str)]);

/// The settings tried, in order; "default" is the worker as shipped.
const SETTINGS: [Setting; 6] = [
    ("default", &[]),
    ("c32", &[("JOB_CONCURRENCY_NOOP", "32")]),
    ("c128", &[("JOB_CONCURRENCY_NOOP", "128")]),
    ("c512", &[("JOB_CONCURRENCY_NOOP", "512")]),
    ("c2048", &[("JOB_CONCURRENCY_NOOP", "2048")]),
    ("c8192", &[("JOB_CONCURRENCY_NOOP", "8192")]),
];
const SETTINGS_QUICK: [Setting; 2] = [SETTINGS[0], SETTINGS[2]];

/// One drain.
struct Drain {
    setting: Setting,
    /// Worker spawn → last job done.
    wall: Duration,
    /// First handler start → last job done (without the worker's start-up).
    running: Duration,
    worker_peak_kb: u64,
    /// CPU seconds the worker and Postgres spent during the drain.
    worker_cpu: f64,
    postgres_cpu: f64,
}

impl Drain {
    fn json(&self, jobs: usize) -> Value {
        let env: serde_json::Map<String, Value> =
            self.setting.1.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        json!({
            "setting": self.setting.0,
            "env": env,
            "seconds": report::round2(self.wall.as_secs_f64()),
            "jobs_per_sec": report::per_sec(jobs, self.wall),
            "running_jobs_per_sec": report::per_sec(jobs, self.running),
            "worker_peak_rss_mb": mb(self.worker_peak_kb),
            "worker_cpu_s": report::round2(self.worker_cpu),
            "postgres_cpu_s": report::round2(self.postgres_cpu),
        })
    }
}

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let (jobs, settings) = if quick { (JOBS_QUICK, &SETTINGS_QUICK[..]) } else { (JOBS, &SETTINGS[..]) };
    let mut drains = Vec::new();
    for setting in settings {
        drains.push(drain(*setting, jobs).await?);
    }
    let rows: Vec<Vec<String>> = drains.iter().map(|d| cells(d, jobs)).collect();
    let headers =
        ["setting", "seconds", "jobs/s", "jobs/s after start-up", "worker peak MB", "worker CPU s", "postgres CPU s"];
    report::table(&format!("queue-drain: {jobs} noop jobs inserted in bulk, one worker"), &headers, &rows);
    let best = drains.iter().max_by(|a, b| a.wall.cmp(&b.wall).reverse()).map(|d| d.json(jobs));
    Ok(json!({
        "scenario": "queue-drain",
        "quick": quick,
        "jobs": jobs,
        "runs": drains.iter().map(|d| d.json(jobs)).collect::<Vec<_>>(),
        "best": best,
    }))
}

fn cells(drain: &Drain, jobs: usize) -> Vec<String> {
    vec![
        drain.setting.0.to_owned(),
        format!("{:.2}", drain.wall.as_secs_f64()),
        format!("{:.1}", report::per_sec(jobs, drain.wall)),
        format!("{:.1}", report::per_sec(jobs, drain.running)),
        format!("{:.1}", mb(drain.worker_peak_kb)),
        format!("{:.1}", drain.worker_cpu),
        format!("{:.1}", drain.postgres_cpu),
    ]
}

/// One drain on a fresh database.
async fn drain(setting: Setting, jobs: usize) -> anyhow::Result<Drain> {
    let db = BenchDb::create("queue-drain").await?;
    let drained = drain_on(&db, setting, jobs).await;
    db.drop().await;
    drained
}

async fn drain_on(db: &BenchDb, setting: Setting, jobs: usize) -> anyhow::Result<Drain> {
    insert_bulk(&db.pool, jobs).await?;
    let sim = harness::instant_sim().await?;
    let env = harness::child_env(&db.url, &sim.url, harness::free_port()?, setting.1);
    let postgres_before = cpu::postgres_secs();
    let spawned_at = Utc::now();
    let worker = Proc::spawn("worker", &env)?;
    let done = wait_done(&db.pool, jobs, LIMIT).await;
    // Before the worker stops: its backends' CPU time leaves with them.
    let postgres_cpu = cpu::postgres_secs() - postgres_before;
    let worker_cpu = cpu::process_secs(worker.pid).unwrap_or_default();
    let worker_peak_kb = worker.mem().hwm_kb;
    let stopped = worker.stop().await;
    done?;
    stopped?;
    let (first_start, last_done): (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("SELECT min(started_at), max(finished_at) FROM jobs WHERE kind = $1")
            .bind(Noop::KIND)
            .fetch_one(&db.pool)
            .await?;
    let since = |start: DateTime<Utc>| (last_done - start).to_std().unwrap_or_default();
    Ok(Drain {
        setting,
        wall: since(spawned_at),
        running: since(first_start),
        worker_peak_kb,
        worker_cpu,
        postgres_cpu,
    })
}

/// `n` pending `noop` jobs in one statement, as a bulk producer would write them.
async fn insert_bulk(db: &PgPool, n: usize) -> anyhow::Result<()> {
    let jobs: Vec<_> = (0..n).map(|_| pool_jobs_new(Noop::KIND)).collect();
    pool::store::jobs::enqueue_many(db, &jobs).await?;
    // Statistics as a long-lived table would have them.
    sqlx::query("ANALYZE jobs").execute(db).await?;
    Ok(())
}

fn pool_jobs_new(kind: pool::domain::JobKind) -> pool::store::jobs::NewJob {
    pool::store::jobs::NewJob::new(kind, json!({}), 6)
}

/// Waits until `n` `noop` jobs succeeded; fails on a failed job or after `limit`.
pub async fn wait_done(db: &PgPool, n: usize, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let (done, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state IN ('failed', 'cancelled'))
             FROM jobs WHERE kind = $1",
        )
        .bind(Noop::KIND)
        .fetch_one(db)
        .await?;
        anyhow::ensure!(failed == 0, "{failed} noop jobs failed");
        if done as usize >= n {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < limit, "only {done} of {n} noop jobs done after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
