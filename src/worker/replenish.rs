//! `replenish`: re-drives provisions that gave up, then writes `provisioning` rows and
//! their `provision_instance` jobs in one transaction. Rows record the replenish job,
//! so a re-run after a crash sees what it already created and adds nothing more.

use pool_jobs::{Replenish, results::ReplenishResult};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta, checkpoint},
};
use crate::{
    domain::InstanceId,
    queue, store,
    store::{instances, jobs},
};

/// Most instances one replenish creates, whatever the deficit (bounds a burst).
const MAX_PER_RUN: i64 = 50;

impl Handler for Replenish {
    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<ReplenishResult, JobError> {
        let already = instances::created_by_job(&ctx.db, &job.id).await?;
        if !already.is_empty() {
            let created = already.len();
            return Ok(ReplenishResult { created, instance_ids: already, resumed: Some(true), redriven: None });
        }
        // Rows whose provision gave up (e.g. the services API was down longer than its
        // retries) are on their way again before they are counted.
        let redriven = redrive(ctx).await?;
        let wanted = match self.count {
            Some(count) => i64::from(count.min(20)),
            None => {
                let have = instances::idle_plus_provisioning(&ctx.db).await?;
                (i64::from(ctx.config.min_idle) - have).clamp(0, MAX_PER_RUN)
            }
        };
        checkpoint(ctx, job).await?;
        let ids: Vec<InstanceId> = (0..wanted).map(|_| InstanceId::generate()).collect();
        let (job_id, config, rows) = (job.id.clone(), ctx.config.jobs.clone(), ids.clone());
        store::transaction(&ctx.db, move |tx| {
            Box::pin(async move {
                for id in &rows {
                    instances::insert_provisioning(&mut *tx, id, &job_id).await?;
                    jobs::enqueue(&mut *tx, &queue::provision_job(id.as_str(), &config)).await?;
                }
                Ok(())
            })
        })
        .await?;
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        if !ids.is_empty() {
            tracing::info!(created = ids.len(), "replenish created instances");
        }
        Ok(ReplenishResult { created: ids.len(), instance_ids: ids, resumed: None, redriven: Some(redriven) })
    }
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
            redriven.push(id);
        }
    }
    Ok(redriven)
}
