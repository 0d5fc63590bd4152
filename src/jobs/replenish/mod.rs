//! `replenish`: re-drives provisions that gave up, then writes `provisioning` rows and
//! their `provision_instance` jobs in one transaction: up to the warm target
//! ([`crate::buffer`]) plus one for every claim waiting for an instance, the whole
//! deficit at once (the shared services rate limit paces the creates). Rows record
//! the replenish job, so a re-run after a crash sees what it already created and adds
//! nothing more. A top-up also gives back idle instances above the target
//! ([`surplus`]).

mod recycle;
mod surplus;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ctx, Job, JobError, JobMeta, checkpoint};
use crate::{
    buffer,
    domain::InstanceId,
    queue, store,
    store::{
        instances,
        jobs::{self, lifecycle},
    },
};

/// Tops the pool up to `POOL_MIN_IDLE`, or adds exactly `count` instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replenish {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub count: Option<u32>,
}

/// `replenish`: the instances this job created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplenishResult {
    pub created: usize,
    pub instance_ids: Vec<String>,
    /// Set on a re-run that found the rows an earlier run of the job created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resumed: Option<bool>,
    /// Stranded provisions enqueued again (absent on a resumed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub redriven: Option<Vec<String>>,
}

/// Most instances one replenish creates (a bound against a runaway, far above any
/// refill the services rate limit allows in minutes).
const MAX_PER_RUN: i64 = 1000;

impl Job for Replenish {
    const KIND: crate::jobs::JobKind = crate::jobs::JobKind::new("replenish");
    type Output = ReplenishResult;

    /// One at a time keeps top-ups from overshooting.
    fn slots(_: &crate::config::JobsConfig) -> usize {
        1
    }

    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<ReplenishResult, JobError> {
        let already = instances::created_by_job(&ctx.db, &job.id).await?;
        if !already.is_empty() {
            let created = already.len();
            let instance_ids = already.iter().map(ToString::to_string).collect();
            return Ok(ReplenishResult { created, instance_ids, resumed: Some(true), redriven: None });
        }
        // Rows whose provision gave up (e.g. the services API was down longer than its
        // retries) are on their way again before they are counted.
        let redriven = redrive(ctx).await?;
        let wanted = match self.count {
            Some(count) => i64::from(count.min(20)),
            None => top_up(ctx, job).await?,
        };
        checkpoint(ctx, job).await?;
        let ids: Vec<InstanceId> = (0..wanted).map(|_| InstanceId::generate()).collect();
        let provisions: Vec<_> = ids.iter().map(|id| queue::provision_job(id, &ctx.config.jobs)).collect();
        let (job_id, fence, worker, rows) = (job.id.clone(), job.fence, job.worker.clone(), ids.clone());
        // Under the run's lease, in the same transaction: a stale run adds nothing.
        let held = store::transaction(&ctx.db, move |tx| {
            Box::pin(async move {
                if lifecycle::hold(&mut *tx, &job_id, fence, &worker).await?.is_none() {
                    return Ok(false);
                }
                instances::insert_provisioning_many(&mut *tx, &rows, &job_id).await?;
                jobs::enqueue_many(&mut *tx, &provisions).await?;
                Ok(true)
            })
        })
        .await?;
        if !held {
            return Err(JobError::Lost);
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        if !ids.is_empty() {
            tracing::info!(created = ids.len(), "replenish created instances");
        }
        Ok(ReplenishResult { created: ids.len(), instance_ids: ids, resumed: None, redriven: Some(redriven) })
    }
}

/// How many instances a top-up creates: the warm target and the waiting claims,
/// less what is idle or on its way.
/// Stale idle instances being replaced do not count ([`recycle`]); those already
/// replaced are retired here, and idle instances above the target are given back
/// ([`surplus`]).
async fn top_up(ctx: &Ctx, job: &JobMeta) -> Result<i64, JobError> {
    let target = buffer::current(&ctx.db, ctx.config.buffer_settings(), buffer::Burst::Recent).await?;
    let stale = recycle::survey(ctx).await?;
    recycle::retire(ctx, &stale, target.target).await?;
    // Both sides of the line at once; what is given back is idle, so no longer warm.
    let (warm, waiting) = jobs::claim::warm_and_waiting(&ctx.db).await?;
    let given_back = surplus::give_back(ctx, job, &target, stale.fresh, waiting).await?;
    let have = warm - i64::try_from(given_back.len()).unwrap_or_default();
    let replacing = i64::try_from(stale.oldest.len()).unwrap_or_default();
    store::metrics::set_gauge(&ctx.db, "pool_warm_target", f64::from(target.target)).await?;
    if let Some(forecast) = target.forecast_claims {
        store::metrics::set_gauge(&ctx.db, "pool_warm_forecast", forecast).await?;
    }
    let wanted = buffer::to_create(&target, have, replacing, waiting).min(MAX_PER_RUN);
    if wanted > 0 {
        tracing::info!(target = target.target, reason = target.reason, have, waiting, replacing, wanted, "topping up");
    }
    Ok(wanted)
}

/// Enqueues a new provision for every `provisioning` row that has no service and
/// no provision queued or running, younger than the stuck timeout (older ones are
/// drained by reconcile). Returns their ids.
async fn redrive(ctx: &Ctx) -> Result<Vec<String>, JobError> {
    let stranded = instances::stranded_provisions(&ctx.db, ctx.config.stuck_timeout).await?;
    let mut redriven = Vec::new();
    let mut conn = ctx.db.acquire().await?;
    for id in stranded {
        if jobs::enqueue_unless_held(&mut *conn, &queue::provision_job(&id, &ctx.config.jobs)).await? {
            tracing::info!(instance_id = %id, "provision re-driven: its last one gave up");
            redriven.push(id.to_string());
        }
    }
    Ok(redriven)
}
