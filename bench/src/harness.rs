//! What every scenario stands on: a throwaway database, `pool web` / `pool worker`
//! child processes of this very binary with an explicit environment, their memory
//! as the kernel reports it, and a pre-warmed pool written straight into the table.

use std::{collections::HashMap, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use sqlx::{Connection, Executor, PgConnection, PgPool, postgres::PgPoolOptions};
use tokio::process::{Child, Command};

use pool::domain::InstanceId;
use pool_sim as sim;

/// The API key of the benchmark's web processes.
pub const API_KEY: &str = "bench-pool-key";
/// A cron that never fires in practice (midnight of January 1st).
pub const NEVER: &str = "0 0 0 1 1 *";
/// How long a child process may take to answer `/readyz` or to stop.
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

/// A database of its own for one scenario run; dropped by [`BenchDb::drop`].
pub struct BenchDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin_url: String,
}

impl BenchDb {
    /// Creates `bench_<scenario>_<random>` on the server of `DATABASE_URL` and migrates it.
    pub async fn create(scenario: &str) -> anyhow::Result<Self> {
        let db = Self::create_empty(scenario).await?;
        if let Err(err) = pool::db::migrate(&db.pool).await {
            db.drop().await;
            return Err(err);
        }
        Ok(db)
    }

    /// Creates `bench_<scenario>_<random>` with no tables (for another service's schema).
    pub async fn create_empty(scenario: &str) -> anyhow::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .context("pool-bench needs DATABASE_URL (a server where it may CREATE DATABASE)")?;
        let name = format!("bench_{}_{:08x}", scenario.replace('-', "_"), rand::random::<u32>());
        let url = url_with_database(&admin_url, &name)?;
        let mut admin = PgConnection::connect(&admin_url).await.context("connect to DATABASE_URL")?;
        admin.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#))).await.context("CREATE DATABASE")?;
        admin.close().await?;
        let pool =
            PgPoolOptions::new().max_connections(16).connect(&url).await.context("connect to the bench database")?;
        Ok(Self { name, url, pool, admin_url })
    }

    /// Closes our connections and drops the database (forcing out any leftover ones),
    /// unless `POOL_BENCH_KEEP_DB=1` asks to keep it for a post-mortem.
    pub async fn drop(self) {
        self.pool.close().await;
        if std::env::var("POOL_BENCH_KEEP_DB").is_ok_and(|v| v == "1") {
            eprintln!("bench: kept database {}", self.name);
            return;
        }
        let dropped = async {
            let mut admin = PgConnection::connect(&self.admin_url).await?;
            let sql = format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name);
            admin.execute(sqlx::AssertSqlSafe(sql)).await?;
            admin.close().await
        };
        if let Err(err) = dropped.await {
            eprintln!("bench: could not drop database {}: {err}", self.name);
        }
    }
}

/// `url` with its database (path) replaced by `database`, query string kept.
fn url_with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url).context("DATABASE_URL is not a URL")?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

/// The environment of a child `pool web` / `pool worker`: nothing inherited, schedules
/// off, limits out of the way; `extra` wins. `POOL_BENCH_LOG` (default `warn`) is the
/// children's `RUST_LOG`, for diagnosing a run; see also [`diagnostic_env`].
pub fn child_env(db_url: &str, sim_url: &str, port: u16, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let port = port.to_string();
    let log = std::env::var("POOL_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let base = [
        ("POOL_API_KEY", API_KEY),
        ("DATABASE_URL", db_url),
        ("SERVICES_URL", sim_url),
        ("PORT", port.as_str()),
        ("RECONCILE_SCHEDULE", NEVER),
        ("REPLENISH_SCHEDULE", NEVER),
        ("SERVICES_RATE_PER_SEC", "100000"),
        ("SERVICES_RATE_BURST", "100000"),
        // The per-process instance limit (default 50/s) would cap claims at 50/s.
        ("INSTANCE_RATE_PER_SEC", "100000"),
        ("POOL_MIN_IDLE", "0"),
        ("RUST_LOG", log.as_str()),
        ("POOL_LOG_FORMAT", "text"),
    ];
    let mut env: HashMap<String, String> =
        base.iter().chain(extra).map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    env.extend(diagnostic_env());
    env
}

