//! The worker process: the job runtime (every kind of [`crate::jobs`], on apalis),
//! and the loops beside it: the cron schedules, the binding of waiting claims to
//! idle instances, and pruning of finished jobs.

mod bind_waiting;
mod prune;
mod runtime;
mod schedule;

use std::{future::Future, sync::Arc};

use tokio::{sync::watch, task::JoinSet};

use crate::{config::Config, db, jobs::Ctx, store};

pub use prune::settings as prune_settings;

/// Runs every job kind, the schedules and pruning until `shutdown` resolves; then
/// stops taking jobs and waits for in-flight ones.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Handlers up to the claim concurrency plus the other kinds at once, the outcome
    // writer and the listener (the fetch and the heartbeat have connections of their
    // own).
    if config.keys.instance_is_operator() {
        tracing::warn!(
            "POOL_INSTANCE_KEY is not set: instances are sent the operator key, which can do everything; \
             give them a key of their own"
        );
    }
    let connections = config.database.max_connections.max(8) + config.jobs.claim_concurrency as u32 + 2;
    let pool = db::connect_patiently(&config.database, connections, db::PoolKind::WORKER).await?;
    let (stop_tx, stop) = watch::channel(false);
    let ctx = Arc::new(Ctx::new(config, pool, stop.clone()));
    let mut tasks = JoinSet::new();
    tasks.spawn(schedule::run(ctx.clone(), stop.clone()));
    tasks.spawn(prune::run(ctx.clone(), stop.clone()));
    tasks.spawn(bind_waiting::run(ctx.clone(), stop.clone()));
    tasks.spawn(crate::metrics::flush_loop(
        ctx.db.clone(),
        ctx.config.metrics_flush,
        Some(ctx.config.min_idle),
        stop.clone(),
    ));
    let mut jobs = tokio::spawn(runtime::run(ctx.clone(), stop.clone()));
    tracing::info!(environment = ctx.config.environment.as_str(), "worker started");
    // Top up once at start: a fresh deploy fills the pool without waiting for a tick.
    if let Err(err) = store::jobs::enqueue_unless_held(&ctx.db, &crate::queue::replenish_job(&ctx.config.jobs)).await {
        tracing::warn!(error = %err, "could not enqueue the start-up replenish; the schedule will");
    }
    // A runtime or background loop (schedules, pruning, metrics) that ends on its
    // own, or panics, is fatal: the process exits non-zero so the platform restarts
    // it, and other workers rescue what it held.
    let (ended, loop_ended) = tokio::select! {
        _ = shutdown => (None, false),
        ended = &mut jobs => (Some(ended), false),
        Some(ended) = tasks.join_next() => {
            tracing::error!(error = ?ended.err(), "a background loop of the worker ended on its own");
            (None, true)
        }
    };
    let _ = stop_tx.send(true);
    let fatal = ended.is_some() || loop_ended;
    let result = match ended {
        Some(result) => result,
        None => jobs.await,
    };
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = format!("{err:#}"), "runtime failed"),
        Err(err) => tracing::error!(error = %err, "runtime panicked"),
    }
    while tasks.join_next().await.is_some() {}
    ctx.db.close().await;
    tracing::info!("worker stopped");
    anyhow::ensure!(!fatal, "the job runtime or a background loop ended before the worker was asked to stop");
    Ok(())
}
