//! Metrics. Every process records what it does (upstream calls, rate-limit waits,
//! jobs fetched and finished, claims answered) into [`pending`], and a flush loop
//! adds it to Postgres every few seconds: fleet-wide counters and histograms for
//! `/metrics`, and per-minute rows for the dashboard's charts ([`stats`]). Each event
//! is recorded once, by the process it happened in, so nothing is multiplied by the
//! number of replicas. HTTP requests are the exception: recorded per web process in
//! its own Prometheus recorder (they sum across replicas).

pub mod pending;
mod render;
pub mod stats;

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::sync::watch;

pub use pending::BUCKETS;
pub use render::render;

use crate::store::{self, JobState, jobs::lifecycle::Applied};

/// How long per-minute rows are kept: the charts show up to a day, and the forecast
/// reads the oldest row to know how far back Pool was running (a week, and a day).
const MINUTES_RETENTION: Duration = Duration::from_secs(8 * 24 * 3600);
/// How often per-minute rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// The pool's gauges for the charts are sampled at the first flush and then about this
/// often: a per-minute row, where the last sample wins.
const SAMPLE_EVERY: Duration = Duration::from_secs(30);

/// Metrics recorded as histograms (the rest are counters).
pub const HISTOGRAMS: [&str; 4] =
    ["pool_job_queue_wait_seconds", "pool_job_run_seconds", "pool_claim_seconds", "pool_lead_time_seconds"];

/// One call to an upstream, by target and HTTP status (or `error` without one).
pub fn upstream_call(target: &str, status: Option<u16>) {
    let code = status.map_or_else(|| "error".to_owned(), |c| c.to_string());
    pending::add("pool_upstream_calls_total", format!("target=\"{target}\",code=\"{code}\""), 1.0);
}

/// Time spent waiting for a rate limit before a call.
pub fn rate_limit_wait(limit: &str, waited: Duration) {
    pending::add("pool_rate_limit_waits_total", format!("limit=\"{limit}\""), 1.0);
    pending::add("pool_rate_limit_wait_seconds_total", format!("limit=\"{limit}\""), waited.as_secs_f64());
}

/// Jobs this worker started: `(kind, seconds from due to started)`.
pub fn jobs_started<'a>(started: impl IntoIterator<Item = (&'a str, f64)>) {
    pending::observe(
        started.into_iter().map(|(kind, wait)| ("pool_job_queue_wait_seconds", format!("kind=\"{kind}\""), wait)),
    );
}

/// Runs whose outcome this worker recorded. A claim job that succeeded also gives
/// the claim latency a person sees: from the request to the bound instance.
pub fn runs_recorded(applied: &[Applied]) {
    for run in applied.iter().filter(|run| run.state != JobState::Queued) {
        pending::add(
            "pool_jobs_finished_total",
            format!("kind=\"{}\",status=\"{}\"", run.kind, run.state.as_str()),
            1.0,
        );
    }
    pending::observe(applied.iter().flat_map(|run| {
        let claim = (run.kind == <crate::jobs::claim_and_provision::ClaimAndProvision as crate::jobs::Job>::KIND
            && run.state == JobState::Succeeded)
            .then(|| ("pool_claim_seconds", String::new(), run.age));
        [("pool_job_run_seconds", format!("kind=\"{}\"", run.kind), run.run_time)].into_iter().chain(claim)
    }));
}

/// An instance became idle `lead` after its row was created (the lead time).
pub fn instance_ready(lead: Duration) {
    pending::observe([("pool_lead_time_seconds", String::new(), lead.as_secs_f64())]);
}

/// A claim request answered: `served` (a job, or its finished document), `empty`
/// (503, no idle instance), or `rejected` (anything else).
pub fn claim_answered(status: u16) {
    let outcome = match status {
        200..=299 => "served",
        503 => "empty",
        _ => "rejected",
    };
    pending::add("pool_claims_total", format!("outcome=\"{outcome}\""), 1.0);
}

/// A run that stopped short: `lost` (a newer run holds its job: it writes nothing
/// more), `lease_lapsed` (its worker went unheard for half the rescue window: it
/// stopped at a safe point, to run again), or `dropped` (its job was taken from it
/// before its outcome was written).
pub fn run_stopped(reason: &'static str) {
    pending::add("pool_job_runs_stopped_total", format!("reason=\"{reason}\""), 1.0);
}

/// Running jobs a worker took back: of workers that stopped responding
/// (`silent_worker`), or its own that a lost commit left running (`lost_commit`).
pub fn taken_back(from: &'static str, jobs: i64) {
    pending::add("pool_jobs_taken_back_total", format!("from=\"{from}\""), jobs as f64);
}

/// A worker's lease lapsed: it fetched nothing until its heartbeat landed again.
pub fn lease_lapsed() {
    pending::add("pool_worker_lease_lapses_total", String::new(), 1.0);
}

/// A claim request met the pool: bound to an instance at once, or not (it waits in
/// line, or was turned away). The share bound at once is the service level.
pub fn claim_met(at_once: bool) {
    pending::add("pool_claim_binds_total", format!("at_once=\"{at_once}\""), 1.0);
}

/// Writes what this process recorded `every` (`METRICS_FLUSH_MS`) until `stop`, and
/// once more at the end. With `min_idle`, also samples the pool's gauges for the charts.
pub async fn flush_loop(db: PgPool, every: Duration, min_idle: Option<u32>, mut stop: watch::Receiver<bool>) {
    let rounds =
        |period: Duration| u32::try_from(period.as_millis() / every.as_millis().max(1)).unwrap_or(u32::MAX).max(1);
    let (sample_every, prune_every) = (rounds(SAMPLE_EVERY), rounds(PRUNE_EVERY));
    for round in 1u32.. {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        flush(&db).await;
        if let Some(min_idle) = min_idle
            && (stopping || (round - 1) % sample_every == 0)
            && let Err(err) = store::metrics::sample_pool(&db, min_idle).await
        {
            tracing::warn!(error = %err, "could not sample the pool for the charts");
        }
        if round % prune_every == 0
            && let Err(err) = store::metrics::prune_minutes(&db, MINUTES_RETENTION.as_secs_f64()).await
        {
            tracing::warn!(error = %err, "could not prune per-minute metrics");
        }
        if stopping {
            return;
        }
    }
}

async fn flush(db: &PgPool) {
    let batch = pending::take();
    if batch.is_empty() {
        return;
    }
    let counters = render::counter_rows(&batch);
    let counter_deltas: Vec<_> = counters
        .iter()
        .map(|(name, labels, value)| store::metrics::CounterDelta { name, labels, value: *value })
        .collect();
    let minutes: Vec<_> = batch
        .iter()
        .map(|((name, labels), d)| store::metrics::MinuteDelta {
            name,
            labels,
            count: d.count,
            sum: d.sum,
            buckets: d.buckets.as_deref(),
        })
        .collect();
    if let Err(err) = store::metrics::add(db, &counter_deltas, &minutes).await {
        tracing::warn!(error = %err, series = batch.len(), "could not write metrics; keeping them for later");
        pending::restore(batch);
    }
}

/// The process's Prometheus recorder (HTTP requests), installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("static buckets")
            .install_recorder()
            .expect("a single metrics recorder per process")
    })
}

/// Records one HTTP request of this web process.
pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    let (method, route) = (method.to_owned(), route.to_owned());
    metrics::counter!("pool_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("pool_http_request_seconds", "method" => method, "route" => route).record(took.as_secs_f64());
}
