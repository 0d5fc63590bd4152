//! What a job handler reaches ([`Ctx`]) and returns, and which outcome that records:
//! success, a durable retry with exponential backoff and jitter (later still when the
//! upstream's `Retry-After` says so), or a permanent failure that fails the job at once.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::watch;

use super::lease::LeaseClock;
use crate::{
    config::Config,
    domain::text::{storable, storable_json},
    domain::{InvalidInstanceId, JobId},
    instance::InstanceClient,
    services::{ServicesClient, Throttle},
    store::jobs::lifecycle::{self, Lease, Outcome},
    upstream::{Next, UpstreamError},
};

/// First retry delay; doubles per attempt.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Timeout of instance calls other than provision.
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a handler can reach.
pub struct Ctx {
    /// The worker's pool: handlers, fetches and outcomes.
    pub db: PgPool,
    pub config: Arc<Config>,
    pub services: ServicesClient,
    pub instances: InstanceClient,
    /// Woken when a waiting claim is inserted (`pool_claims_waiting`, received by the
    /// runtime's one LISTEN connection): the binding loop sleeps on it while no claim waits.
    pub claims_waiting: Arc<tokio::sync::Notify>,
}

impl Ctx {
    /// Clients paced as configured: services calls by the limit shared across
    /// replicas, instance calls per process.
    pub fn new(config: Config, db: PgPool, stopping: watch::Receiver<bool>) -> Self {
        let jobs = &config.jobs;
        let max_pause = config.services.max_pause;
        let (per_sec, burst) = (jobs.services_rate_per_sec, jobs.services_rate_burst);
        let throttle = Throttle::shared(db.clone(), per_sec, burst, stopping, max_pause);
        let services = ServicesClient::new(&config.services, throttle);
        let instance_throttle = Throttle::per_key(jobs.instance_rate_per_sec);
        let instances = InstanceClient::new(
            config.keys.instance().clone(),
            INSTANCE_TIMEOUT,
            jobs.provision_timeout,
            instance_throttle,
        );
        let claims_waiting = Arc::new(tokio::sync::Notify::new());
        Self { db, config: Arc::new(config), services, instances, claims_waiting }
    }
}

/// Identity of the running job.
#[derive(Clone, Debug)]
pub struct JobMeta {
    pub id: JobId,
    /// This run's attempt number, which fences its writes ([`checkpoint`]).
    pub fence: i32,
    /// Whether an earlier run of this job ever started (also before an operator
    /// retry): such a run may meet its own earlier side effects. From a counter that
    /// a lost commit can reset: a handler whose re-run must not repeat an effect
    /// also records that effect durably (a claim's provision, on its row).
    pub rerun: bool,
    /// The worker process running it.
    pub worker: Arc<str>,
    /// That process's view of its lease: past half the rescue window without a
    /// heartbeat, the run stops at its next safe point.
    pub liveness: Arc<LeaseClock>,
    /// What the fetch read and wrote for this run: a claim's row and its provision
    /// note (`store::instances::HeldClaim` as JSON).
    pub prefetched: Option<Value>,
}

impl JobMeta {
    /// This run's lease on its job, which fences its writes.
    pub fn lease(&self) -> Lease<'_> {
        Lease { job_id: &self.id, attempt: self.fence, worker: &self.worker }
    }

    /// Errs (a retry, written once the database answers) when this worker's lease
    /// lapsed: no heartbeat for half the rescue window, so others may take the job
    /// any moment. Asks nothing of the database (it may be what is away).
    pub fn lease_holds(&self) -> Result<(), JobError> {
        match self.liveness.lapsed() {
            None => Ok(()),
            Some(silent) => {
                crate::metrics::run_stopped("lease_lapsed");
                Err(JobError::retry(format!(
                    "this worker's lease lapsed (no heartbeat for {} ms); the run stopped at a safe point",
                    silent.as_millis()
                )))
            }
        }
    }

    /// Attempts already made before this one in the job's current lifetime.
    pub fn earlier_attempts(&self) -> usize {
        usize::try_from(self.fence - 1).unwrap_or_default()
    }
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
    /// Not done yet, as expected: run again after `after` (a follow-up that polls).
    /// Uses an attempt, but is neither logged nor kept as a failure.
    #[error("{note}")]
    Again { note: String, after: Duration },
    /// An operator cancelled the job; it stopped at a safe point.
    #[error("cancelled by operator")]
    Cancelled,
    /// This run no longer holds the job (its worker was presumed dead and another run
    /// replaced it): it stops and records nothing.
    #[error("the run lost its job to a newer run")]
    Lost,
    /// The handler recorded its own success together with its last change (claims).
    #[error("outcome already recorded")]
    Recorded,
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry { message: message.into(), after: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }
}

