//! Database pools and migrations. `migrate` applies Pool's migrations (embedded from
//! `migrations/`), idempotent and safe to run from several processes at once (sqlx
//! takes an advisory lock).
//!
//! No pool needs a guard against leaked transactions (sqlx #4393: a `BEGIN` whose
//! future is dropped half-way leaves the connection inside a transaction): the hot
//! paths are single statements, and the few multi-statement transactions run in
//! [`crate::store::transaction`], which no caller can cancel half-way.

use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::config::DatabaseConfig;

/// Pool's own migrations, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How a pool's connections behave.
#[derive(Clone, Copy, Debug)]
pub struct PoolKind {
    /// Commit without waiting for the WAL flush (worker only; see
    /// docs/ARCHITECTURE.md, "Durability").
    pub async_commit: bool,
}

impl PoolKind {
    /// The web process: durable commits, it acknowledges to clients.
    pub const WEB: Self = Self { async_commit: false };
    /// The worker: handlers, fetches and outcomes.
    pub const WORKER: Self = Self { async_commit: true };
}

/// How long a statement waits for a free connection (or a new one) before it fails,
/// unless the configuration says otherwise (`DATABASE_ACQUIRE_TIMEOUT_MS`).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a durable pool of `max_connections` (a command's few, not the configured
/// number); the first connection is made eagerly so a bad URL fails at start.
pub async fn connect(config: &DatabaseConfig, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_as(&config.url, max_connections, PoolKind::WEB, config.acquire_timeout).await
}

/// Like [`connect_as`], but a database that is down (or not accepting connections
/// yet) is waited for, so a worker started during an outage does not exit; a
/// malformed URL still fails at once.
pub async fn connect_patiently(
    config: &DatabaseConfig,
    max_connections: u32,
    kind: PoolKind,
) -> anyhow::Result<PgPool> {
    let (url, acquire_timeout) = (&config.url, config.acquire_timeout);
    let _: PgConnectOptions = url.expose_secret().parse().context("DATABASE_URL is not a valid Postgres URL")?;
    let mut delay = Duration::from_millis(500);
    loop {
        match connect_as(url, max_connections, kind, acquire_timeout).await {
            Ok(pool) => return Ok(pool),
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "database not reachable; waiting"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A pool that connects on first use: the web process starts (and `/healthz`
/// answers) while the database is down; `/readyz` tells the difference. A request
/// never waits long on the database: no statement runs longer than 10 s and no
/// lock is waited for longer than 2 s (the web's statements are short; a slow one
/// is a flood or a stuck lock, and its client gets an error instead of a hang).
pub fn connect_lazy(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions =
        config.url.expose_secret().parse().context("DATABASE_URL is not a valid Postgres URL")?;
    let options =
        base_options(options, PoolKind::WEB).options([("statement_timeout", "10000"), ("lock_timeout", "2000")]);
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options))
}

fn base_options(options: PgConnectOptions, kind: PoolKind) -> PgConnectOptions {
    // A transaction left open by a bug must not hold locks for long.
    // `random_page_cost`: Pool's tables are small and hot (in memory or on SSD), so a
    // few random reads cost about what sequential ones do. With the default (4, for
    // spinning disks) a plan a connection keeps from a new, near-empty table scans
    // the whole table to update the rows a fetch took, long after it has grown.
    let options = options.application_name("pool").options([
        ("idle_in_transaction_session_timeout", "60000"),
        ("client_min_messages", "error"),
        ("random_page_cost", "1.1"),
    ]);
    if kind.async_commit { options.options([("synchronous_commit", "off")]) } else { options }
}

/// Opens a pool of `kind`, connecting eagerly.
pub async fn connect_as(
    url: &SecretString,
    max_connections: u32,
    kind: PoolKind,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.expose_secret().parse().context("DATABASE_URL is not a valid Postgres URL")?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_with(base_options(options, kind))
        .await
        .context("Failed to connect to the database (DATABASE_URL)")
}

/// A pool of one connection set up as `pool`'s, connecting on first use, whose
/// statements always run the plan made for any values (`plan_cache_mode =
/// force_generic_plan`). For a statement whose plan for any values is the one wanted
/// and whose estimated cost grows with a table: by default a connection compares the
/// kept plan's cost with the plans it made for values earlier, on a smaller table,
/// and plans anew on every run long after the table grew.
pub fn keeping_plans(pool: &PgPool, acquire_timeout: Duration) -> PgPool {
    let options = pool.connect_options().as_ref().clone().options([("plan_cache_mode", "force_generic_plan")]);
    PgPoolOptions::new().max_connections(1).acquire_timeout(acquire_timeout).connect_lazy_with(options)
}

/// Applies every migration.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    legacy_queue_stub(pool).await.context("Failed to prepare the legacy job queue schema")?;
    MIGRATOR.run(pool).await.context("Failed to apply Pool's migrations")?;
    Ok(())
}

/// Migrations 2 and 4 (append-only, so unchanged) add an index and a trigger to the
/// job table of the previous releases, `apalis.jobs`, which apalis-postgres created
/// before them. On a new database, an empty table of that shape lets them apply; the
/// job table Pool uses is `jobs` (migration 20261130000001).
async fn legacy_queue_stub(pool: &PgPool) -> sqlx::Result<()> {
    let history: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if history {
        let applied: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM public._sqlx_migrations WHERE version = 20261124000002)")
                .fetch_one(pool)
                .await?;
        if applied {
            return Ok(());
        }
    }
    sqlx::raw_sql(LEGACY_QUEUE_STUB).execute(pool).await?;
    Ok(())
}

const LEGACY_QUEUE_STUB: &str = "
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE SCHEMA IF NOT EXISTS apalis;
CREATE TABLE IF NOT EXISTS apalis.jobs (
    id text PRIMARY KEY, job_type text NOT NULL, job bytea NOT NULL, status text NOT NULL DEFAULT 'Pending',
    attempts integer NOT NULL DEFAULT 0, max_attempts integer NOT NULL DEFAULT 25,
    run_at timestamptz NOT NULL DEFAULT now(), last_result jsonb, lock_at timestamptz, lock_by text,
    done_at timestamptz, priority integer NOT NULL DEFAULT 0, metadata hstore, idempotency_key text);";

/// True when the database answers a trivial query; used by `/readyz`.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
