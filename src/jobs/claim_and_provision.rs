//! `claim_and_provision`: binds one idle instance to a conversation.
//!
//! The row this job holds carries the job's id (`claim_job_id`), reserved by the
//! claim request itself or here. A re-run therefore resumes that row and never takes
//! a second one while the first may have been bound (invariant 1). Outcomes follow
//! SPEC §2.2: 2xx → `claimed`; provably untouched (refused connection, 503) → back to
//! `idle` and another instance is tried; anything that may have acted is settled by
//! the instance's own `/convos/status`: bound → `claimed`, else `crashed`. A re-run
//! asks that first, since upstream answers a second provision with a slow 500; it
//! knows it is one from its row (`provision_sent_by`, flushed before the call), not
//! only from the job's run counter, which a lost commit can reset. Every write to
//! the row is fenced on the run's lease: a stale run changes nothing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Ctx, Job, JobError, JobMeta, checkpoint};
use crate::{
    domain::{InstanceId, InstanceStatus},
    instance::{ProvisionRequest, Provisioned},
    queue,
    store::{
        instances::{self, Binding, Completed, InstanceRow},
        jobs,
    },
    upstream::UpstreamError,
};

/// Binds one idle instance to a conversation. The instance row records the job's id,
/// so a re-run resumes the same instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimAndProvision {
    pub agent_name: String,
    pub instructions: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub join_url: Option<String>,
}

/// `claim_and_provision`: the claimed instance and its conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResult {
    pub instance_id: String,
    #[schema(required = true)]
    pub invite_url: Option<String>,
    #[schema(required = true)]
    pub conversation_id: Option<String>,
    /// Whether the instance joined an existing conversation (`joinUrl`).
    pub joined: bool,
    /// The join awaits the other side's acceptance, so `conversationId` is not
    /// known yet; reconcile fills it in on the instance once the instance knows it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_acceptance: bool,
    /// The instance's URL.
    #[schema(required = true)]
    pub gateway_url: Option<String>,
}

/// Instances one claim may try when they turn out not ready.
const MAX_INSTANCES: usize = 3;

impl Job for ClaimAndProvision {
    const KIND: super::JobKind = super::JobKind::new("claim_and_provision");
    type Output = ClaimResult;

    fn slots(jobs: &crate::config::JobsConfig) -> usize {
        jobs.concurrency_for(<Self as super::Job>::KIND, jobs.claim_concurrency)
    }

    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<ClaimResult, JobError> {
        let result = claim(&self, ctx, job).await;
        // Every claim attempt may have used up an idle instance (a completed claim
        // enqueued its replenish with its outcome).
        if !matches!(result, Err(JobError::Recorded | JobError::Lost)) {
            jobs::enqueue_unless_held(&ctx.db, &queue::top_up_job(&ctx.config.jobs)).await?;
        }
        result
    }
}

async fn claim(args: &ClaimAndProvision, ctx: &Ctx, job: &JobMeta) -> Result<ClaimResult, JobError> {
    let mut tried = Vec::new();
    job.lease_holds()?;
    // Read and noted by the fetch that took the job, as a run's first step would.
    let mut held = match &job.prefetched {
        Some(held) => Some(
            <instances::HeldClaim as serde::Deserialize>::deserialize(held)
                .map_err(|e| JobError::retry(format!("cannot decode the held row: {e}")))?,
        ),
        None => instances::held_noting_provision(&ctx.db, job.lease()).await?,
    };
    while tried.len() < MAX_INSTANCES {
        let (row, note) = match held.take() {
            Some(held) => {
                let note = held.note();
                (held.row, note)
            }
            None => (reserve(ctx, job, &tried).await?, None),
        };
        match row.status() {
            InstanceStatus::Claiming => {}
            InstanceStatus::Claimed => return Ok(claim_result(&row, row.conversation_id.as_deref(), None)),
            other => return Err(JobError::permanent(format!("instance {} became {other} during the claim", row.id))),
        }
        if let Some(done) = provision(args, ctx, job, &row, note).await? {
            return Ok(done);
        }
        tried.push(row.id.clone());
    }
    Err(JobError::permanent(format!("no ready instance after trying {MAX_INSTANCES}")))
}