/// A payload's instance id: one that cannot be an instance's fails the job for good.
impl From<InvalidInstanceId> for JobError {
    fn from(err: InvalidInstanceId) -> Self {
        Self::permanent(err.to_string())
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

/// A safe point: stops the run if an operator cancelled the job, if this run lost
/// the job to a newer one (it must change nothing more), or if its worker's lease
/// lapsed (no heartbeat for half the rescue window: others may take the job any
/// moment). The last is a retry, written once the database answers again.
pub async fn checkpoint(ctx: &Ctx, job: &JobMeta) -> Result<(), JobError> {
    job.lease_holds()?;
    match lifecycle::hold(&ctx.db, &job.id, job.fence, &job.worker).await? {
        None => Err(JobError::Lost),
        Some(true) => Err(JobError::Cancelled),
        Some(false) => Ok(()),
    }
}

/// Exponential backoff with full jitter in the upper half: 1 s, 2 s, 4 s … ≤ 5 min.
pub fn backoff(attempt: usize) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(BACKOFF_CAP);
    let jitter = rand::random::<f64>() * 0.5 + 0.5;
    capped.mul_f64(jitter).max(Duration::from_millis(500))
}

/// When a failed attempt runs again: our backoff, or later when the upstream asked
/// for more time. Its `Retry-After` is a "not before", never a licence to go faster:
/// a `Retry-After: 0` would spend every attempt within milliseconds.
fn retry_delay(earlier_attempts: usize, upstream_hint: Option<Duration>) -> Duration {
    let ours = backoff(earlier_attempts);
    upstream_hint.map_or(ours, |hint| hint.max(ours)).min(BACKOFF_CAP)
}

/// The outcome to record for a run, logged; `None` when there is nothing to record.
/// Its text is made storable here (no NUL), whatever the handler met upstream.
pub fn outcome(meta: &JobMeta, kind: &str, result: Result<Value, JobError>) -> Option<Outcome> {
    let outcome = match result {
        Ok(value) => Outcome::Succeeded(storable_json(value)),
        Err(JobError::Permanent(error)) => Outcome::Permanent(storable(error)),
        Err(JobError::Cancelled) => Outcome::Cancelled,
        Err(JobError::Retry { message, after }) => {
            let delay = retry_delay(meta.earlier_attempts(), after);
            Outcome::Retryable { error: storable(message), delay }
        }
        Err(JobError::Again { note, after }) => Outcome::Again { note: storable(note), delay: after },
        Err(JobError::Recorded) => {
            tracing::info!(job_id = %meta.id, kind, "job succeeded");
            return None;
        }
        Err(JobError::Lost) => {
            crate::metrics::run_stopped("lost");
            tracing::warn!(job_id = %meta.id, kind, "run lost its job to a newer run; it stopped");
            return None;
        }
    };
    match &outcome {
        Outcome::Succeeded(_) => tracing::info!(job_id = %meta.id, kind, "job succeeded"),
        Outcome::Retryable { error, delay } => {
            tracing::warn!(job_id = %meta.id, kind, error, delay_ms = delay.as_millis() as u64, "job attempt failed")
        }
        Outcome::Permanent(error) => tracing::error!(job_id = %meta.id, kind, error, "job failed permanently"),
        Outcome::Cancelled => tracing::info!(job_id = %meta.id, kind, "job cancelled"),
        Outcome::Again { note, delay } => {
            tracing::debug!(job_id = %meta.id, kind, note, delay_ms = delay.as_millis() as u64, "job runs again")
        }
    }
    Some(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_hint_never_shortens_the_backoff() {
        for attempt in 0..6 {
            let floor = BACKOFF_BASE.saturating_mul(1 << attempt).mul_f64(0.5).max(Duration::from_millis(500));
            assert!(retry_delay(attempt, Some(Duration::ZERO)) >= floor, "Retry-After: 0 at attempt {attempt}");
            assert!(retry_delay(attempt, None) >= floor);
        }
        assert_eq!(retry_delay(0, Some(Duration::from_secs(30))), Duration::from_secs(30), "a longer hint holds");
        assert_eq!(retry_delay(0, Some(Duration::from_secs(3600))), BACKOFF_CAP);
    }

    #[test]
    fn outcome_text_is_made_storable() {
        let liveness = Arc::new(LeaseClock::new(Duration::from_secs(12)));
        let meta = JobMeta { id: "j".into(), fence: 1, rerun: false, worker: "w".into(), liveness, prefetched: None };
        let failed = outcome(&meta, "noop", Err(JobError::permanent("bad\0byte")));
        assert!(matches!(failed, Some(Outcome::Permanent(e)) if e == "badbyte"));
        let ok = outcome(&meta, "noop", Ok(serde_json::json!({"name": "a\0b"})));
        assert!(matches!(ok, Some(Outcome::Succeeded(v)) if v == serde_json::json!({"name": "ab"})));
    }
}