/// `POOL_BENCH_CHILD_ENV="K=V;K=V"`: variables added to every child (for what-if
/// runs, e.g. `PGOPTIONS=-c synchronous_commit=off`); they win over everything.
fn diagnostic_env() -> Vec<(String, String)> {
    let raw = std::env::var("POOL_BENCH_CHILD_ENV").unwrap_or_default();
    raw.split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Memory of a process from `/proc/<pid>/status`, in kB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    /// `VmRSS`: resident now.
    pub rss_kb: u64,
    /// `VmHWM`: the peak resident size so far.
    pub hwm_kb: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`; `None` when the process is gone.
pub fn read_mem(pid: u32) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some(Mem { rss_kb: field("VmRSS:")?, hwm_kb: field("VmHWM:")? })
}

/// kB to MB with one decimal.
pub fn mb(kb: u64) -> f64 {
    (kb as f64 / 1024.0 * 10.0).round() / 10.0
}

/// The `pool` binary measured: `POOL_BIN`, or the one built beside this one.
pub fn pool_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("POOL_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe().context("cannot find this binary")?;
    let pool = exe.with_file_name("pool");
    anyhow::ensure!(pool.exists(), "no pool binary at {} (build it, or set POOL_BIN)", pool.display());
    Ok(pool)
}

/// A running `pool <role>` child; SIGKILLed if dropped without [`Proc::stop`].
pub struct Proc {
    role: &'static str,
    child: Child,
    pub pid: u32,
}

impl Proc {
    /// Starts `pool <role>` (see [`pool_binary`]) with exactly `env`, outside the
    /// checkout so a developer's `.env` cannot leak in. Logs go to our stderr, stdout
    /// is dropped.
    pub fn spawn(role: &'static str, env: &HashMap<String, String>) -> anyhow::Result<Self> {
        let child = Command::new(pool_binary()?)
            .arg(role)
            .env_clear()
            .envs(env)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn pool {role}"))?;
        let pid = child.id().context("child has no pid")?;
        Ok(Self { role, child, pid })
    }

    pub fn mem(&self) -> Mem {
        read_mem(self.pid).unwrap_or_default()
    }

    /// SIGTERM, then waits for a graceful exit (SIGKILL after the limit).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        use nix::{sys::signal, unistd::Pid};
        let pid = Pid::from_raw(i32::try_from(self.pid)?);
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("pool {} had already exited ({status})", self.role);
        }
        signal::kill(pid, signal::Signal::SIGTERM).with_context(|| format!("SIGTERM pool {}", self.role))?;
        match tokio::time::timeout(PROCESS_LIMIT, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                anyhow::ensure!(status.success(), "pool {} exited with {status}", self.role);
                Ok(())
            }
            Err(_) => {
                // The measurement is complete; report the hang instead of failing the run.
                self.child.kill().await?;
                eprintln!(
                    "bench: WARNING: pool {} did not stop within {PROCESS_LIMIT:?} of SIGTERM; killed",
                    self.role
                );
                Ok(())
            }
        }
    }
}

/// A reqwest client (through [`pool::upstream::client_builder`], which installs
/// the TLS provider) with keep-alive.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(pool::upstream::client_builder().timeout(Duration::from_secs(90)).build()?)
}

/// A free TCP port (bound, then released for the child to take).
///
/// Chosen below Linux's ephemeral range (32768+) and below the test clusters'
/// ports (15000+): a port the kernel handed out with `bind(0)` is an ephemeral one,
/// which an outgoing connection may take before the child binds it.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = 10_000 + rand::random_range(0..5_000);
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in 10000..15000")
}

/// Polls `{base}/readyz` until it answers 200.
pub async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PROCESS_LIMIT;
    loop {
        if let Ok(response) = http.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{base}/readyz did not answer 200 within {PROCESS_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pre-warms `n` idle instances without the services API: rows written directly and
/// their services created (ready at once with a zero build time) in the simulator.
pub async fn insert_idle(db: &PgPool, sim: &sim::SpawnedSim, n: usize) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = (0..n).map(|_| InstanceId::generate().to_string()).collect();
    let mut service_ids = Vec::with_capacity(n);
    for id in &ids {
        sim.sim.add_service(id);
        sim.sim.set_ready(id, true);
        service_ids.push(sim.sim.service(id).map(|s| s.service_id).context("service just added")?);
    }
    insert_idle_rows(db, &sim.url, &ids, &service_ids).await?;
    Ok(ids)
}

/// Writes `ids` (with their `service_ids`) as idle rows served by the simulator at
/// `sim_url`, on its image, and refreshes the planner's statistics.
pub async fn insert_idle_rows(
    db: &PgPool,
    sim_url: &str,
    ids: &[String],
    service_ids: &[String],
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO instances (id, name, status, url, service_id, deploy_status, image)
         SELECT id, 'convos-agent-' || id, 'idle', $3 || '/i/' || id, service_id, 'SUCCESS', $4
         FROM unnest($1::text[], $2::text[]) AS t(id, service_id)",
    )
    .bind(ids)
    .bind(service_ids)
    .bind(sim_url)
    // The image the simulator reports, as a reconcile records it: rows as a
    // running pool has them.
    .bind(sim::SimConfig::default().image)
    .execute(db)
    .await
    .context("insert idle instances")?;
    sqlx::query("ANALYZE instances").execute(db).await?;
    Ok(())
}

/// A simulator that builds and provisions instantly.
pub async fn instant_sim() -> anyhow::Result<sim::SpawnedSim> {
    let config =
        sim::SimConfig { build_time: Duration::ZERO, provision_time: Duration::ZERO, ..sim::SimConfig::default() };
    Ok(sim::Simulator::new(config).spawn().await?)
}

/// A database, the simulator, and one web and one worker process on them.
pub struct Stack {
    pub db: BenchDb,
    pub sim: sim::SpawnedSim,
    pub web_url: String,
    pub http: reqwest::Client,
    pub web: Proc,
    pub worker: Proc,
}

impl Stack {
    /// Starts the processes on a prepared database and simulator; waits for `/readyz`.
    /// On failure the database is dropped too.
    pub async fn start(db: BenchDb, sim: sim::SpawnedSim, extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        match Self::processes(&db, &sim, extra).await {
            Ok((web, worker, http, web_url)) => Ok(Self { db, sim, web_url, http, web, worker }),
            Err(err) => {
                db.drop().await;
                Err(err)
            }
        }
    }

    async fn processes(
        db: &BenchDb,
        sim: &sim::SpawnedSim,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<(Proc, Proc, reqwest::Client, String)> {
        let port = free_port()?;
        let env = child_env(&db.url, &sim.url, port, extra);
        let web = Proc::spawn("web", &env)?;
        let worker = Proc::spawn("worker", &env)?;
        let http = http_client()?;
        let web_url = format!("http://127.0.0.1:{port}");
        wait_ready(&http, &web_url).await?;
        Ok((web, worker, http, web_url))
    }

    /// Stops both processes and drops the database, whatever happens.
    pub async fn stop(self) -> anyhow::Result<()> {
        let web = self.web.stop().await;
        let worker = self.worker.stop().await;
        self.db.drop().await;
        web.and(worker)
    }
}