async fn reserve(ctx: &Ctx, job: &JobMeta, tried: &[InstanceId]) -> Result<InstanceRow, JobError> {
    let mut conn = ctx.db.acquire().await?;
    instances::reserve_idle(&mut conn, &job.id, tried, ctx.config.target_image.as_deref())
        .await?
        .ok_or_else(|| JobError::permanent("no_idle_instance: no idle instance to claim"))
}

/// Provisions `row`, noted as about to be sent unless `note` says it is already.
/// `Ok(None)` = the instance provably did nothing and was released.
async fn provision(
    args: &ClaimAndProvision,
    ctx: &Ctx,
    job: &JobMeta,
    row: &InstanceRow,
    note: Option<instances::ProvisionNote>,
) -> Result<Option<ClaimResult>, JobError> {
    let Some(url) = row.url.as_deref() else {
        release(ctx, job, row).await?;
        return Ok(None);
    };
    let note = match note {
        Some(note) => Some(note),
        None => {
            job.lease_holds()?;
            instances::note_provision_sent(&ctx.db, &row.id, job.lease(), false).await?
        }
    };
    let Some(note) = note else {
        checkpoint(ctx, job).await?;
        return Err(JobError::permanent(format!("instance {} was taken away before its provision", row.id)));
    };
    // An earlier run may have bound it already; upstream answers a second provision
    // with a 500 after minutes, not a 409 (SPEC §5.2), so ask before provisioning.
    // The row says whether one was sent: the run counter may have lost a commit.
    if job.rerun || note.sent_before {
        if let Some(bound) = bound_conversation(args, ctx, url).await? {
            return complete(args, ctx, job, row, &bound).await.map(Some);
        }
        if note.sent_before {
            resend_after_the_first(ctx, job, row, note).await?;
        }
    }
    let body = ProvisionRequest {
        agent_name: args.agent_name.clone(),
        instructions: args.instructions.clone(),
        join_url: args.join_url.clone(),
    };
    match ctx.instances.provision(url, &body).await {
        Ok(bound) => complete(args, ctx, job, row, &bound).await.map(Some),
        Err(err) if err.never_sent() || err.status() == Some(503) => {
            tracing::info!(instance_id = %row.id, error = %err, "instance did not act; releasing it");
            release(ctx, job, row).await?;
            Ok(None)
        }
        Err(err) => settle_after_error(args, ctx, job, row, url, &err).await.map(Some),
    }
}

/// An earlier provision of this claim was sent and the instance reports no binding
/// yet. Upstream binds only at the end of a provision, which may take minutes: while
/// the first one may still be running, asking again would bind a second
/// conversation, so the claim looks again once it cannot be (the provision budget
/// after the first send). After that a new provision is sent, noted as the first.
async fn resend_after_the_first(
    ctx: &Ctx,
    job: &JobMeta,
    row: &InstanceRow,
    note: instances::ProvisionNote,
) -> Result<(), JobError> {
    let budget = ctx.config.jobs.provision_timeout;
    let since = std::time::Duration::from_secs_f64(note.since_first_secs.unwrap_or(f64::MAX).clamp(0.0, 1e9));
    if since < budget {
        let after = budget - since + std::time::Duration::from_secs(1);
        let message = format!(
            "an earlier provision of instance {} may still be running; asking the instance again in {} s",
            row.id,
            after.as_secs()
        );
        return Err(JobError::Retry { message, after: Some(after) });
    }
    match instances::note_provision_sent(&ctx.db, &row.id, job.lease(), true).await? {
        Some(_) => Ok(()),
        None => Err(JobError::permanent(format!("instance {} was taken away before its provision", row.id))),
    }
}

