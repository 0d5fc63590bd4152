//! `replenish`: writes `provisioning` rows and their `provision_instance` jobs in one
//! transaction. Rows record the replenish job, so a re-run after a crash sees what it
//! already created and adds nothing more.

use pool_jobs::{ProvisionInstance, Replenish};
use serde_json::{Value, json};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta, checkpoint},
};
use crate::{domain::InstanceId, queue, store, store::instances};

/// Most instances one replenish creates, whatever the deficit (bounds a burst).
const MAX_PER_RUN: i64 = 50;

impl Handler for Replenish {
    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<Value, JobError> {
        let already = instances::created_by_job(&ctx.db, &job.id).await?;
        if !already.is_empty() {
            return Ok(json!({ "created": already.len(), "instanceIds": already, "resumed": true }));
        }
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
                    let payload = ProvisionInstance { instance_id: id.to_string() };
                    queue::enqueue(&mut *tx, &payload, &config).await?;
                }
                Ok(())
            })
        })
        .await?;
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        if !ids.is_empty() {
            tracing::info!(created = ids.len(), "replenish created instances");
        }
        Ok(json!({ "created": ids.len(), "instanceIds": ids }))
    }
}
