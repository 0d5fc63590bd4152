//! `reconcile`: one `POST /status/batch`, then SPEC §2.2 applied to every row with
//! compare-and-set updates. At most one runs at a time (singleton dedupe key and a
//! concurrency of one). A failed batch changes nothing.

pub mod apply;
pub mod rules;

use std::collections::HashSet;

use chrono::Utc;
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use self::{
    apply::{Applied, execute},
    rules::decide,
};
use super::{
    Ctx, Job, JobError, JobMeta, checkpoint,
    listing::{self, Owners, keep_own_environment},
};
use crate::{
    domain::url::from_domain as url_from_domain,
    domain::{InstanceStatus, JobId, SERVICE_PREFIX},
    queue,
    services::ServiceStatus,
    store::{
        instances::{self, InstanceRow},
        jobs, orphans,
    },
};

/// Brings the table in line with the provider's view; at most one runs at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconcile {}

/// `reconcile`: what one reconcile saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileResult {
    /// Services the provider reported (of this environment).
    pub services: usize,
    /// Instance rows checked.
    pub rows: usize,
    pub became_idle: usize,
    pub crashed: usize,
    pub recovered: usize,
    pub settled_claims: usize,
    pub released_claims: usize,
    pub draining: usize,
    pub destroyed: usize,
    pub vanished: usize,
    pub adopted: usize,
    /// Claimed rows whose conversation id (a join awaiting acceptance) was filled in.
    #[serde(default)]
    pub conversations_filled: usize,
    /// Services of this environment that no row owns and services cannot destroy.
    #[serde(default)]
    pub orphans: usize,
    /// Services of other Railway environments, left alone.
    pub other_environments: usize,
    /// Rows whose check failed; the next reconcile tries them again.
    pub errors: Vec<String>,
}

/// Instance calls (health, status) made at once during one reconcile.
const CHECK_CONCURRENCY: usize = 16;
/// Rows whose provider view one statement records.
const OBSERVE_CHUNK: usize = 5_000;

impl Job for Reconcile {
    const KIND: crate::jobs::JobKind = crate::jobs::JobKind::new("reconcile");
    type Output = ReconcileResult;

    /// Reconciles never overlap (SPEC invariant 5): the singleton key holds it across
    /// processes, one slot within one.
    fn slots(_: &crate::config::JobsConfig) -> usize {
        1
    }

    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<ReconcileResult, JobError> {
        let mut batch = ctx.services.status_batch(None).await?;
        // The batch may have taken a while (rate limit); nothing is changed yet.
        checkpoint(ctx, job).await?;
        let other_environments =
            keep_own_environment(&mut batch.services, ctx.config.railway_environment_id.as_deref());
        let rows = instances::all(&ctx.db).await?;
        let mut report = ReconcileResult {
            services: batch.services.len(),
            rows: rows.len(),
            other_environments,
            ..ReconcileResult::default()
        };
        let owners = Owners::new(&batch.services);
        observe_batch(ctx, &rows, &owners).await?;
        // By index, not by borrowed closure argument (those trip the Send check of
        // the future); nothing is copied, whatever the fleet's size.
        let (rows_ref, owners_ref) = (&rows, &owners);
        let mut outcomes = stream::iter(0..rows.len())
            .map(|i| async move { apply(ctx, &rows_ref[i], owners_ref.owned_by(&rows_ref[i])).await })
            .buffer_unordered(CHECK_CONCURRENCY);
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Ok(action) => count(&mut report, action),
                Err(err) => report.errors.push(err.to_string()),
            }
        }
        report.adopted = adopt_unknown(ctx, &rows, &batch.services).await?;
        report.orphans = find_orphans(ctx, &rows, &owners, &batch.services).await?;
        let mut conn = ctx.db.acquire().await?;
        queue::enqueue_replenish(&mut conn, &ctx.config.jobs).await?;
        Ok(report)
    }
}

/// Services whose instance id no row has: known orphans stay orphans; the others
/// are adopted (the first of an id; any second one is a duplicate of that row).
async fn adopt_unknown(ctx: &Ctx, rows: &[InstanceRow], services: &[ServiceStatus]) -> Result<usize, JobError> {
    let known: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let orphaned: HashSet<String> = orphans::service_ids(&ctx.db).await?.into_iter().collect();
    let mut adopted = 0;
    for service in services.iter().filter(|s| !known.contains(s.instance_id.as_str())) {
        if !service.service_id.as_ref().is_some_and(|id| orphaned.contains(id)) {
            adopted += usize::from(adopt(ctx, service).await?);
        }
    }
    Ok(adopted)
}

