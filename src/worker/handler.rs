//! What a job handler returns and how its outcome becomes the job's state: success,
//! a durable retry with exponential backoff and jitter (or the upstream's
//! `Retry-After`), or a permanent failure that fails the job at once.

use std::{future::Future, time::Duration};

use pool_jobs::Job;
use serde_json::Value;

use super::Ctx;
use crate::{
    store::jobs::{self, Outcome},
    upstream::{Next, UpstreamError},
};

/// First retry delay; doubles per attempt.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Identity of the running job.
#[derive(Clone, Debug)]
pub struct JobMeta {
    pub id: String,
    /// Attempts already made before this one.
    pub attempt: usize,
}

/// Why a handler run failed, by what happens next.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later (backoff, or `after` when the upstream said so).
    #[error("{message}")]
    Retry { message: String, after: Option<Duration> },
    /// Repeating cannot help; fail the job now.
    #[error("{0}")]
    Permanent(String),
    /// An operator cancelled the job; it stopped at a safe point.
    #[error("cancelled by operator")]
    Cancelled,
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry { message: message.into(), after: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }
}

impl From<UpstreamError> for JobError {
    fn from(err: UpstreamError) -> Self {
        match err.next() {
            Next::Retry { after } => Self::Retry { message: err.to_string(), after },
            Next::GiveUp | Next::Gone => Self::Permanent(err.to_string()),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(err: sqlx::Error) -> Self {
        Self::retry(format!("database error: {err}"))
    }
}

/// A job kind's behaviour. Every implementation must be idempotent: it may run again
/// after a crash at any point and must converge to the same end state.
pub trait Handler: Job + Sized + Clone + Unpin {
    fn run(self, ctx: &Ctx, job: &JobMeta) -> impl Future<Output = Result<Value, JobError>> + Send;
}

/// A safe point: stops the run if an operator cancelled the job.
pub async fn checkpoint(ctx: &Ctx, job: &JobMeta) -> Result<(), JobError> {
    if jobs::cancel_requested(&ctx.db, &job.id).await? { Err(JobError::Cancelled) } else { Ok(()) }
}

/// Exponential backoff with full jitter in the upper half: 1 s, 2 s, 4 s … ≤ 5 min.
pub fn backoff(attempt: usize) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(BACKOFF_CAP);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    capped.mul_f64(jitter).max(Duration::from_millis(500))
}

/// Writes the outcome of a run; logs when the job was taken away meanwhile.
pub async fn settle(ctx: &Ctx, meta: &JobMeta, worker: &str, kind: &str, outcome: Result<Value, JobError>) {
    let outcome = match outcome {
        Ok(value) => Outcome::Succeeded(value),
        Err(JobError::Permanent(error)) => Outcome::Permanent(error),
        Err(JobError::Cancelled) => Outcome::Cancelled,
        Err(JobError::Retry { message, after }) => {
            let delay = after.unwrap_or_else(|| backoff(meta.attempt)).min(BACKOFF_CAP);
            Outcome::Retryable { error: message, delay_ms: delay.as_millis() as i64 }
        }
    };
    match &outcome {
        Outcome::Succeeded(_) => tracing::info!(job_id = %meta.id, kind, "job succeeded"),
        Outcome::Retryable { error, delay_ms } => {
            tracing::warn!(job_id = %meta.id, kind, error, delay_ms, "job attempt failed")
        }
        Outcome::Permanent(error) => tracing::error!(job_id = %meta.id, kind, error, "job failed permanently"),
        Outcome::Cancelled => tracing::info!(job_id = %meta.id, kind, "job cancelled"),
    }
    for _ in 0..5 {
        match jobs::finish(&ctx.db, &meta.id, worker, &outcome).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(job_id = %meta.id, kind, "job was taken from this worker; outcome dropped");
                return;
            }
            Err(err) => {
                tracing::warn!(job_id = %meta.id, kind, error = %err, "could not record job outcome; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
