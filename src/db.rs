//! Database pools and migrations. `migrate` applies the job queue's own schema (`apalis`) and
//! then Pool's migrations (embedded from `migrations/`), both idempotent and
//! safe to run from several processes at once (each takes an advisory lock).

use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{
    PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Pool's own migrations, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How a pool's connections behave.
#[derive(Clone, Copy, Debug)]
pub struct PoolKind {
    /// End any transaction a connection is handed back in (one round trip per
    /// release). For apalis's pool: at shutdown it drops in-flight fetches, and sqlx
    /// 0.9.0 can then take back a connection whose `BEGIN` future was dropped
    /// half-way (sqlx #4393); the next user's writes would silently join that
    /// transaction and be lost.
    pub guard_transactions: bool,
    /// Commit without waiting for the WAL flush (worker only; see
    /// docs/ARCHITECTURE.md, "Durability").
    pub async_commit: bool,
}

impl PoolKind {
    /// The web process: durable commits, it acknowledges to clients.
    pub const WEB: Self = Self { guard_transactions: false, async_commit: false };
    /// The worker's handlers.
    pub const HANDLERS: Self = Self { guard_transactions: false, async_commit: true };
    /// apalis inside the worker (fetches, heartbeats, listeners).
    pub const QUEUE: Self = Self { guard_transactions: true, async_commit: true };
}

/// Opens a durable pool; the first connection is made eagerly so a bad URL fails at
/// start.
pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_as(url, max_connections, PoolKind::WEB).await
}

/// Like [`connect_as`], but a database that is down (or not accepting connections
/// yet) is waited for, so a worker started during an outage does not exit; a
/// malformed URL still fails at once.
pub async fn connect_patiently(url: &SecretString, max_connections: u32, kind: PoolKind) -> anyhow::Result<PgPool> {
    let _: PgConnectOptions = url.expose_secret().parse().context("DATABASE_URL is not a valid Postgres URL")?;
    let mut delay = Duration::from_millis(500);
    loop {
        match connect_as(url, max_connections, kind).await {
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
/// answers) while the database is down; `/readyz` tells the difference.
pub fn connect_lazy(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.expose_secret().parse().context("DATABASE_URL is not a valid Postgres URL")?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(base_options(options, PoolKind::WEB)))
}

fn base_options(options: PgConnectOptions, kind: PoolKind) -> PgConnectOptions {
    // A transaction left open by a bug must not hold locks for long.
    let options = options
        .application_name("pool")
        .options([("idle_in_transaction_session_timeout", "60000"), ("client_min_messages", "error")]);
    if kind.async_commit { options.options([("synchronous_commit", "off")]) } else { options }
}

/// Opens a pool of `kind`, connecting eagerly.
pub async fn connect_as(url: &SecretString, max_connections: u32, kind: PoolKind) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.expose_secret().parse().context("DATABASE_URL is not a valid Postgres URL")?;
    let guard = kind.guard_transactions;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_release(move |conn, _| {
            Box::pin(async move {
                if guard {
                    // Outside a transaction this is a no-op (its warning is not
                    // sent: client_min_messages).
                    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(base_options(options, kind))
        .await
        .context("Failed to connect to the database (DATABASE_URL)")
}

/// Applies every migration: the job queue's first (Pool's own add indexes and a
/// trigger to its table), then Pool's.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    apalis_postgres::PostgresStorage::setup(pool).await.context("Failed to set up the job queue schema")?;
    MIGRATOR.run(pool).await.context("Failed to apply Pool's migrations")?;
    Ok(())
}

/// True when the database answers a trivial query; used by `/readyz`.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
