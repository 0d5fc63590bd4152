//! `provision_instance`: creates the provider resources of a `provisioning` row.
//! `create-instance` is idempotent on the instance id, so a re-run is harmless;
//! readiness is followed by `check_ready` (and reconcile, the safety net).

use pool_jobs::ProvisionInstance;
use serde_json::{Value, json};

use super::{
    Ctx,
    handler::{Handler, JobError, JobMeta},
};
use crate::{
    domain::{InstanceId, InstanceStatus},
    store::{self, instances},
};

impl Handler for ProvisionInstance {
    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<Value, JobError> {
        let id = InstanceId::parse(&self.instance_id).map_err(|e| JobError::permanent(e.to_string()))?;
        let Some(row) = instances::get(&ctx.db, id.as_str()).await? else {
            return Ok(json!({ "instanceId": id, "skipped": "instance row no longer exists" }));
        };
        if row.status() != InstanceStatus::Provisioning {
            return Ok(json!({ "instanceId": id, "skipped": format!("instance is {}", row.status) }));
        }
        let created = ctx.services.create_instance(&id).await?;
        instances::set_service(&ctx.db, id.as_str(), &created.service_id, created.url.as_deref()).await?;
        // Follow it until ready, rather than waiting for the next reconcile.
        store::jobs::enqueue_unless_held(&ctx.db, &crate::queue::check_ready_job()).await?;
        tracing::info!(instance_id = %id, service_id = %created.service_id, "instance created at the provider");
        Ok(json!({ "instanceId": id, "serviceId": created.service_id, "url": created.url }))
    }
}
