//! Test helpers, named for what they do.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use pool::{config::Config, sim};
use sqlx::{Connection, Executor, PgConnection, PgPool, postgres::PgPoolOptions};
use tokio::{
    process::{Child, Command},
    sync::OnceCell,
};

/// The operator key every test app uses (long enough for production settings).
pub const API_KEY: &str = "test-pool-key-0123456789abcdef0123";
/// An instance key production settings accept.
pub const INSTANCE_KEY: &str = "test-instance-key-0123456789abcdef";

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The server's admin URL, from `DATABASE_URL` (set by `scripts/test`).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL must be set; run the suite with ./scripts/test")
}

/// `admin_url` with another database name.
pub fn url_for(database: &str) -> String {
    let base = admin_url();
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL has a database name");
    format!("{server}/{database}")
}

/// A fresh database for one test, cloned from the migrated template.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = TEMPLATE.get_or_init(create_template).await;
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed),
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let mut admin = PgConnection::connect(&admin_url()).await.expect("connect admin");
        admin
            .execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#)))
            .await
            .expect("clone template");
        Self::open(name).await
    }

    /// An empty database with no schema at all (for migration tests).
    pub async fn empty() -> Self {
        let name = format!("e_{}", ulid::Ulid::generate().to_string().to_lowercase());
        let mut admin = PgConnection::connect(&admin_url()).await.expect("connect admin");
        admin.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#))).await.expect("create db");
        Self::open(name).await
    }

    async fn open(name: String) -> Self {
        let url = url_for(&name);
        let pool = PgPoolOptions::new().max_connections(5).connect(&url).await.expect("connect test db");
        Self { name, url, pool }
    }
}

/// The database goes when the test ends, however it ended: a developer's own server
/// keeps no test databases (`FORCE` ends the sessions of processes still running).
/// On a thread of its own, since the test's runtime may be shutting down.
impl Drop for TestDb {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url()).await?;
                let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                admin.execute(sqlx::AssertSqlSafe(drop)).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        if let Ok(Err(err)) = dropped.join() {
            eprintln!("could not drop a test database: {err}");
        }
    }
}

/// Migrates a template database once per test process. Its name carries a hash of the
/// migrations so a reused server never serves a stale schema; an advisory lock keeps
/// parallel test processes from building it twice.
async fn create_template() -> String {
    let checksum: u64 = pool::db::MIGRATOR
        .iter()
        .flat_map(|m| m.checksum.iter().copied())
        .fold(1469598103934665603, |h, b| (h ^ u64::from(b)).wrapping_mul(1099511628211));
    let name = format!("pool_template_{:x}", checksum & 0xffff_ffff);
    let mut admin = PgConnection::connect(&admin_url()).await.expect("connect admin");
    admin.execute("SELECT pg_advisory_lock(4242)").await.expect("lock");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("query pg_database");
    if !exists {
        admin.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#))).await.expect("create template");
        let pool = PgPoolOptions::new().max_connections(2).connect(&url_for(&name)).await.expect("connect");
        pool::db::migrate(&pool).await.expect("migrate template");
        // A template must have no open connections when it is cloned.
        pool.close().await;
    }
    admin.execute("SELECT pg_advisory_unlock(4242)").await.expect("unlock");
    name
}

/// Worker liveness for tests that stop or freeze workers: a worker silent 3 s is
/// presumed gone.
pub const SHORT_LEASE: [(&str, &str); 2] = [("JOB_HEARTBEAT_MS", "500"), ("JOB_RESCUE_AFTER_MS", "3000")];

/// Metrics written to Postgres every 200 ms, for tests that read counters.
pub const FAST_METRICS: (&str, &str) = ("METRICS_FLUSH_MS", "200");

/// Schedules that never fire, for tests that enqueue every job themselves.
pub const NO_SCHEDULES: [(&str, &str); 2] =
    [("RECONCILE_SCHEDULE", "0 0 0 1 1 *"), ("REPLENISH_SCHEDULE", "0 0 0 1 1 *")];

/// The kind named `name`, which the test knows exists.
pub fn kind(name: &str) -> pool::domain::JobKind {
    pool::jobs::kind_named(name).expect("a kind of this release")
}

