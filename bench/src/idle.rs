//! `idle`: what idle workers cost the database: transactions per second
//! (`pg_stat_database`; an idle worker's statements are autocommit, one each) and the
//! CPU of this cluster's Postgres processes, with 1 and then 10 `pool worker`s that
//! have nothing to do.

use std::{collections::HashMap, time::Duration};

use serde_json::{Value, json};
use sqlx::PgPool;

use super::{
    cpu,
    harness::{self, BenchDb, Proc},
    report,
};

const WORKERS: usize = 10;
/// Start-up work (registration, the start-up replenish) settles first.
const SETTLE: Duration = Duration::from_secs(10);
/// Backends report their counts within ~10 s: a long window keeps that small.
const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_QUICK: Duration = Duration::from_secs(10);

/// One measured window.
struct Reading {
    workers: usize,
    secs: f64,
    xacts: i64,
    postgres_cpu_secs: f64,
    workers_cpu_secs: f64,
}

impl Reading {
    fn per_worker_per_sec(&self) -> f64 {
        self.xacts as f64 / self.secs / self.workers as f64
    }

    /// Percent of one core.
    fn postgres_core_pct(&self) -> f64 {
        self.postgres_cpu_secs / self.secs * 100.0
    }

    fn json(&self) -> Value {
        json!({
            "workers": self.workers,
            "window_secs": report::round2(self.secs),
            "statements_per_sec_per_worker": report::round2(self.per_worker_per_sec()),
            "statements_per_sec": report::round2(self.xacts as f64 / self.secs),
            "postgres_core_pct": report::round2(self.postgres_core_pct()),
            "workers_core_pct": report::round2(self.workers_cpu_secs / self.secs * 100.0),
        })
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.workers.to_string(),
            format!("{:.2}", self.per_worker_per_sec()),
            format!("{:.2}", self.xacts as f64 / self.secs),
            format!("{:.2}", self.postgres_core_pct()),
            format!("{:.2}", self.workers_cpu_secs / self.secs * 100.0),
        ]
    }
}

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let window = if quick { WINDOW_QUICK } else { WINDOW };
    let db = BenchDb::create("idle").await?;
    let sim = harness::instant_sim().await?;
    let env = harness::child_env(&db.url, &sim.url, harness::free_port()?, &[]);
    let mut workers = Vec::new();
    let measured = measure(&db.pool, &env, &mut workers, window).await;
    let mut stopped = Ok(());
    for worker in workers {
        stopped = stopped.and(worker.stop().await);
    }
    db.drop().await;
    let readings = measured?;
    stopped?;
    let headers = ["workers", "statements/s per worker", "statements/s", "Postgres % of a core", "workers % of a core"];
    let rows: Vec<Vec<String>> = readings.iter().map(Reading::cells).collect();
    report::table(&format!("idle: workers with nothing to do, {window:?} windows"), &headers, &rows);
    Ok(json!({ "scenario": "idle", "quick": quick, "runs": readings.iter().map(Reading::json).collect::<Vec<_>>() }))
}

async fn measure(
    db: &PgPool,
    env: &HashMap<String, String>,
    workers: &mut Vec<Proc>,
    window: Duration,
) -> anyhow::Result<Vec<Reading>> {
    let mut readings = Vec::new();
    for n in [1, WORKERS] {
        while workers.len() < n {
            workers.push(Proc::spawn("worker", env)?);
        }
        tokio::time::sleep(SETTLE).await;
        readings.push(window_of(db, workers, window).await?);
    }
    Ok(readings)
}

async fn window_of(db: &PgPool, workers: &[Proc], window: Duration) -> anyhow::Result<Reading> {
    let started = tokio::time::Instant::now();
    let xacts_before = xacts(db).await?;
    let postgres_before = postgres_cpu(db).await?;
    let workers_before: f64 = workers.iter().filter_map(|w| cpu::process_secs(w.pid)).sum();
    tokio::time::sleep(window).await;
    let xacts_after = xacts(db).await?;
    let postgres_after = postgres_cpu(db).await?;
    let workers_after: f64 = workers.iter().filter_map(|w| cpu::process_secs(w.pid)).sum();
    let secs = started.elapsed().as_secs_f64();
    // Our own readings are transactions too: two per edge.
    let postgres_cpu_secs =
        postgres_before.iter().map(|(pid, before)| postgres_after.get(pid).map_or(0.0, |a| a - before)).sum::<f64>()
            + postgres_after.iter().filter(|(pid, _)| !postgres_before.contains_key(pid)).map(|(_, s)| s).sum::<f64>();
    Ok(Reading {
        workers: workers.len(),
        secs,
        xacts: (xacts_after - xacts_before - 2).max(0),
        postgres_cpu_secs,
        workers_cpu_secs: workers_after - workers_before,
    })
}

/// Committed and rolled back transactions of this database so far.
async fn xacts(db: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(db)
    .await?)
}

/// CPU seconds of every process of this cluster (the postmaster and every process
/// `pg_stat_activity` lists), by pid: other clusters on the host are left out.
async fn postgres_cpu(db: &PgPool) -> anyhow::Result<HashMap<i32, f64>> {
    let pids: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity").fetch_all(db).await?;
    let postmaster = pids.first().and_then(|pid| parent_of(*pid as u32));
    Ok(pids
        .into_iter()
        .chain(postmaster.map(|p| p as i32))
        .filter_map(|pid| Some((pid, cpu::process_secs(pid as u32)?)))
        .collect())
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}
