//! `drain_idle`: takes up to `count` unclaimed instances out of the pool (idle ones
//! first; the take is recorded with the job, so a re-run destroys the same ones) and
//! destroys them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ctx, Job, JobError, JobMeta, checkpoint, removal::destroy_and_delete};
use crate::store::{instances, jobs::drain};

/// Removes up to `count` unclaimed instances, idle ones first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainIdle {
    pub count: u32,
}

/// `drain_idle`: the instances taken out of the pool and destroyed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainResult {
    pub drained: usize,
    pub instance_ids: Vec<String>,
}

impl Job for DrainIdle {
    const KIND: super::JobKind = super::JobKind::new("drain_idle");
    type Output = DrainResult;

    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<DrainResult, JobError> {
        checkpoint(ctx, job).await?;
        // Taken now, or by an earlier run of this job (recorded with the take).
        let taken = drain::take(&ctx.db, &job.id, job.fence, &job.worker, i64::from(self.count))
            .await?
            .ok_or(JobError::Lost)?;
        // Rows still draining, read back typed (the others are already destroyed).
        for row in instances::drained_by_job(&ctx.db, &job.id).await? {
            if taken.contains(&row.id) {
                destroy_and_delete(ctx, &row.id).await?;
            }
        }
        Ok(DrainResult { drained: taken.len(), instance_ids: taken.iter().map(ToString::to_string).collect() })
    }
}
