//! `check_ready`: instances become claimable within seconds of being ready, not at
//! the next reconcile tick. Each round asks for the deploys of every instance being
//! created in one status call and health-checks the finished ones into the pool
//! (the rules and writes are reconcile's); while any are still building it runs
//! again after a short backoff, for a bounded number of rounds. Reconcile stays the
//! safety net, and handles everything else (dead deploys, stuck rows, vanished ones).

use std::time::Duration;

use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Ctx, Job, JobError, JobMeta, checkpoint,
    listing::Owners,
    reconcile::{
        apply::{Applied, execute},
        rules::{Action, decide},
    },
};
use crate::{domain::InstanceId, queue::CHECK_READY_ROUNDS as MAX_ROUNDS, store::instances};

/// Follows instances that are being created: checks their deploys with one status
/// call per round, health-checks the finished ones into the pool, and repeats with
/// backoff while any are still building (reconcile remains the safety net).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckReady {}

/// `check_ready`: instances being created that this round found, and made idle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckReadyResult {
    pub checked: usize,
    pub became_idle: usize,
    /// Still deploying when the follow-up ended (reconcile takes over).
    pub building: usize,
}

/// Health checks made at once.
const CHECK_CONCURRENCY: usize = 16;

/// 0.5 s, 1 s, 2 s, then every 3 s.
fn backoff(round: i32) -> Duration {
    let exp = u32::try_from(round.clamp(1, 4) - 1).unwrap_or_default();
    Duration::from_millis(500 * 2_u64.pow(exp)).min(Duration::from_secs(3))
}

impl Job for CheckReady {
    const KIND: super::JobKind = super::JobKind::new("check_ready");
    type Output = CheckReadyResult;

    /// A singleton: one round checks every instance being created.
    fn slots(_: &crate::config::JobsConfig) -> usize {
        1
    }

    async fn run(self, ctx: &Ctx, job: &JobMeta) -> Result<CheckReadyResult, JobError> {
        let rows = instances::being_created(&ctx.db).await?;
        if rows.is_empty() {
            return Ok(CheckReadyResult::default());
        }
        let ids: Vec<InstanceId> = rows.iter().map(|r| r.id.clone()).collect();
        let batch = ctx.services.status_batch(Some(&ids)).await?;
        checkpoint(ctx, job).await?;
        let owners = Owners::new(&batch.services);
        // The image, first of all: it tells which release new instances run.
        super::reconcile::observe_batch(ctx, &rows, &owners).await?;
        let age = Duration::ZERO; // stuck rows are reconcile's to drain
        let checks: Vec<_> = rows
            .iter()
            .filter_map(|row| {
                let action = decide(row, owners.owned_by(row), false, age, ctx.config.stuck_timeout);
                matches!(action, Action::CheckHealth { .. }).then(|| (row.clone(), action))
            })
            .collect();
        let building = rows.len() - checks.len();
        let applied: Vec<_> = stream::iter(checks)
            .map(|(row, action)| async move { execute(ctx, &row, action).await })
            .buffer_unordered(CHECK_CONCURRENCY)
            .collect()
            .await;
        let became_idle = applied.iter().filter(|a| matches!(a, Ok(Applied::BecameIdle))).count();
        let pending = rows.len() - became_idle;
        // Services that appeared during this round: their provisions found this job
        // running and enqueued no other, so this job follows them too.
        let appeared = instances::being_created(&ctx.db).await?.iter().filter(|r| !ids.contains(&r.id)).count();
        if (pending > 0 || appeared > 0) && job.fence < MAX_ROUNDS {
            let after = backoff(job.fence);
            let note = format!("{pending} instances not ready yet ({building} still deploying), {appeared} new");
            return Err(JobError::Again { note, after });
        }
        Ok(CheckReadyResult { checked: rows.len(), became_idle, building })
    }
}
