//! `provision_instance`: creates the provider resources of a `provisioning` row.
//!
//! create-instance is not idempotent upstream (SPEC §5.1): a second call for one id
//! makes a second paid service. So the call is noted on the row before it is made,
//! and a re-run that finds it noted first asks `/status/batch` whether a service of
//! the id exists and takes it over; it calls again only once no earlier call can
//! still be running. Readiness is followed by `check_ready` (reconcile is the net).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ctx, Job, JobError, JobMeta, listing};
use crate::{
    domain::{InstanceId, InstanceStatus},
    services::ServiceStatus,
    store::{self, instances},
    upstream::UpstreamError,
};

/// Creates the provider resources of an instance whose row is already `provisioning`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionInstance {
    pub instance_id: String,
}

/// `provision_instance`: the service created at the provider, or why nothing was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ProvisionResult {
    /// The provider created (or already had) the instance's service.
    #[serde(rename_all = "camelCase")]
    Created {
        instance_id: String,
        service_id: String,
        /// Not known yet while the domain is being assigned.
        #[schema(required = true)]
        url: Option<String>,
    },
    /// The row was gone or no longer `provisioning`.
    #[serde(rename_all = "camelCase")]
    Skipped {
        instance_id: String,
        /// Why, e.g. `instance is idle`.
        skipped: String,
    },
}

impl Job for ProvisionInstance {
    const KIND: super::JobKind = super::JobKind::new("provision_instance");
    type Output = ProvisionResult;

    async fn run(self, ctx: &Ctx, _job: &JobMeta) -> Result<ProvisionResult, JobError> {
        let id = InstanceId::parse(&self.instance_id)?;
        let skipped = |why: String| ProvisionResult::Skipped { instance_id: id.to_string(), skipped: why };
        let Some(row) = instances::get(&ctx.db, &id).await? else {
            return Ok(skipped("instance row no longer exists".into()));
        };
        if row.status() != InstanceStatus::Provisioning {
            return Ok(skipped(format!("instance is {}", row.status)));
        }
        let (service_id, url) = match earlier_service(ctx, &id, row.created_by_job.is_none()).await? {
            Some(Earlier { service, finished }) if finished && service.domain.is_none() => {
                return give_up_half_made(ctx, &id).await.map(skipped);
            }
            Some(Earlier { service, .. }) => take_over(ctx, &id, &service).await?,
            None => create(ctx, &id).await?,
        };
        // Follow it until ready, rather than waiting for the next reconcile.
        store::jobs::enqueue_unless_held(&ctx.db, &crate::queue::check_ready_job()).await?;
        Ok(ProvisionResult::Created { instance_id: id.to_string(), service_id, url })
    }
}

/// A service an earlier create-instance made.
struct Earlier {
    service: ServiceStatus,
    /// Upstream answered that call: it does no more to the service.
    finished: bool,
}

/// The service an earlier create-instance for `id` left, if one was called (by
/// Pool, or, for a row Pool did not create, by whoever did). Errs (retry later)
/// while an unanswered earlier call may still be creating one.
async fn earlier_service(ctx: &Ctx, id: &InstanceId, not_ours: bool) -> Result<Option<Earlier>, JobError> {
    let Some(calls) = instances::create_calls(&ctx.db, id).await? else { return Ok(None) };
    let Some(requested_at) = calls.requested_at else {
        if !not_ours {
            return Ok(None);
        }
        // The original service (or someone) made this row: its service may exist.
        let service = listing::services_of(ctx, id).await?.into_iter().next();
        return Ok(service.map(|service| Earlier { service, finished: false }));
    };
    if let Some(service) = listing::services_of(ctx, id).await?.into_iter().next() {
        return Ok(Some(Earlier { service, finished: calls.answered }));
    }
    let since = (calls.now - requested_at).to_std().unwrap_or_default();
    let timeout = ctx.config.services.create_timeout;
    if calls.answered || since >= timeout {
        return Ok(None);
    }
    // Upstream makes the service only part-way through a create; an unanswered
    // call younger than the create timeout may still make one.
    let after = timeout - since;
    Err(JobError::Retry {
        message: format!(
            "an earlier create-instance for {id} may still be running; looking again in {}s",
            after.as_secs()
        ),
        after: Some(after),
    })
}

/// A create that failed part-way leaves a service without a domain that upstream
/// will never finish (it gives no URL, it never deploys): rather than hold a warm
/// slot until the stuck timeout, the row goes now (replenish makes another) and the
/// service, which services cannot destroy, is shown as an orphan.
async fn give_up_half_made(ctx: &Ctx, id: &InstanceId) -> Result<String, JobError> {
    use InstanceStatus::{Draining, Provisioning};
    let reason = "create-instance failed part-way; its service has no domain";
    if instances::transition(&ctx.db, id, &[Provisioning], Draining, Some(reason)).await? {
        super::removal::destroy_and_delete(ctx, id).await?;
        let mut conn = ctx.db.acquire().await?;
        crate::queue::enqueue_replenish(&mut conn, &ctx.config.jobs).await?;
    }
    tracing::warn!(instance_id = %id, "gave up a half-made instance; its service is an orphan");
    Ok(format!("{reason}: removed, its service left as an orphan"))
}

/// Records `service`, which an earlier call created, as the row's own.
async fn take_over(ctx: &Ctx, id: &InstanceId, service: &ServiceStatus) -> Result<(String, Option<String>), JobError> {
    let service_id = service.service_id.clone().ok_or_else(|| JobError::retry("listed service has no id"))?;
    let url = service.domain.as_deref().map(crate::domain::url::from_domain);
    instances::set_service(&ctx.db, id, &service_id, url.as_deref()).await?;
    tracing::warn!(instance_id = %id, service_id = %service_id, "took over the service an earlier create-instance made");
    Ok((service_id, url))
}

async fn create(ctx: &Ctx, id: &InstanceId) -> Result<(String, Option<String>), JobError> {
    if !instances::note_create_requested(&ctx.db, id).await? {
        return Err(JobError::permanent(format!("instance {id} is no longer provisioning")));
    }
    let created = ctx.services.create_instance(id).await;
    if answered(&created) {
        instances::note_create_answered(&ctx.db, id).await?;
    }
    let created = created?;
    // A plain-http URL would carry the instance key in clear: reconcile records the
    // https one from the service's domain instead.
    let url = created.url.filter(|url| {
        let safe = crate::domain::url::may_carry_key(url);
        if !safe {
            tracing::warn!(instance_id = %id, url, "create-instance answered a URL that is not https; ignored");
        }
        safe
    });
    instances::set_service(&ctx.db, id, &created.service_id, url.as_deref()).await?;
    tracing::info!(instance_id = %id, service_id = %created.service_id, "instance created at the provider");
    Ok((created.service_id, url))
}

/// Whether upstream is done with the call: it answered, or never got it.
fn answered<T>(result: &Result<T, UpstreamError>) -> bool {
    match result {
        Ok(_) => true,
        Err(err) => err.never_sent() || err.status().is_some(),
    }
}
