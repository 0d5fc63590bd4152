//! `drain_idle`, `kill_instance` and `dismiss_crashed`: move rows to `draining`
//! (compare-and-set), destroy at the provider, and delete each row only once
//! `/status/batch` no longer lists its service. Upstream answers 200 even when its
//! delete failed (SPEC §5.1): a service still listed then is an orphan, recorded
//! and shown, since nothing Pool can call will remove it.

use pool_jobs::{
    DismissCrashed, DrainIdle, KillInstance,
    results::{DrainResult, RemoveResult},
};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta, checkpoint},
    listing,
};
use crate::{
    domain::{InstanceId, InstanceStatus},
    store::{instances, jobs::drain},
    upstream::UpstreamError,
};

use InstanceStatus::*;

/// Destroys a `draining` instance and deletes its row; false when its service is
/// still running (an orphan now).
pub async fn destroy_and_delete(ctx: &Ctx, id: &InstanceId) -> Result<bool, JobError> {
    let gone = destroy_confirmed(ctx, id).await?;
    instances::delete_draining(&ctx.db, id).await?;
    tracing::info!(instance_id = %id, gone, "instance removed");
    Ok(gone)
}

/// Destroys `id` at the services API (404: it has no row, fine) and confirms by id
/// that no service of it is still listed; one that is becomes an orphan. Returns
/// whether none is. Errs, so the caller keeps its row and tries again, when
/// absence cannot be confirmed.
pub async fn destroy_confirmed(ctx: &Ctx, id: &InstanceId) -> Result<bool, JobError> {
    match ctx.services.destroy(id).await {
        Ok(_) | Err(UpstreamError::NotFound { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    let left = listing::services_of(ctx, id).await?;
    for service in &left {
        listing::record_orphan(ctx, service, "still listed after Pool destroyed its instance").await?;
    }
    Ok(left.is_empty())
}

impl Handler for DrainIdle {
    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<DrainResult, JobError> {
        checkpoint(ctx, job).await?;
        // Taken now, or by an earlier run of this job (recorded with the take).
        let taken = drain::take(&ctx.db, &job.id, job.fence, &job.worker, i64::from(self.count))
            .await?
            .ok_or(JobError::Lost)?;
        // Rows still draining, read back typed (the others are already destroyed).
        for row in instances::drained_by_job(&ctx.db, &job.id).await? {
            if taken.iter().any(|id| *id == *row.id) {
                destroy_and_delete(ctx, &row.id).await?;
            }
        }
        Ok(DrainResult { drained: taken.len(), instance_ids: taken })
    }
}

impl Handler for KillInstance {
    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<RemoveResult, JobError> {
        let from = [Provisioning, Idle, Claiming, Claimed, Crashed];
        instances::transition(&ctx.db, &self.instance_id, &from, Draining, Some("killed by operator")).await?;
        finish_removal(ctx, &self.instance_id).await
    }
}

impl Handler for DismissCrashed {
    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<RemoveResult, JobError> {
        instances::transition(&ctx.db, &self.instance_id, &[Crashed], Draining, Some("dismissed")).await?;
        finish_removal(ctx, &self.instance_id).await
    }
}

/// After the transition: destroy if the row is draining (this run's or an earlier
/// attempt's doing); a vanished row means an earlier attempt finished.
async fn finish_removal(ctx: &Ctx, id: &str) -> Result<RemoveResult, JobError> {
    let removed = |destroyed: bool, note: Option<&str>| RemoveResult {
        instance_id: id.to_owned(),
        destroyed,
        note: note.map(Into::into),
    };
    match instances::get(&ctx.db, id).await? {
        None => Ok(removed(true, Some("already removed"))),
        Some(row) if row.status() == Draining => {
            let gone = destroy_and_delete(ctx, &row.id).await?;
            let orphaned = "its service is still running: an orphan, shown with the fleet; delete it at the provider";
            Ok(removed(gone, (!gone).then_some(orphaned)))
        }
        Some(row) => Err(JobError::permanent(format!("instance {id} is {}; not removed", row.status))),
    }
}
