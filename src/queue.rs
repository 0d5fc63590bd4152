//! Enqueueing Pool's jobs and describing them to clients. Used by both entry layers
//! (web and worker); always takes a connection so callers can enqueue inside the
//! transaction of the row change the job belongs to.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::{
    config::JobsConfig,
    domain::{InstanceId, JobId},
    jobs::{
        Job, check_ready::CheckReady, provision_instance::ProvisionInstance, reconcile::Reconcile, replenish::Replenish,
    },
    store::jobs::{self, Enqueued, JobRow, NewJob},
};

/// Dedupe key of jobs that must exist at most once while queued or running.
pub const SINGLETON: &str = "singleton";

/// A job of kind `J` with `payload`, ready to insert.
pub fn new_job<J: Job>(payload: &J, config: &JobsConfig) -> NewJob {
    let args = serde_json::to_value(payload).expect("job payloads serialize");
    NewJob::new(J::KIND, args, config.max_attempts_for(J::KIND))
}

/// Enqueues `payload` on `conn`.
pub async fn enqueue<J: Job>(conn: &mut PgConnection, payload: &J, config: &JobsConfig) -> sqlx::Result<Enqueued> {
    jobs::enqueue(conn, &new_job(payload, config)).await
}

/// The provision of one instance, at most one queued or running per instance (so a
/// re-drive never doubles it).
pub fn provision_job(instance_id: &InstanceId, config: &JobsConfig) -> NewJob {
    new_job(&ProvisionInstance { instance_id: instance_id.to_string() }, config).dedupe(instance_id.as_str())
}

/// Rounds of `check_ready` before it leaves the rest to reconcile (~5 minutes).
pub const CHECK_READY_ROUNDS: i32 = 100;

/// The readiness follow-up, a singleton while queued or running; its rounds are its
/// attempts, whatever `JOB_MAX_ATTEMPTS` says.
pub fn check_ready_job() -> NewJob {
    let args = serde_json::to_value(CheckReady {}).expect("job payloads serialize");
    NewJob::new(CheckReady::KIND, args, CHECK_READY_ROUNDS as u32 + 1).dedupe(SINGLETON)
}

/// A top-up replenish, a singleton while queued or running.
pub fn replenish_job(config: &JobsConfig) -> NewJob {
    new_job(&Replenish { count: None }, config).dedupe(SINGLETON)
}

/// How long after a claim its top-up starts: the claims of a burst share one
/// replenish (a singleton while queued) instead of each running its own, a refill
/// this much later than at once (an instance takes far longer to build).
pub const TOP_UP_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// The top-up a claim leaves behind: a replenish starting [`TOP_UP_DELAY`] later.
pub fn top_up_job(config: &JobsConfig) -> NewJob {
    replenish_job(config).after(TOP_UP_DELAY)
}

/// A reconcile, a singleton while queued or running (at most one runs).
pub fn reconcile_job(config: &JobsConfig) -> NewJob {
    new_job(&Reconcile {}, config).dedupe(SINGLETON)
}

/// Enqueues a top-up replenish unless one is already queued or running.
pub async fn enqueue_replenish(conn: &mut PgConnection, config: &JobsConfig) -> sqlx::Result<Enqueued> {
    jobs::enqueue(conn, &replenish_job(config)).await
}

/// The job document of SPEC §3.2.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDoc {
    #[schema(value_type = String)]
    pub id: JobId,
    pub kind: String,
    pub status: jobs::JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    #[schema(value_type = Object)]
    pub args: Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub run_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every run with its outcome and error, oldest first (`GET /api/jobs/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<jobs::Attempt>>,
}

impl From<JobRow> for JobDoc {
    fn from(row: JobRow) -> Self {
        Self {
            status: row.state,
            args: row.args,
            result: row.result,
            error: row.error,
            created_at: Some(row.created_at),
            started_at: row.started_at.filter(|_| row.state != jobs::JobState::Queued),
            finished_at: row.finished_at,
            id: row.id,
            kind: row.kind,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            history: None,
            run_at: row.run_at,
        }
    }
}
