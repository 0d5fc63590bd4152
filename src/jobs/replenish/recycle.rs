//! Fresh instances: idle ones older than `POOL_IDLE_MAX_AGE`, or on another image
//! than the current one, are replaced make-before-break, a few per replenish. A
//! stale instance does not count toward the warm target, so replenish creates its
//! replacement (within `POOL_MAX_WARM`, which stale ones count toward); it is drained
//! only once a fresh idle instance stands in for it and the pool keeps its target
//! without it. Claimed instances are never touched (the move to `draining` is
//! compare-and-set on `idle`).

use sqlx::PgConnection;

use crate::{
    config::JobsConfig,
    domain::InstanceId,
    jobs::{Ctx, JobError, kill_instance::KillInstance},
    queue, store,
    store::instances::recycle::{self, Staleness},
};

/// Stale instances replaced at once (bounds the extra instances a recycle costs).
const PER_RUN: i64 = 5;

/// The stale idle instances, with the oldest this run replaces.
pub async fn survey(ctx: &Ctx) -> Result<Staleness, JobError> {
    let (image, age) = (ctx.config.target_image.as_deref(), ctx.config.idle_max_age);
    Ok(recycle::stale_idle(&ctx.db, image, age, PER_RUN).await?)
}

/// How many of `s.oldest` may go now: each needs a fresh idle instance standing in
/// for it, and the idle count stays at `target` or above.
pub fn retirable(s: &Staleness, target: u32) -> usize {
    let spare = s.stale + s.fresh - i64::from(target);
    usize::try_from(spare.min(s.fresh).max(0)).unwrap_or_default().min(s.oldest.len())
}

/// Moves the retirable stale instances to `draining` and enqueues their removal, in
/// one transaction; returns their ids.
pub async fn retire(ctx: &Ctx, s: &Staleness, target: u32) -> Result<Vec<InstanceId>, JobError> {
    let ids = s.oldest[..retirable(s, target)].to_vec();
    if ids.is_empty() {
        return Ok(ids);
    }
    let config = ctx.config.jobs.clone();
    let retired = store::transaction(&ctx.db, move |tx| {
        Box::pin(async move {
            let retired = recycle::retire(&mut *tx, &ids, "recycled: replaced by a fresh instance").await?;
            enqueue_kills(tx, &retired, &config).await?;
            Ok(retired)
        })
    })
    .await?;
    if !retired.is_empty() {
        tracing::info!(retired = retired.len(), stale = s.stale, "recycled stale idle instances");
    }
    Ok(retired)
}

/// Enqueues the removal of rows just moved to `draining` (`kill_instance`: destroy,
/// then delete; a destroy that leaves the service running leaves an orphan, shown),
/// in the caller's transaction.
pub async fn enqueue_kills(tx: &mut PgConnection, ids: &[InstanceId], config: &JobsConfig) -> sqlx::Result<()> {
    for id in ids {
        let kill = queue::new_job(&KillInstance { instance_id: id.to_string() }, config);
        store::jobs::enqueue(&mut *tx, &kill).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staleness(stale: i64, fresh: i64) -> Staleness {
        let oldest = (0..stale.min(PER_RUN)).map(|_| InstanceId::generate()).collect();
        Staleness { oldest, stale, fresh }
    }

    #[test]
    fn a_stale_instance_goes_only_when_a_fresh_one_stands_in_and_the_target_holds() {
        assert_eq!(retirable(&staleness(3, 0), 3), 0, "no replacement yet");
        assert_eq!(retirable(&staleness(3, 2), 3), 2);
        assert_eq!(retirable(&staleness(3, 3), 3), 3);
        assert_eq!(retirable(&staleness(3, 5), 6), 2, "the target holds");
        assert_eq!(retirable(&staleness(9, 9), 0), 5, "a few per run");
    }
}
