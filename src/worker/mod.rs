//! The worker process: the job runtime (every kind, on apalis; the registry is
//! `runtime::kinds`), the cron schedules, and pruning of finished jobs.

mod claim;
mod destroy;
mod enrich;
pub mod handler;
pub mod lease;
mod listing;
mod matcher;
mod noop;
mod provision;
mod ready;
mod reconcile;
mod reconcile_apply;
mod reconcile_rules;
mod recycle;
mod replenish;
mod runtime;
mod schedule;
mod surplus;

use std::{future::Future, sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{sync::watch, task::JoinSet};

use crate::{
    config::Config,
    db,
    instance::InstanceClient,
    services::{ServicesClient, Throttle},
    store,
};

/// Timeout of instance calls other than provision.
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often finished jobs past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Everything a handler can reach.
pub struct Ctx {
    /// The worker's pool: handlers, fetches and outcomes.
    pub db: PgPool,
    pub config: Arc<Config>,
    pub services: ServicesClient,
    pub instances: InstanceClient,
    /// Woken when a waiting claim is inserted (`pool_claims_waiting`, received by the
    /// runtime's one LISTEN connection): the matcher sleeps on it while no claim waits.
    pub claims_waiting: Arc<tokio::sync::Notify>,
}

impl Ctx {
    /// Clients paced as configured: services calls by the limit shared across
    /// replicas, instance calls per process.
    pub fn new(config: Config, db: PgPool, stopping: watch::Receiver<bool>) -> Self {
        let jobs = &config.jobs;
        let max_pause = config.services.max_pause;
        let (per_sec, burst) = (jobs.services_rate_per_sec, jobs.services_rate_burst);
        let throttle = Throttle::shared(db.clone(), per_sec, burst, stopping, max_pause);
        let services = ServicesClient::new(&config.services, throttle);
        let instance_throttle = Throttle::per_key(jobs.instance_rate_per_sec);
        let instances = InstanceClient::new(
            config.keys.instance().clone(),
            INSTANCE_TIMEOUT,
            jobs.provision_timeout,
            instance_throttle,
        );
        let claims_waiting = Arc::new(tokio::sync::Notify::new());
        Self { db, config: Arc::new(config), services, instances, claims_waiting }
    }
}

/// Runs every job kind, the schedules and pruning until `shutdown` resolves; then
/// stops taking jobs and waits for in-flight ones.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Handlers up to the claim concurrency plus the other kinds at once, the fetch,
    // the outcome writer and the listener.
    if config.keys.instance_is_operator() {
        tracing::warn!(
            "POOL_INSTANCE_KEY is not set: instances are sent the operator key, which can do everything; \
             give them a key of their own"
        );
    }
    let connections = config.database_max_connections.max(8) + config.jobs.claim_concurrency as u32 + 3;
    let pool = db::connect_patiently(&config.database_url, connections, db::PoolKind::WORKER).await?;
    let (stop_tx, stop) = watch::channel(false);
    let ctx = Arc::new(Ctx::new(config, pool, stop.clone()));
    let mut tasks = JoinSet::new();
    tasks.spawn(schedule::run(ctx.clone(), stop.clone()));
    tasks.spawn(prune_loop(ctx.clone(), stop.clone()));
    tasks.spawn(matcher::run(ctx.clone(), stop.clone()));
    tasks.spawn(crate::metrics::flush_loop(ctx.db.clone(), Some(ctx.config.min_idle), stop.clone()));
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

async fn prune_loop(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let jobs = &ctx.config.jobs;
    let settings =
        store::jobs::PruneSettings { retention: jobs.retention, batch: jobs.prune_batch, pause: jobs.prune_pause };
    loop {
        let round = store::jobs::prune_all(&ctx.db, &settings);
        tokio::select! {
            pruned = round => match pruned {
                Ok(Some(p)) if p.jobs + p.keys > 0 => {
                    tracing::info!(jobs = p.jobs, keys = p.keys, batches = p.batches, "pruned finished jobs and keys");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "could not prune finished jobs"),
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        match store::demand::prune_misses(&ctx.db, store::demand::keep_misses(ctx.config.demand_period)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned claim misses"),
            Err(err) => tracing::warn!(error = %err, "could not prune claim misses"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
