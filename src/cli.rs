//! The `pool` command line: one binary, one subcommand per process role.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[cfg(feature = "dev-tools")]
use crate::dev;
use crate::{
    config::{Config, DatabaseConfig},
    db, http, telemetry,
};

#[derive(Parser)]
#[command(name = "pool", version, about = "Keeps a pool of pre-warmed agent instances")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `pool web` reads (every variable: .env.example). A default is shown as
/// `NAME=value`; a test loads each one and compares it with the configuration's.
pub(crate) const WEB_ENV: &str = "Environment (also read from .env; a default follows its name and =):
  POOL_API_KEY            required; operator keys (comma-separated); POOL_CLAIM_KEYS
  DATABASE_URL            required; Postgres URL (sslmode=require works)
  SERVICES_URL            required; the services API
  PORT=3001, HOST=0.0.0.0 listen address; HTTP_HEADER_TIMEOUT_MS=10000
  POOL_ENVIRONMENT=staging   staging | production (join-link rules, dashboard confirmations)
  POOL_JOIN_HOSTS         hosts a joinUrl may point at (default: the environment's Convos hosts)
  POOL_CLAIM_CONTRACT=jobs   jobs | original (the original service's claim answer)
  POOL_MIN_IDLE=1, POOL_BUFFER=adaptive, POOL_MAX_WARM, POOL_DEMAND_PERIOD,
  REPLENISH_SCHEDULE=\"*/30 * * * * *\"   the warm target counts and /metrics show
  POOL_MAX_WAITING=100    most claims waiting at once; then 503 too_many_waiting
  DATABASE_MAX_CONNECTIONS=10, DATABASE_ACQUIRE_TIMEOUT_MS=10000 (wait for a connection)
  JOB_MAX_ATTEMPTS=6 (JOB_MAX_ATTEMPTS_<KIND> per kind)
  JOB_RESCUE_AFTER_MS=12000  a worker silent this long is not counted alive in /metrics
  METRICS_FLUSH_MS=5000   how often this process writes its metrics to Postgres
  RAILWAY_PROJECT_ID, RAILWAY_ENVIRONMENT_ID, POOL_LOG_FORMAT (JSON lines unless text), RUST_LOG";

/// What `pool worker` reads (every variable: .env.example), defaults as in [`WEB_ENV`].
pub(crate) const WORKER_ENV: &str = "Environment (also read from .env; a default follows its name and =):
  POOL_API_KEY            required; POOL_INSTANCE_KEY (sent to instances)
  DATABASE_URL            required; Postgres URL (sslmode=require works)
  SERVICES_URL            required; SERVICES_API_KEY, SERVICES_TIMEOUT_MS=15000,
                          SERVICES_CREATE_TIMEOUT_MS=120000, SERVICES_RATE_LIMIT_PAUSE_MS=60000,
                          UPSTREAM_MAX_PAUSE_MS=300000
  POOL_MIN_IDLE=1, POOL_STUCK_TIMEOUT_MS=900000, RAILWAY_ENVIRONMENT_ID
  POOL_BUFFER=adaptive    adaptive | static (warm target follows demand or not)
  POOL_MAX_WARM           ceiling on idle + provisioning (default max(10, 4 x POOL_MIN_IDLE))
  POOL_DEMAND_PERIOD      forecast claims from earlier periods of this length (off; e.g. 1d)
  POOL_SURPLUS_COOLDOWN=5m   idle instances above the warm target go after idle this long
  POOL_IDLE_MAX_AGE, POOL_TARGET_IMAGE     replace idle instances too old / on another image
  RECONCILE_SCHEDULE=\"*/30 * * * * *\", REPLENISH_SCHEDULE=\"*/30 * * * * *\"   cron with seconds
  JOB_CLAIM_CONCURRENCY=16, JOB_DEFAULT_CONCURRENCY=4 (JOB_CONCURRENCY_<KIND> per kind)
  JOB_MAX_ATTEMPTS=6 (JOB_MAX_ATTEMPTS_<KIND> per kind), JOB_RETENTION_HOURS=72
  PROVISION_TIMEOUT_MS=360000
  JOB_PRUNE_BATCH=100, JOB_PRUNE_PAUSE_MS=10        pruning in batches
  JOB_IDLE_POLL_MS=5000, JOB_MATCH_IDLE_MS=10000    an idle worker's polls
  JOB_HEARTBEAT_MS=3000, JOB_RESCUE_AFTER_MS=12000  worker liveness
  SERVICES_RATE_PER_SEC=2, SERVICES_RATE_BURST=5, INSTANCE_RATE_PER_SEC=10
  DATABASE_MAX_CONNECTIONS=10, DATABASE_ACQUIRE_TIMEOUT_MS=10000 (wait for a connection)
  METRICS_FLUSH_MS=5000   how often this process writes its metrics to Postgres
  POOL_LOG_FORMAT (JSON lines unless text), RUST_LOG";

#[derive(Subcommand)]
enum Command {
    /// Apply all migrations (Pool's and the job queue's); safe to run twice.
    Migrate,
    /// Serve the HTTP API and dashboard.
    #[command(after_help = WEB_ENV)]
    Web,
    /// Run jobs and schedules.
    #[command(after_help = WORKER_ENV)]
    Worker,
    /// Serve the simulated services API and instances.
    #[cfg(feature = "dev-tools")]
    Sim(dev::SimArgs),
    /// Run migrate, sim, web and worker together against DATABASE_URL.
    #[cfg(feature = "dev-tools")]
    Dev(dev::DevArgs),
    /// List, retry and cancel jobs (needs only DATABASE_URL).
    #[command(subcommand)]
    Jobs(crate::jobs_cli::JobsCommand),
    /// Enqueue a job of KIND with a JSON payload (default `{}`); needs only DATABASE_URL.
    Enqueue {
        /// A job kind, e.g. reconcile, replenish, drain_idle.
        kind: String,
        /// The payload, e.g. '{"count": 2}'.
        payload: Option<String>,
    },
    /// Backfill instance metadata from the services API (enqueues `enrich_metadata`
    /// and waits for its report).
    Enrich {
        /// Refresh every row, not only rows missing metadata.
        #[arg(long)]
        all: bool,
        /// Report what would change without writing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Entry point of the binary: loads `.env`, runs the subcommand, maps errors to exit 1.
pub fn main() -> ExitCode {
    // `.env` is a development convenience; real environments set variables directly,
    // and those always win over the file.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    block_on_main(run(cli.command))
}

/// Runs a command's future on a multi-threaded runtime; an error is printed and the
/// process exits 1. Every binary of the workspace ends this way.
pub fn block_on_main(command: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    let result = runtime.context("Failed to start the async runtime").and_then(|rt| rt.block_on(command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    // JSON lines unless asked otherwise: a deployment that forgot POOL_ENVIRONMENT
    // must still log for its log search. `pool dev` is for reading in a terminal.
    #[cfg(feature = "dev-tools")]
    let dev = matches!(command, Command::Dev(_));
    #[cfg(not(feature = "dev-tools"))]
    let dev = false;
    let text_logs = std::env::var("POOL_LOG_FORMAT").is_ok_and(|f| f == "text") || dev;
    telemetry::init(!text_logs);
    match command {
        Command::Migrate => migrate().await,
        Command::Web => web().await,
        Command::Worker => crate::worker::run(load_config()?, telemetry::shutdown_signal()).await,
        #[cfg(feature = "dev-tools")]
        Command::Sim(args) => dev::run_sim(args).await,
        #[cfg(feature = "dev-tools")]
        Command::Dev(args) => dev::run(args).await,
        Command::Enrich { all, dry_run } => enrich(all, dry_run).await,
        Command::Jobs(command) => crate::jobs_cli::run(command, &database()?).await,
        Command::Enqueue { kind, payload } => crate::jobs_cli::enqueue(&kind, payload.as_deref(), &database()?).await,
    }
}

fn load_config() -> anyhow::Result<Config> {
    Config::from_env().context("configuration error")
}

/// `DATABASE_URL` alone, for commands that need nothing else.
fn database() -> anyhow::Result<DatabaseConfig> {
    Ok(DatabaseConfig::from_process_env()?)
}

async fn migrate() -> anyhow::Result<()> {
    let pool = db::connect(&database()?, 2).await?;
    db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn enrich(all: bool, dry_run: bool) -> anyhow::Result<()> {
    let config = load_config()?;
    let pool = db::connect(&config.database, 2).await?;
    let mut conn = pool.acquire().await?;
    let payload = crate::jobs::enrich_metadata::EnrichMetadata { all, dry_run };
    let job_id = crate::queue::enqueue(&mut conn, &payload, &config.jobs).await?.id().to_owned();
    eprintln!("enqueued enrich_metadata job {job_id}; waiting for a worker to run it…");
    // A CLI waiting on one job may poll; the web process uses notifications instead.
    for _ in 0..600 {
        let doc = crate::store::jobs::get(&pool, &job_id).await?.map(crate::queue::JobDoc::from);
        if let Some(doc) = doc.filter(|d| d.status.is_finished()) {
            println!("{}", serde_json::to_string_pretty(&doc)?);
            anyhow::ensure!(doc.status == crate::store::JobState::Succeeded, "enrich job {}", doc.status.as_str());
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    anyhow::bail!("job {job_id} did not finish within 5 minutes; is a worker running?")
}

async fn web() -> anyhow::Result<()> {
    let config = load_config()?;
    let pool = db::connect_lazy(&config.database)?;
    let app = http::Application::build(config, pool).await?;
    app.run_until_stopped(telemetry::shutdown_signal()).await
}
