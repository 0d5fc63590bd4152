//! The worker process: one supervised apalis worker per job kind (the registry is
//! [`run`]), the cron schedules, and pruning of finished jobs.

mod claim;
mod destroy;
mod enrich;
pub mod handler;
mod noop;
mod provision;
mod reconcile;
mod reconcile_rules;
mod replenish;
mod runtime;
mod schedule;

use std::{future::Future, sync::Arc, time::Duration};

use pool_jobs::{
    ClaimAndProvision, DismissCrashed, DrainIdle, EnrichMetadata, Job, KillInstance, Noop, ProvisionInstance,
    Reconcile, Replenish,
};
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
    /// The handlers' pool.
    pub db: PgPool,
    /// apalis's own pool (fetches, heartbeats), guarded against leaked transactions.
    pub queue_db: PgPool,
    pub config: Arc<Config>,
    pub services: ServicesClient,
    pub instances: InstanceClient,
}

impl Ctx {
    /// Clients paced as configured: services calls by the limit shared across
    /// replicas, instance calls per process.
    pub fn new(config: Config, db: PgPool, queue_db: PgPool) -> Self {
        let jobs = &config.jobs;
        let throttle =
            Throttle::Shared { db: db.clone(), per_sec: jobs.services_rate_per_sec, burst: jobs.services_rate_burst };
        let services = ServicesClient::new(&config.services, throttle);
        let instance_throttle = Throttle::per_key(jobs.instance_rate_per_sec);
        let instances =
            InstanceClient::new(config.api_key.clone(), INSTANCE_TIMEOUT, jobs.provision_timeout, instance_throttle);
        Self { db, queue_db, config: Arc::new(config), services, instances }
    }
}

/// Runs every job kind, the schedules and pruning until `shutdown` resolves; then
/// stops taking jobs and waits for in-flight ones (apalis returns unstarted ones).
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Handlers: up to the claim concurrency plus the other kinds at once.
    let connections = config.database_max_connections.max(8) + config.jobs.claim_concurrency as u32;
    let pool = db::connect_patiently(&config.database_url, connections, db::PoolKind::HANDLERS).await?;
    // apalis: a fetch and a heartbeat per kind now and then.
    let queue_pool = db::connect_patiently(&config.database_url, 10, db::PoolKind::QUEUE).await?;
    let ctx = Arc::new(Ctx::new(config, pool, queue_pool));
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = spawn_all(&ctx, &stop);
    tracing::info!(environment = ctx.config.environment.as_str(), "worker started");
    shutdown.await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    ctx.db.close().await;
    ctx.queue_db.close().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// The registry: every job kind with its concurrency, plus the background loops.
fn spawn_all(ctx: &Arc<Ctx>, stop: &watch::Receiver<bool>) -> JoinSet<()> {
    let jobs = &ctx.config.jobs;
    let (claim, other) = (jobs.claim_concurrency, jobs.default_concurrency);
    let n = |kind: &str, default: usize| jobs.concurrency_for(kind, default);
    let mut set = JoinSet::new();
    set.spawn(runtime::run_kind::<ClaimAndProvision>(ctx.clone(), n(ClaimAndProvision::KIND, claim), stop.clone()));
    set.spawn(runtime::run_kind::<ProvisionInstance>(ctx.clone(), n(ProvisionInstance::KIND, other), stop.clone()));
    // One replenish at a time keeps top-ups from overshooting.
    set.spawn(runtime::run_kind::<Replenish>(ctx.clone(), 1, stop.clone()));
    set.spawn(runtime::run_kind::<DrainIdle>(ctx.clone(), n(DrainIdle::KIND, other), stop.clone()));
    set.spawn(runtime::run_kind::<KillInstance>(ctx.clone(), n(KillInstance::KIND, other), stop.clone()));
    set.spawn(runtime::run_kind::<DismissCrashed>(ctx.clone(), n(DismissCrashed::KIND, other), stop.clone()));
    // Reconciles never overlap (SPEC invariant 5).
    set.spawn(runtime::run_kind::<Reconcile>(ctx.clone(), 1, stop.clone()));
    set.spawn(runtime::run_kind::<EnrichMetadata>(ctx.clone(), 1, stop.clone()));
    set.spawn(runtime::run_kind::<Noop>(ctx.clone(), n(Noop::KIND, other), stop.clone()));
    set.spawn(schedule::run(ctx.clone(), stop.clone()));
    set.spawn(prune_loop(ctx.clone(), stop.clone()));
    set.spawn(crate::metrics::flush_loop(ctx.db.clone(), stop.clone()));
    set
}

async fn prune_loop(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let retention = ctx.config.jobs.retention.as_secs() as i64;
    loop {
        match store::jobs::prune(&ctx.db, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned finished jobs"),
            Err(err) => tracing::warn!(error = %err, "could not prune finished jobs"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
