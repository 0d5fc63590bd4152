//! The cron schedules. Every worker replica runs this loop; each tick's job carries an
//! idempotency key made of the tick's own timestamp (identical on every replica), so a
//! tick yields one job however many replicas see it. Ticks only enqueue.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cron::Schedule;
use tokio::sync::watch;

use crate::{
    jobs::{Ctx, Job, JobKind, reconcile::Reconcile, replenish::Replenish},
    queue,
    store::jobs::{self, Enqueued},
};

/// Runs until `stop` flips to true.
pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let jobs_config = &ctx.config.jobs;
    let schedules = [
        (Reconcile::KIND, jobs_config.reconcile_schedule.clone()),
        (Replenish::KIND, jobs_config.replenish_schedule.clone()),
    ];
    loop {
        let Some((tick, kinds)) = next_tick(&schedules) else {
            // No tick will ever come (a cron naming past years only): nothing to do,
            // but ending would take the worker down.
            let _ = stop.wait_for(|s| *s).await;
            return;
        };
        let wait = (tick - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for kind in kinds {
            if let Err(err) = enqueue_tick(&ctx, kind, tick).await {
                tracing::warn!(kind = %kind, %tick, error = %err, "could not enqueue scheduled job");
            }
        }
    }
}

/// The earliest upcoming tick and every kind due at it.
fn next_tick(schedules: &[(JobKind, Schedule)]) -> Option<(DateTime<Utc>, Vec<JobKind>)> {
    let ticks: Vec<_> = schedules.iter().filter_map(|(kind, s)| Some((*kind, s.upcoming(Utc).next()?))).collect();
    let first = ticks.iter().map(|(_, t)| *t).min()?;
    Some((first, ticks.iter().filter(|(_, t)| *t == first).map(|(k, _)| *k).collect()))
}

async fn enqueue_tick(ctx: &Ctx, kind: JobKind, tick: DateTime<Utc>) -> sqlx::Result<()> {
    let mut job = match kind {
        Reconcile::KIND => queue::reconcile_job(&ctx.config.jobs),
        _ => queue::replenish_job(&ctx.config.jobs),
    };
    job.idempotency_key = Some(format!("cron:{}", tick.timestamp()));
    let mut conn = ctx.db.acquire().await?;
    match jobs::enqueue(&mut conn, &job).await? {
        Enqueued::New(id) => tracing::debug!(kind = %kind, job_id = %id, %tick, "scheduled job enqueued"),
        Enqueued::Existing(id) => tracing::debug!(kind = %kind, job_id = %id, %tick, "tick already covered"),
    }
    Ok(())
}
