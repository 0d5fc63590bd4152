//! `provision_instance`: creates the provider resources of a `provisioning` row.
//! `create-instance` is idempotent on the instance id, so a re-run is harmless;
//! readiness is followed by `check_ready` (and reconcile, the safety net).

use pool_jobs::{ProvisionInstance, results::ProvisionResult};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta},
};
use crate::{
    domain::{InstanceId, InstanceStatus},
    store::{self, instances},
};

impl Handler for ProvisionInstance {
    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<ProvisionResult, JobError> {
        let id = InstanceId::parse(&self.instance_id).map_err(|e| JobError::permanent(e.to_string()))?;
        let skipped = |why: String| ProvisionResult::Skipped { instance_id: id.to_string(), skipped: why };
        let Some(row) = instances::get(&ctx.db, id.as_str()).await? else {
            return Ok(skipped("instance row no longer exists".into()));
        };
        if row.status() != InstanceStatus::Provisioning {
            return Ok(skipped(format!("instance is {}", row.status)));
        }
        let created = ctx.services.create_instance(&id).await?;
        instances::set_service(&ctx.db, id.as_str(), &created.service_id, created.url.as_deref()).await?;
        // Follow it until ready, rather than waiting for the next reconcile.
        store::jobs::enqueue_unless_held(&ctx.db, &crate::queue::check_ready_job()).await?;
        tracing::info!(instance_id = %id, service_id = %created.service_id, "instance created at the provider");
        Ok(ProvisionResult::Created { instance_id: id.to_string(), service_id: created.service_id, url: created.url })
    }
}
