//! `versus`: Pool's claim beside the original Node service it replaces, in one run.
//!
//! `POOL_BENCH_ORIGINAL` names the original's `pool/` directory (the public
//! xmtplabs/convos-managed-agent-runtime, e.g. at `8f68e1d5`); its npm dependencies
//! are installed there when missing. Without it the scenario is skipped. Both
//! services claim from their own database on the server of `DATABASE_URL` and
//! provision the same fake instances, served by `pool sim` in a process of its own
//! (an instance is never in the claimer's process). The same client drives both,
//! alternating, so drift of the machine hits both alike.

use std::{collections::HashMap, path::Path, process::Stdio};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{
    claim::{self, Answer, Driven},
    harness::{self, API_KEY, BenchDb, Proc},
    report::{self, Latency},
};

/// `(K, claims)` per measured run; every run is taken `ROUNDS` times per service.
const RUNS: [(usize, usize); 2] = [(1, 200), (8, 800)];
const RUNS_QUICK: [(usize, usize); 2] = [(1, 20), (8, 80)];
const ROUNDS: usize = 2;
/// Unmeasured claims per service first (connections, caches, the JIT).
const WARMUP: usize = 50;

pub async fn run(quick: bool) -> anyhow::Result<Value> {
    let Some(dir) = std::env::var_os("POOL_BENCH_ORIGINAL") else {
        let reason = "POOL_BENCH_ORIGINAL is not set: the path of the original service's pool/ directory \
                      (github.com/xmtplabs/convos-managed-agent-runtime)";
        println!("versus: skipped, {reason}");
        return Ok(json!({ "scenario": "versus", "quick": quick, "skipped": reason }));
    };
    let dir = Path::new(&dir);
    install(dir).await?;
    let runs = if quick { RUNS_QUICK } else { RUNS };
    let per_service = WARMUP + ROUNDS * runs.iter().map(|(_, n)| n).sum::<usize>();
    let sim = FakeInstances::start(2 * per_service).await?;
    let (pool_ids, original_ids) = sim.instances.split_at(per_service);
    let pool = PoolSide::start(&sim, pool_ids).await?;
    let original = match Original::start(dir, &sim, original_ids).await {
        Ok(original) => original,
        Err(err) => {
            pool.stop().await.ok();
            return Err(err);
        }
    };
    let measured = measure(&pool.url, &original.url, &runs).await;
    let stopped = pool.stop().await;
    original.stop().await;
    sim.proc.stop().await.ok();
    let measured = measured?;
    stopped?;
    report::table(
        &format!("versus: the same claims against Pool and the original, alternating, {ROUNDS} rounds"),
        &["service", "K", "claims", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "claims/s"],
        &measured.iter().map(row).collect::<Vec<_>>(),
    );
    Ok(json!({ "scenario": "versus", "quick": quick, "runs": measured.iter().map(Measured::json).collect::<Vec<_>>() }))
}

