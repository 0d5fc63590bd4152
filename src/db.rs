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
    let options: PgConnectOptions = url
        .expose_secret()
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.application_name("pool"))
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