/// Records the orphans this batch shows (duplicates of a row's id, and known
/// orphans still listed) and forgets those the provider no longer lists; returns
/// how many there are.
async fn find_orphans(
    ctx: &Ctx,
    rows: &[InstanceRow],
    owners: &Owners<'_>,
    services: &[ServiceStatus],
) -> Result<usize, JobError> {
    for service in owners.duplicates(rows) {
        listing::record_orphan(ctx, service, "a second service of an instance id a row owns").await?;
    }
    let listed: Vec<&str> = services.iter().filter_map(|s| s.service_id.as_deref()).collect();
    orphans::seen(&ctx.db, &listed).await?;
    for service_id in orphans::forget_unlisted(&ctx.db, &listed).await? {
        tracing::info!(service_id, "orphaned service is gone from the provider");
    }
    Ok(usize::try_from(orphans::count(&ctx.db).await?).unwrap_or_default())
}

/// Applies the decided action to one row; every write is compare-and-set on the
/// status observed in this run.
async fn apply(ctx: &Ctx, row: &InstanceRow, service: Option<&ServiceStatus>) -> Result<Applied, JobError> {
    let holder_active = match &row.claim_job_id {
        Some(job_id) if row.status() == InstanceStatus::Claiming => job_is_active(ctx, job_id).await?,
        _ => false,
    };
    let age = (Utc::now() - row.status_changed_at).to_std().unwrap_or_default();
    let action = decide(row, service, holder_active, age, ctx.config.stuck_timeout);
    execute(ctx, row, action).await
}

/// Records every row's provider view (deploy status, service id, url, image) in one
/// statement, instead of one round trip per row.
pub(super) async fn observe_batch(ctx: &Ctx, rows: &[InstanceRow], owners: &Owners<'_>) -> Result<(), JobError> {
    // In chunks: the statement's arrays stay small whatever the fleet's size.
    for chunk in rows.chunks(OBSERVE_CHUNK) {
        observe_chunk(ctx, chunk, owners).await?;
    }
    Ok(())
}

async fn observe_chunk(ctx: &Ctx, rows: &[InstanceRow], owners: &Owners<'_>) -> Result<(), JobError> {
    let owned: Vec<(&str, &ServiceStatus, Option<String>)> = rows
        .iter()
        .filter_map(|r| owners.owned_by(r).map(|s| (r.id.as_str(), s, s.domain.as_deref().map(url_from_domain))))
        .collect();
    let seen: Vec<instances::Observation<'_>> = owned
        .iter()
        .map(|(id, s, url)| instances::Observation {
            id,
            deploy_status: s.deploy_status.as_ref().map(|d| d.as_str()),
            service_id: s.service_id.as_deref(),
            url: url.as_deref(),
            image: s.image.as_deref(),
        })
        .collect();
    instances::observe_all(&ctx.db, &seen).await?;
    Ok(())
}

async fn job_is_active(ctx: &Ctx, job_id: &JobId) -> Result<bool, JobError> {
    Ok(jobs::get(&ctx.db, job_id).await?.is_some_and(|job| !job.state.is_finished()))
}

/// A `convos-agent-*` service with no row: record it so the next reconciles can
/// health-check it into the pool (or remove it if it is dead).
async fn adopt(ctx: &Ctx, service: &ServiceStatus) -> Result<bool, JobError> {
    let named_ours = service.name.as_deref().is_some_and(|n| n.starts_with(SERVICE_PREFIX));
    let Ok(id) = crate::domain::InstanceId::parse(&service.instance_id) else { return Ok(false) };
    if !named_ours {
        return Ok(false);
    }
    let url = service.domain.as_deref().map(url_from_domain);
    let adopted =
        instances::insert_adopted(&ctx.db, &id, service.name.as_deref(), service.service_id.as_deref(), url.as_deref())
            .await?;
    if adopted {
        tracing::info!(instance_id = %service.instance_id, "adopted an unknown service");
    }
    Ok(adopted)
}

fn count(report: &mut ReconcileResult, applied: Applied) {
    match applied {
        Applied::BecameIdle => report.became_idle += 1,
        Applied::Crashed | Applied::AbandonedClaim => report.crashed += 1,
        Applied::Recovered => report.recovered += 1,
        Applied::SettledClaim => report.settled_claims += 1,
        Applied::ReleasedClaim => report.released_claims += 1,
        Applied::Drained => report.draining += 1,
        Applied::Destroyed => report.destroyed += 1,
        Applied::Vanished => report.vanished += 1,
        Applied::ConversationFilled => report.conversations_filled += 1,
        Applied::Nothing | Applied::MissingCounted => {}
    }
}
