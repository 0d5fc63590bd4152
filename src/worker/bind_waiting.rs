//! Binds instances to claims waiting for capacity: every worker runs this loop, and
//! each pass binds the oldest waiting claims to the oldest idle instances (on the
//! current image first) in one statement (`SKIP LOCKED`: passes of several workers
//! never bind one twice). When claims still wait and fewer instances are on their
//! way than claims, a replenish is enqueued at once rather than at the next tick.
//! And while instances are being created, a readiness follow-up (`check_ready`)
//! exists: a provision that finished while the last round was ending found it still
//! running and enqueued none.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    jobs::Ctx,
    queue,
    store::{
        instances,
        jobs::{self, claim},
    },
};

/// Between passes: how long an instance that became idle may wait for its claim.
const PASS_EVERY: Duration = Duration::from_millis(250);
/// About as long as `check_ready`'s rounds.
const FOLLOW_UP_WINDOW: Duration = Duration::from_secs(300);

/// Passes every [`PASS_EVERY`] while claims wait or instances are being created;
/// otherwise sleeps until a waiting claim is inserted ([`Ctx::claims_waiting`]) or
/// `JOB_MATCH_IDLE_MS` passes, so an idle worker costs the database next to nothing.
pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        let busy = pass(&ctx).await.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not bind waiting claims; retrying");
            true
        });
        let pause = if busy { PASS_EVERY } else { ctx.config.jobs.match_idle };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = ctx.claims_waiting.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One pass; whether there is work for the next one soon (claims wait, or instances
/// are being created).
async fn pass(ctx: &Ctx) -> sqlx::Result<bool> {
    let waiting = claim::waiting_count(&ctx.db).await? > 0;
    if waiting {
        for (job_id, instance_id) in claim::bind_waiting(&ctx.db, ctx.config.target_image.as_deref()).await? {
            tracing::info!(job_id = %job_id, instance_id = %instance_id, "waiting claim bound to an instance");
        }
        if claim::short_for_waiting(&ctx.db).await? {
            jobs::enqueue_unless_held(&ctx.db, &queue::replenish_job(&ctx.config.jobs)).await?;
        }
    }
    // Younger than the follow-up's rounds last: older ones are reconcile's.
    let creating = instances::any_being_created(&ctx.db, FOLLOW_UP_WINDOW).await?;
    if creating {
        jobs::enqueue_unless_held(&ctx.db, &queue::check_ready_job()).await?;
    }
    Ok(waiting || creating)
}
