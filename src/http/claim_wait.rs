//! A claim that found no idle instance and asked to wait (`Prefer: wait=N`): its job
//! waits in the queue, first in first out across every replica, until a worker binds
//! the next idle instance to it. At N it ends `no_idle_instance` having reserved
//! nothing; a client that leaves earlier takes its claim out of the line.

use std::time::Duration;

use axum::response::Response;
use sqlx::PgPool;

use super::{AppState, error::ApiError, respond::respond, wait::Subscription};
use crate::{
    domain::JobId,
    store::{JobState, jobs::lifecycle},
};

/// How much longer a claim bound at the last moment may take to finish before the
/// answer is 202 (the client then follows the job).
const BOUND_SLACK: Duration = Duration::from_secs(10);

/// Waits for the claim's job; answers as every job-creating endpoint does, or 503
/// `no_idle_instance` when no instance was bound within `wait`.
pub async fn respond_when_bound(
    state: &AppState,
    mut subscription: Subscription,
    id: &JobId,
    wait: Duration,
) -> Result<Response, ApiError> {
    let mut line = InLine { db: state.db.clone(), id: Some(id.clone()) };
    let mut doc = subscription.wait_more(&state.db, id, wait, false).await?;
    if !doc.as_ref().is_some_and(|d| d.status.is_finished()) {
        let expired =
            Box::pin(lifecycle::stop_waiting(&state.db, id, JobState::Failed, lifecycle::NO_IDLE_IN_TIME)).await?;
        // Out of the line either way: expired now, or bound meanwhile.
        line.id = None;
        if expired {
            tracing::info!(job_id = %id, wait_secs = wait.as_secs(), "waiting claim expired");
            return Err(no_idle(wait));
        }
        // Its binding takes a moment.
        doc = subscription.wait_more(&state.db, id, BOUND_SLACK, true).await?;
    }
    line.id = None;
    // The binding loop ended it in line first (this process was slow to): no run, no instance.
    if doc.as_ref().is_some_and(|d| d.status == JobState::Failed && d.attempts == 0) {
        tracing::info!(job_id = %id, wait_secs = wait.as_secs(), "waiting claim expired");
        return Err(no_idle(wait));
    }
    respond(doc, id)
}

fn no_idle(wait: Duration) -> ApiError {
    ApiError::Unavailable {
        code: "no_idle_instance",
        message: format!("no instance became idle within {} s; the pool is replenishing", wait.as_secs()),
    }
}

/// A claim in the line for an instance. Dropped while still armed (the client went
/// away): the claim leaves the line, unless an instance was bound to it already.
struct InLine {
    db: PgPool,
    id: Option<JobId>,
}

impl Drop for InLine {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let db = self.db.clone();
        tokio::spawn(async move {
            let left = "the client went away while waiting for an instance";
            match lifecycle::stop_waiting(&db, &id, JobState::Cancelled, left).await {
                Ok(true) => tracing::info!(job_id = %id, "abandoned waiting claim left the line"),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(job_id = %id, error = %err, "could not withdraw an abandoned claim; it expires")
                }
            }
        });
    }
}
