//! Reconcile's writes: one decided [`Action`] carried out on one row, and what of it
//! was applied ([`Applied`]), for the report.

use super::rules::Action;
use crate::{
    domain::InstanceStatus,
    jobs::{Ctx, JobError, removal::destroy_and_delete},
    store::instances::{self, InstanceRow},
};

/// What reconcile changed on one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    BecameIdle,
    Crashed,
    Recovered,
    SettledClaim,
    ReleasedClaim,
    /// A claim (or an adopted row) no job owns, given up as `crashed`.
    AbandonedClaim,
    Drained,
    Destroyed,
    Vanished,
    MissingCounted,
    ConversationFilled,
}

impl Applied {
    /// The change a directly applied action made.
    fn of(action: Action) -> Self {
        match action {
            Action::Crash(_) => Self::Crashed,
            Action::CheckRecovery => Self::Recovered,
            Action::Drain(_) => Self::Drained,
            Action::Destroy => Self::Destroyed,
            Action::Vanished => Self::Vanished,
            Action::MarkMissing => Self::MissingCounted,
            Action::AbandonClaim(_) => Self::AbandonedClaim,
            Action::FillConversation => Self::ConversationFilled,
            Action::None | Action::CheckHealth { .. } | Action::ResolveClaim { .. } => Self::Nothing,
        }
    }
}

/// Carries out `action` on `row`, each write compare-and-set on the status this run
/// observed; returns what was applied.
pub async fn execute(ctx: &Ctx, row: &InstanceRow, action: Action) -> Result<Applied, JobError> {
    use InstanceStatus::*;
    let id = &row.id;
    let url = row.url.as_deref().unwrap_or_default();
    let applied = match action {
        Action::None => true,
        Action::CheckHealth { stuck } => match ctx.instances.health(url).await {
            Ok(health) if health.ready => return become_idle(ctx, row, stuck).await,
            _ if stuck => {
                return Box::pin(execute(ctx, row, Action::Drain("not ready before the stuck timeout"))).await;
            }
            _ => return Ok(Applied::Nothing),
        },
        Action::Crash(reason) => instances::transition(&ctx.db, id, &[Claimed], Crashed, Some(reason)).await?,
        Action::Drain(reason) => {
            let moved = instances::transition(&ctx.db, id, &[Provisioning, Idle], Draining, Some(reason)).await?;
            if moved {
                destroy_and_delete(ctx, &row.id).await?;
            }
            moved
        }
        Action::Destroy => {
            destroy_and_delete(ctx, &row.id).await?;
            true
        }
        // A bound instance's row is its user's only record: its absence is confirmed
        // by id first (SPEC §2.2).
        Action::Vanished
            if matches!(row.status(), Claimed | Crashed | Claiming) && !confirmed_absent(ctx, row).await =>
        {
            false
        }
        Action::Vanished => free_at_services(ctx, &row.id).await && delete_vanished(ctx, row).await?,
        Action::MarkMissing => {
            instances::mark_missing(&ctx.db, id).await?;
            true
        }
        Action::CheckRecovery => recover(ctx, row).await?,
        Action::FillConversation => fill_conversation(ctx, row).await?,
        Action::ResolveClaim { stuck } => return resolve_stuck_claim(ctx, row, stuck).await,
        Action::AbandonClaim(reason) => instances::transition(&ctx.db, id, &[Claiming], Crashed, Some(reason)).await?,
    };
    Ok(if applied { Applied::of(action) } else { Applied::Nothing })
}

/// Whether `/status/batch` asked for `row`'s id alone confirms its service is gone
/// (an error confirms nothing). With a recorded service id only that service
/// counts: a duplicate of the id is an orphan, not the row's service.
async fn confirmed_absent(ctx: &Ctx, row: &InstanceRow) -> bool {
    match crate::jobs::listing::services_of(ctx, &row.id).await {
        Ok(listed) => match row.service_id.as_deref() {
            Some(own) => !listed.iter().any(|s| s.service_id.as_deref() == Some(own)),
            None => listed.is_empty(),
        },
        Err(err) => {
            tracing::warn!(instance_id = %row.id, error = %err, "could not confirm a vanished service; row kept");
            false
        }
    }
}

