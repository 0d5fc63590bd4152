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

/// Opens a pool; the first connection is made eagerly so a bad URL fails at start.
pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with(url, max_connections, false).await
}

/// Like [`connect`], and every connection handed back to the pool is checked for a
/// transaction left open (one more round trip per release). The worker needs this:
/// at shutdown apalis drops in-flight fetches, and sqlx 0.9.0 can then take back a
/// connection whose `BEGIN` future was dropped half-way (sqlx #4393) — the server
/// is still inside that transaction and the next user's writes would silently join
/// it and be lost.
pub async fn connect_guarded(url: &SecretString, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with(url, max_connections, true).await
}

async fn connect_with(url: &SecretString, max_connections: u32, guard: bool) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    // A transaction left open by a bug must not hold locks for long.
    let options = options.application_name("pool").options([("idle_in_transaction_session_timeout", "60000")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_release(move |conn, _| {
            Box::pin(async move {
                if !guard {
                    return Ok(true);
                }
                let outside: bool = sqlx::query_scalar("SELECT statement_timestamp() = transaction_timestamp()")
                    .fetch_one(&mut *conn)
                    .await?;
                if !outside {
                    tracing::warn!("closing a pooled connection that was left inside a transaction");
                }
                Ok(outside)
            })
        })
        .connect_with(options)
        .await
        .context("Failed to connect to the database (DATABASE_URL)")
}

/// Applies every migration: the job queue's first (Pool's own add indexes and a
/// trigger to its table), then Pool's.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    apalis_postgres::PostgresStorage::setup(pool)
        .await
        .context("Failed to set up the job queue schema")?;
    MIGRATOR.run(pool).await.context("Failed to apply Pool's migrations")?;
    Ok(())
}

/// True when the database answers a trivial query; used by `/readyz`.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