/// `npm install` in `dir` unless its dependencies are there.
async fn install(dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(dir.join("src/index.js").is_file(), "{} holds no src/index.js", dir.display());
    if dir.join("node_modules/express").is_dir() {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["install", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .await
        .context("run npm install for the original service")?;
    anyhow::ensure!(status.success(), "npm install in {} failed ({status})", dir.display());
    Ok(())
}

/// One service's claims at one K, all rounds together.
struct Measured {
    service: &'static str,
    k: usize,
    driven: Driven,
}

impl Measured {
    fn latency(&self) -> Latency {
        Latency::of(&mut self.driven.latencies_ms.clone())
    }

    fn json(&self) -> Value {
        let latency = self.latency();
        json!({
            "service": self.service, "k": self.k, "claims": self.driven.latencies_ms.len(),
            "errors": self.driven.errors.len(), "first_error": self.driven.errors.first(),
            "p50_ms": latency.p50_ms, "p95_ms": latency.p95_ms, "p99_ms": latency.p99_ms, "max_ms": latency.max_ms,
            "claims_per_sec": report::per_sec(self.driven.latencies_ms.len(), self.driven.wall),
        })
    }
}

fn row(m: &Measured) -> Vec<String> {
    let mut cells = vec![m.service.to_owned(), m.k.to_string()];
    cells.extend([m.driven.latencies_ms.len().to_string(), m.driven.errors.len().to_string()]);
    cells.extend(m.latency().cells());
    cells.push(format!("{:.1}", report::per_sec(m.driven.latencies_ms.len(), m.driven.wall)));
    cells
}

/// Warm-up, then every run for each service in turn, `ROUNDS` times.
async fn measure(pool_url: &str, original_url: &str, runs: &[(usize, usize)]) -> anyhow::Result<Vec<Measured>> {
    let services = [("pool", pool_url, Answer::Job), ("original", original_url, Answer::Original)];
    for (name, url, answer) in services {
        let warm = claim::drive(&format!("{url}/api/pool/claim"), 4, WARMUP, answer).await?;
        if let Some(err) = warm.errors.first() {
            anyhow::bail!("{name}: warm-up claims failed ({} of {WARMUP}): {err}", warm.errors.len());
        }
    }
    let mut measured: Vec<Measured> = Vec::new();
    for _ in 0..ROUNDS {
        for &(k, total) in runs {
            for (service, url, answer) in services {
                let driven = claim::drive(&format!("{url}/api/pool/claim"), k, total, answer).await?;
                match measured.iter_mut().find(|m| m.service == service && m.k == k) {
                    Some(m) => {
                        m.driven.latencies_ms.extend(driven.latencies_ms);
                        m.driven.errors.extend(driven.errors);
                        m.driven.wall += driven.wall;
                    }
                    None => measured.push(Measured { service, k, driven }),
                }
            }
        }
    }
    Ok(measured)
}

/// `pool sim` in its own process with `n` instances, built and ready.
struct FakeInstances {
    proc: Proc,
    url: String,
    /// `(instance id, service id)`.
    instances: Vec<(String, String)>,
}

impl FakeInstances {
    async fn start(n: usize) -> anyhow::Result<Self> {
        let port = harness::free_port()?;
        let env: HashMap<String, String> =
            [("SIM_PORT", port.to_string()), ("SIM_BUILD_MS", "0".into()), ("RUST_LOG", "warn".into())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        let proc = Proc::spawn("sim", &env)?;
        let url = format!("http://127.0.0.1:{port}");
        let http = harness::http_client()?;
        let mut sim = Self { proc, url, instances: Vec::with_capacity(n) };
        for _ in 0..n {
            let id = pool::domain::InstanceId::generate().to_string();
            let service = sim.add(&http, &id).await?;
            sim.instances.push((id, service));
        }
        Ok(sim)
    }

    /// Adds one instance, retrying while the process is still starting.
    async fn add(&self, http: &reqwest::Client, id: &str) -> anyhow::Result<String> {
        let body = json!({ "instanceId": id });
        let mut tries = 0;
        let created: Value = loop {
            match http.post(format!("{}/_sim/instances", self.url)).json(&body).send().await {
                Ok(answer) => break answer.error_for_status()?.json().await?,
                Err(_) if tries < 100 => tries += 1,
                Err(err) => return Err(err).context("pool sim did not start"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let ready = json!({ "ready": true });
        http.post(format!("{}/_sim/instances/{id}/ready", self.url)).json(&ready).send().await?.error_for_status()?;
        created["serviceId"].as_str().map(str::to_owned).context("pool sim answered no serviceId")
    }
}

/// Pool's web and worker on a database of their own, `ids` idle.
struct PoolSide {
    db: BenchDb,
    web: Proc,
    worker: Proc,
    url: String,
}

impl PoolSide {
    async fn start(sim: &FakeInstances, ids: &[(String, String)]) -> anyhow::Result<Self> {
        let db = BenchDb::create("versus").await?;
        if let Err(err) = insert_pool_rows(&db, &sim.url, ids).await {
            db.drop().await;
            return Err(err);
        }
        let port = harness::free_port()?;
        let env = harness::child_env(&db.url, &sim.url, port, &[]);
        let (web, worker) = (Proc::spawn("web", &env)?, Proc::spawn("worker", &env)?);
        let url = format!("http://127.0.0.1:{port}");
        harness::wait_ready(&harness::http_client()?, &url).await?;
        Ok(Self { db, web, worker, url })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let web = self.web.stop().await;
        let worker = self.worker.stop().await;
        self.db.drop().await;
        web.and(worker)
    }
}

async fn insert_pool_rows(db: &BenchDb, sim_url: &str, ids: &[(String, String)]) -> anyhow::Result<()> {
    let (ids, services): (Vec<_>, Vec<_>) = ids.iter().cloned().unzip();
    harness::insert_idle_rows(&db.pool, sim_url, &ids, &services).await
}

/// The original service (`node src/index.js`) on a database of its own, with its
/// own table, `ids` idle. Its background tick finds no services API (it would
/// reconcile against Railway) and changes nothing.
struct Original {
    db: BenchDb,
    child: Child,
    url: String,
}

impl Original {
    async fn start(dir: &Path, sim: &FakeInstances, ids: &[(String, String)]) -> anyhow::Result<Self> {
        let db = BenchDb::create_empty("versus_original").await?;
        if let Err(err) = original_rows(&db, &sim.url, ids).await {
            db.drop().await;
            return Err(err);
        }
        let port = harness::free_port()?;
        let child = Command::new("node")
            .arg("src/index.js")
            .current_dir(dir)
            .env_clear()
            .envs([
                ("PATH", std::env::var("PATH").unwrap_or_default()),
                ("DATABASE_URL", db.url.clone()),
                ("POOL_API_KEY", API_KEY.to_owned()),
                ("PORT", port.to_string()),
                ("SERVICES_URL", "http://127.0.0.1:1".to_owned()),
                ("TICK_INTERVAL_MS", "86400000".to_owned()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn node (the original service)")?;
        let url = format!("http://127.0.0.1:{port}");
        let http = harness::http_client()?;
        for _ in 0..600 {
            if http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(Self { db, child, url });
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        db.drop().await;
        anyhow::bail!("the original service did not answer /healthz within 30 s")
    }

    async fn stop(mut self) {
        self.child.kill().await.ok();
        self.db.drop().await;
    }
}

/// The original's table as its `src/db/migrate.js` creates it, then the idle rows.
async fn original_rows(db: &BenchDb, sim_url: &str, ids: &[(String, String)]) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE instances (
             id TEXT PRIMARY KEY, name TEXT NOT NULL, url TEXT, status TEXT NOT NULL DEFAULT 'starting',
             agent_name TEXT, conversation_id TEXT, invite_url TEXT, instructions TEXT,
             created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(), claimed_at TIMESTAMPTZ);
         CREATE INDEX idx_instances_status ON instances (status);",
    )
    .execute(&db.pool)
    .await
    .context("create the original's table")?;
    let ids: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    sqlx::query(
        "INSERT INTO instances (id, name, url, status)
         SELECT id, 'convos-agent-' || id, $2 || '/i/' || id, 'idle' FROM unnest($1::text[]) AS t(id)",
    )
    .bind(&ids)
    .bind(sim_url)
    .execute(&db.pool)
    .await
    .context("insert the original's idle instances")?;
    sqlx::query("ANALYZE instances").execute(&db.pool).await?;
    Ok(())
}