/// The provision may have acted (a 409 says an earlier one did): the instance's own
/// report of its conversation completes the claim; without one it is `crashed`.
async fn settle_after_error(
    args: &ClaimAndProvision,
    ctx: &Ctx,
    job: &JobMeta,
    row: &InstanceRow,
    url: &str,
    err: &UpstreamError,
) -> Result<ClaimResult, JobError> {
    if let Ok(Some(bound)) = bound_conversation(args, ctx, url).await {
        tracing::info!(instance_id = %row.id, error = %err, "provision failed but the instance is bound; claim completed");
        return complete(args, ctx, job, row, &bound).await;
    }
    let message = format!("provision of instance {} failed: {err}", row.id);
    if !instances::crash_held_claim(&ctx.db, &row.id, job.lease(), &message).await? {
        // A stale run (its job taken back) stops here; else someone moved the row.
        checkpoint(ctx, job).await?;
    }
    Err(JobError::permanent(message))
}

/// Gives `row` back to the pool (its instance provably did nothing), under the
/// run's lease. A stale run stops here, changing nothing; a row someone else moved
/// meanwhile is simply not ours to give back.
async fn release(ctx: &Ctx, job: &JobMeta, row: &InstanceRow) -> Result<(), JobError> {
    if !instances::release_held_claim(&ctx.db, &row.id, job.lease()).await? {
        checkpoint(ctx, job).await?;
    }
    Ok(())
}

/// What `GET /convos/status` says the instance is bound to, as a provision answer.
async fn bound_conversation(
    args: &ClaimAndProvision,
    ctx: &Ctx,
    url: &str,
) -> Result<Option<Provisioned>, UpstreamError> {
    let status = ctx.instances.convos_status(url).await?;
    Ok(status.conversation.map(|conversation| Provisioned {
        invite_url: None,
        conversation_id: Some(conversation.id),
        joined: args.join_url.is_some(),
    }))
}

/// Binds the row and records the job's success in one statement, with the
/// replenish every claim enqueues; a run that lost its job changes nothing.
async fn complete(
    args: &ClaimAndProvision,
    ctx: &Ctx,
    job: &JobMeta,
    row: &InstanceRow,
    bound: &Provisioned,
) -> Result<ClaimResult, JobError> {
    let mut claimed = row.clone();
    claimed.invite_url = bound.invite_url.clone();
    let value = serde_json::to_value(claim_result(&claimed, bound.conversation_id.as_deref(), Some(bound.joined)))
        .map_err(|e| JobError::permanent(format!("cannot encode the claim result: {e}")))?;
    let binding = Binding {
        conversation_id: bound.conversation_id.as_deref(),
        invite_url: bound.invite_url.as_deref(),
        agent_name: &args.agent_name,
        instructions: &args.instructions,
        join_url: args.join_url.as_deref(),
    };
    let top_up = queue::top_up_job(&ctx.config.jobs);
    match instances::complete_held_claim(&ctx.db, &row.id, job.lease(), &binding, &value, &top_up).await? {
        Completed::Done(applied) => {
            crate::metrics::runs_recorded(std::slice::from_ref(&applied));
            let conversation_id = bound.conversation_id.as_deref().unwrap_or("(awaiting acceptance)");
            tracing::info!(instance_id = %row.id, conversation_id, "instance claimed");
            Err(JobError::Recorded)
        }
        Completed::Lost => Err(JobError::Lost),
        Completed::Moved => match instances::get(&ctx.db, &row.id).await? {
            // An earlier run of this job bound it already (it ran twice).
            Some(now) if now.status() == InstanceStatus::Claimed && now.claim_job_id.as_deref() == Some(&job.id) => {
                Ok(claim_result(&now, now.conversation_id.as_deref(), None))
            }
            // Someone moved the row (a kill) while the instance was binding.
            _ => Err(JobError::permanent(format!("instance {} was taken away during provisioning", row.id))),
        },
    }
}

fn claim_result(row: &InstanceRow, conversation_id: Option<&str>, joined: Option<bool>) -> ClaimResult {
    ClaimResult {
        instance_id: row.id.to_string(),
        invite_url: row.invite_url.clone(),
        conversation_id: conversation_id.map(str::to_owned),
        joined: joined.unwrap_or(row.join_url.is_some()),
        // A join answered without a conversation awaits the other side.
        awaiting_acceptance: conversation_id.is_none() && joined.unwrap_or(row.join_url.is_some()),
        gateway_url: row.url.clone(),
    }
}
