//! The worker process: runs jobs and schedules.

use std::future::Future;

use crate::{config::Config, db};

/// Runs the worker until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let pool = db::connect(&config.database_url, config.database_max_connections).await?;
    tracing::info!(environment = config.environment.as_str(), "worker started");
    shutdown.await;
    pool.close().await;
    tracing::info!("worker stopped");
    Ok(())
}
