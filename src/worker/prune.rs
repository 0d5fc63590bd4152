//! Pruning: every [`PRUNE_EVERY`], finished jobs and idempotency keys past their
//! retention are deleted in bounded batches (one worker at a time), then the claim
//! arrivals older than the demand window.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    config::JobsConfig,
    jobs::{Ctx, Job, claim_and_provision::ClaimAndProvision},
    store,
};

/// How often finished jobs past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How a worker prunes: `JOB_RETENTION_HOURS`, `JOB_PRUNE_BATCH`, `JOB_PRUNE_PAUSE_MS`,
/// giving way to claims.
pub fn settings(jobs: &JobsConfig) -> store::jobs::PruneSettings {
    store::jobs::PruneSettings {
        retention: jobs.retention,
        batch: jobs.prune_batch,
        pause: jobs.prune_pause,
        give_way_to: &[ClaimAndProvision::KIND],
    }
}

pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let settings = settings(&ctx.config.jobs);
    loop {
        let round = store::jobs::prune_all(&ctx.db, &settings);
        tokio::select! {
            pruned = round => match pruned {
                Ok(Some(p)) if p.jobs + p.keys > 0 => {
                    let gave_way_ms = p.gave_way.as_millis() as u64;
                    tracing::info!(jobs = p.jobs, keys = p.keys, batches = p.batches, gave_way_ms, "pruned finished jobs and keys");
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
