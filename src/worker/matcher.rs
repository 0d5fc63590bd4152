//! Binds instances to claims waiting for capacity: every worker runs this loop, and
//! each pass binds the oldest waiting claims to the oldest idle instances (on the
//! current image first) in one
//! statement (`SKIP LOCKED`: passes of several workers never bind one twice). When
//! claims still wait and fewer instances are on their way than claims, a replenish
//! is enqueued at once rather than at the next tick. And while instances are being
//! created, a readiness follow-up (`check_ready`) exists: a provision that finished
//! while the last round was ending found it still running and enqueued none.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::Ctx;
use crate::{
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

pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(err) = pass(&ctx).await {
            tracing::warn!(error = %err, "could not bind waiting claims; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(PASS_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn pass(ctx: &Ctx) -> sqlx::Result<()> {
    for (job_id, instance_id) in claim::bind_waiting(&ctx.db, ctx.config.target_image.as_deref()).await? {
        tracing::info!(job_id = %job_id, instance_id = %instance_id, "waiting claim bound to an instance");
    }
    if claim::short_for_waiting(&ctx.db).await? {
        jobs::enqueue_unless_held(&ctx.db, &queue::replenish_job(&ctx.config.jobs)).await?;
    }
    // Younger than the follow-up's rounds last: older ones are reconcile's.
    if instances::any_being_created(&ctx.db, FOLLOW_UP_WINDOW).await? {
        jobs::enqueue_unless_held(&ctx.db, &queue::check_ready_job()).await?;
    }
    Ok(())
}
