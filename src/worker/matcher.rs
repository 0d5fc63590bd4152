//! Binds instances to claims waiting for capacity: every worker runs this loop, and
//! each pass binds the oldest waiting claims to the oldest idle instances (on the
//! current image first) in one
//! statement (`SKIP LOCKED`: passes of several workers never bind one twice). When
//! claims still wait and fewer instances are on their way than claims, a replenish
//! is enqueued at once rather than at the next tick. And while instances are being
//! created, a readiness follow-up (`check_ready`) exists: a provision that finished
//! while the last round was ending found it still running and enqueued none.

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::{Notify, watch};

use super::Ctx;
use crate::{
    queue,
    store::{
        instances,
        jobs::{self, claim},
    },
};

/// Between passes: how long an instance that became idle may wait for its claim.
const PASS_EVERY: Duration = Duration::from_millis(250);
/// Notified by the job table's insert trigger when a waiting claim is inserted.
const CHANNEL: &str = "pool_claims_waiting";
/// About as long as `check_ready`'s rounds.
const FOLLOW_UP_WINDOW: Duration = Duration::from_secs(300);

/// Passes every [`PASS_EVERY`] while claims wait or instances are being created;
/// otherwise sleeps until a waiting claim is inserted (`pool_claims_waiting`) or
/// `JOB_MATCH_IDLE_MS` passes, so an idle worker costs the database next to nothing.
pub async fn run(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(ctx.db.clone(), wake.clone()));
    loop {
        let busy = pass(&ctx).await.unwrap_or_else(|err| {
            tracing::warn!(error = %err, "could not bind waiting claims; retrying");
            true
        });
        let pause = if busy { PASS_EVERY } else { ctx.config.jobs.match_idle };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    listener.abort();
}

/// One pass; whether there is work for the next one soon (claims wait, or instances
/// are being created).
async fn pass(ctx: &Ctx) -> sqlx::Result<bool> {
    let waiting = claim::waiting_count(&ctx.db).await? > 0;
    if waiting {
        for (job_id, instance_id) in claim::bind_waiting(&ctx.db, ctx.config.target_image.as_deref()).await? {
            tracing::info!(job_id = %job_id, instance_id = %instance_id, "waiting claim bound to an instance");
        }
        if claim::short_for_waiting(&ctx.db).await? {
            jobs::enqueue_unless_held(&ctx.db, &queue::replenish_job(&ctx.config.jobs)).await?;
        }
    }
    // Younger than the follow-up's rounds last: older ones are reconcile's.
    let creating = instances::any_being_created(&ctx.db, FOLLOW_UP_WINDOW).await?;
    if creating {
        jobs::enqueue_unless_held(&ctx.db, &queue::check_ready_job()).await?;
    }
    Ok(waiting || creating)
}

/// Wakes the matcher when a waiting claim is inserted; reconnects after outages
/// (waking it then too: a notification may have been missed).
async fn listen(db: PgPool, wake: Arc<Notify>) {
    loop {
        let listening = match PgListener::connect_with(&db).await {
            Ok(mut listener) => listener.listen(CHANNEL).await.map(|()| listener),
            Err(err) => Err(err),
        };
        match listening {
            Ok(mut listener) => {
                wake.notify_one();
                while let Ok(Some(_)) = listener.try_recv().await {
                    wake.notify_one();
                }
                tracing::warn!("matcher listener lost its connection; reconnecting");
            }
            Err(err) => tracing::warn!(error = %err, "matcher listener cannot LISTEN; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