/// A claim job as the claim request writes it, for tests of the claim statements.
pub fn claim_job(id: &str) -> pool::store::NewJob {
    pool::store::NewJob {
        id: id.into(),
        ..pool::store::NewJob::new(kind("claim_and_provision"), serde_json::json!({}), 6)
    }
}

/// Starts the simulator in-process on a free port.
pub async fn spawn_sim(config: sim::SimConfig) -> sim::SpawnedSim {
    sim::Simulator::new(config).spawn().await.expect("spawn simulator")
}

/// A fault-free simulator with a fast build.
pub fn fast_sim() -> sim::SimConfig {
    sim::SimConfig { build_time: Duration::from_millis(100), ..sim::SimConfig::default() }
}

/// Environment variables that make a working configuration for this database and sim.
pub fn base_env(db_url: &str, services_url: &str) -> HashMap<String, String> {
    [
        ("POOL_API_KEY", API_KEY),
        ("DATABASE_URL", db_url),
        ("SERVICES_URL", services_url),
        ("PORT", "0"),
        ("POOL_LOG_FORMAT", "text"),
        ("RUST_LOG", "warn,pool=info"),
        // A create-instance cut off by a kill may still be running upstream for this
        // long; a re-run waits it out. The simulator's creates take milliseconds.
        ("SERVICES_CREATE_TIMEOUT_MS", "5000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A [`Config`] built from [`base_env`] plus `overrides`.
pub fn test_config(db_url: &str, services_url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut env = base_env(db_url, services_url);
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_lookup(|k| env.get(k).cloned()).expect("valid test config")
}

/// The web app running in-process on a free port.
pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl TestApp {
    pub async fn spawn(config: Config, db: PgPool) -> Self {
        let app = pool::http::Application::build(config, db).await.expect("build app");
        let address = format!("http://127.0.0.1:{}", app.port());
        let task = tokio::spawn(async move {
            app.run_until_stopped(std::future::pending()).await.expect("app runs");
        });
        Self { address, http: http_client(), task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real `pool <role>` process; killed when dropped.
pub struct PoolProcess {
    pub child: Child,
}

impl PoolProcess {
    pub fn spawn(args: &[&str], env: &HashMap<String, String>) -> Self {
        let child = pool_command(args, env).stdout(Stdio::null()).kill_on_drop(true).spawn().expect("spawn pool");
        Self { child }
    }

    /// Sends SIGTERM (a graceful stop request).
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("kill");
    }

    /// Waits for exit; panics after `limit` so a hung process fails the test.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait()).await.expect("process exits in time").expect("wait")
    }
}

/// `pool` with exactly `env` (nothing inherited that could change behaviour).
pub fn pool_command(args: &[&str], env: &HashMap<String, String>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pool"));
    cmd.args(args).env_clear().envs(env).env("PATH", std::env::var("PATH").unwrap_or_default());
    // Keep the checkout's `.env` (if a developer has one) out of the tests.
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// A reqwest client (with the TLS provider installed, which reqwest needs even for http).
pub fn http_client() -> reqwest::Client {
    pool::upstream::client_builder().build().expect("client")
}

/// A free TCP port on 127.0.0.1 (bound and released; fine for tests).
///
/// Chosen below Linux's ephemeral range (32768+) and below the test clusters'
/// ports (15000+): a port the kernel handed out with `bind(0)` is an ephemeral one,
/// which an outgoing connection may take before the child process binds it.
pub fn free_port() -> u16 {
    (0..100)
        .map(|_| 10_000 + rand::random_range(0..5_000))
        .find(|port| std::net::TcpListener::bind(("0.0.0.0", *port)).is_ok())
        .expect("a free port in 10000..15000")
}

/// Polls `url` until it answers 200 or `limit` passes.
pub async fn wait_until_up(url: &str, limit: Duration) {
    let client = http_client();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `limit`) until a session of this database waits on a lock; `None`
/// when none did. For tests that hold a lock and need the other side blocked on it.
pub async fn someone_waits_on_a_lock(db: &PgPool, limit: Duration) -> Option<()> {
    crate::stack::eventually(limit, || async {
        let query =
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()";
        let waiting: i64 = sqlx::query_scalar(query).fetch_one(db).await.unwrap();
        (waiting > 0).then_some(())
    })
    .await
}
