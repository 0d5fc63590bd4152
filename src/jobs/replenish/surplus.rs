//! Giving back: idle instances above the warm target — left behind by claims that
//! gave up, or by demand that has passed — are drained once they have been idle for
//! `POOL_SURPLUS_COOLDOWN`, up to [`buffer::GIVE_BACK_PER_RUN`] per replenish, oldest
//! first. Only fresh idle instances above the target and the waiting claims count as
//! surplus (stale ones are [`super::recycle`]'s), so the pool never drops below its
//! target for it, and a waiting claim always finds its instance; claimed and claiming
//! ones are never touched (the move is compare-and-set on `idle`, passing over held
//! rows).
//! The drain is the kill path's: `draining`, then `kill_instance` destroys and deletes.

use super::recycle;
use crate::{
    buffer::{self, Target},
    domain::InstanceId,
    jobs::{Ctx, JobError, JobMeta},
    store::{self, instances::recycle as rows, jobs::lifecycle},
};

/// Gives back what is above the target: `fresh_idle` idle instances that are not
/// stale, `waiting` claims. Under the run's lease: a stale run gives back nothing.
/// Returns the ids drained.
pub async fn give_back(
    ctx: &Ctx,
    job: &JobMeta,
    target: &Target,
    fresh_idle: i64,
    waiting: i64,
) -> Result<Vec<InstanceId>, JobError> {
    let limit = buffer::to_give_back(target, fresh_idle, waiting);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let (config, cooldown) = (ctx.config.jobs.clone(), ctx.config.surplus_cooldown);
    let (job_id, fence, worker) = (job.id.clone(), job.fence, job.worker.clone());
    let drained = store::transaction(&ctx.db, move |tx| {
        Box::pin(async move {
            if lifecycle::hold(&mut *tx, &job_id, fence, &worker).await?.is_none() {
                return Ok(None);
            }
            let ids = rows::take_surplus(&mut *tx, limit, cooldown).await?;
            recycle::enqueue_kills(tx, &ids, &config).await?;
            Ok(Some(ids))
        })
    })
    .await?
    .ok_or(JobError::Lost)?;
    if !drained.is_empty() {
        tracing::info!(
            drained = drained.len(),
            target = target.target,
            fresh_idle,
            waiting,
            "gave back surplus idle instances"
        );
    }
    Ok(drained)
}