/// Destroys a vanished service's id at the services API, which frees its row there
/// and the instance's tool resources (404: it holds none). False, keeping Pool's
/// row for the next reconcile, when services failed.
async fn free_at_services(ctx: &Ctx, id: &crate::domain::InstanceId) -> bool {
    match ctx.services.destroy(id).await {
        Ok(_) | Err(crate::upstream::UpstreamError::NotFound { .. }) => true,
        Err(err) => {
            tracing::warn!(instance_id = %id, error = %err, "could not free a vanished instance at services; row kept");
            false
        }
    }
}

async fn delete_vanished(ctx: &Ctx, row: &InstanceRow) -> sqlx::Result<bool> {
    instances::delete_vanished(&ctx.db, &row.id, row.status.as_str()).await
}

/// Records the conversation a claimed instance reports, once it knows it.
async fn fill_conversation(ctx: &Ctx, row: &InstanceRow) -> Result<bool, JobError> {
    let url = row.url.as_deref().unwrap_or_default();
    match ctx.instances.convos_status(url).await {
        Ok(status) => match status.conversation {
            Some(conversation) => Ok(instances::fill_conversation(&ctx.db, &row.id, &conversation.id).await?),
            None => Ok(false),
        },
        Err(_) => Ok(false),
    }
}

/// `provisioning` → `idle` for a ready instance. A row Pool did not create itself
/// (adopted, or from the original service) may already be bound: ask the instance
/// first, and record a binding as `claimed` instead of handing the instance out.
async fn become_idle(ctx: &Ctx, row: &InstanceRow, stuck: bool) -> Result<Applied, JobError> {
    use InstanceStatus::*;
    if row.created_by_job.is_none() {
        let url = row.url.as_deref().unwrap_or_default();
        let status = match ctx.instances.convos_status(url).await {
            Ok(status) => status,
            // It may be bound: never handed out, never destroyed; an operator decides.
            Err(_) if stuck => {
                let reason = "adopted instance does not report its binding";
                let moved = instances::transition(&ctx.db, &row.id, &[Provisioning], Crashed, Some(reason)).await?;
                return Ok(if moved { Applied::AbandonedClaim } else { Applied::Nothing });
            }
            Err(_) => return Ok(Applied::Nothing),
        };
        if let Some(conversation) = status.conversation {
            let bound = instances::adopt_bound(&ctx.db, &row.id, &conversation.id).await?;
            tracing::info!(instance_id = %row.id, conversation_id = %conversation.id, "adopted instance is already bound");
            return Ok(if bound { Applied::SettledClaim } else { Applied::Nothing });
        }
    }
    let Some(ready) = instances::lead::become_idle(&ctx.db, &row.id).await? else { return Ok(Applied::Nothing) };
    if let Some(lead) = ready.lead {
        crate::metrics::instance_ready(lead);
    }
    Ok(Applied::BecameIdle)
}

/// `crashed` → `claimed` only if the instance reports the same conversation.
async fn recover(ctx: &Ctx, row: &InstanceRow) -> Result<bool, JobError> {
    let (Some(url), Some(conversation_id)) = (row.url.as_deref(), row.conversation_id.as_deref()) else {
        return Ok(false);
    };
    match ctx.instances.convos_status(url).await {
        Ok(status) if status.conversation.as_ref().is_some_and(|c| c.id == conversation_id) => {
            Ok(instances::recover_crashed(&ctx.db, &row.id, conversation_id).await?)
        }
        _ => Ok(false),
    }
}

/// A `claiming` row no live job holds: bound → `claimed`; unbound and ready → `idle`.
async fn resolve_stuck_claim(ctx: &Ctx, row: &InstanceRow, stuck: bool) -> Result<Applied, JobError> {
    let url = row.url.as_deref().unwrap_or_default();
    let abandon = || {
        Box::pin(execute(ctx, row, Action::AbandonClaim("claim abandoned; the instance does not report its binding")))
    };
    let Ok(status) = ctx.instances.convos_status(url).await else {
        return if stuck { abandon().await } else { Ok(Applied::Nothing) };
    };
    let holder = row.claim_job_id.as_ref();
    match status.conversation {
        Some(conversation) => {
            let done = instances::settle_stuck_claim(&ctx.db, &row.id, holder, &conversation.id).await?;
            Ok(if done { Applied::SettledClaim } else { Applied::Nothing })
        }
        None if status.ready => {
            let done = instances::release_claim(&ctx.db, &row.id, holder).await?;
            Ok(if done { Applied::ReleasedClaim } else { Applied::Nothing })
        }
        None if stuck => abandon().await,
        None => Ok(Applied::Nothing),
    }
}
