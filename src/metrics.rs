//! Metrics. Worker processes add to shared counters in Postgres (upstream calls by
//! target and code, rate-limit waits), flushed every few seconds; the web process
//! renders one Prometheus page for the whole fleet at `/metrics`: those counters,
//! pool and job counts read at scrape time, and job run-time / queue-wait histograms
//! recorded from the job-finished notifications it already listens to.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::store::{instances, jobs};

/// Counter deltas of this process, not yet flushed: (name, labels) → delta.
static PENDING: OnceLock<Mutex<HashMap<(&'static str, String), f64>>> = OnceLock::new();

/// How often a worker writes its counter deltas.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

fn pending() -> &'static Mutex<HashMap<(&'static str, String), f64>> {
    PENDING.get_or_init(Default::default)
}

/// Adds `delta` to a fleet-wide counter; `labels` is Prometheus label syntax.
pub fn add(name: &'static str, labels: String, delta: f64) {
    if let Ok(mut map) = pending().lock() {
        *map.entry((name, labels)).or_default() += delta;
    }
}

/// One call to an upstream, by target and HTTP status (or `error` without one).
pub fn upstream_call(target: &str, status: Option<u16>) {
    let code = status.map_or_else(|| "error".to_owned(), |c| c.to_string());
    add("pool_upstream_calls_total", format!("target=\"{target}\",code=\"{code}\""), 1.0);
}

/// Time spent waiting for a rate limit before a call.
pub fn rate_limit_wait(limit: &str, waited: Duration) {
    add("pool_rate_limit_waits_total", format!("limit=\"{limit}\""), 1.0);
    add("pool_rate_limit_wait_seconds_total", format!("limit=\"{limit}\""), waited.as_secs_f64());
}

/// Writes pending deltas every few seconds until `stop`, and once more at the end.
pub async fn flush_loop(db: PgPool, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(FLUSH_EVERY) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let batch: Vec<_> = pending().lock().map(|mut m| m.drain().collect()).unwrap_or_default();
        for ((name, labels), delta) in batch {
            let result = sqlx::query(
                "INSERT INTO pool_counters (name, labels, value) VALUES ($1, $2, $3)
                 ON CONFLICT (name, labels) DO UPDATE SET value = pool_counters.value + EXCLUDED.value",
            )
            .bind(name)
            .bind(&labels)
            .bind(delta)
            .execute(&db)
            .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, name, "could not flush a counter; keeping it for later");
                add(name, labels, delta);
            }
        }
        if stopping {
            return;
        }
    }
}

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
        PrometheusBuilder::new()
            .set_buckets(&buckets)
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

/// Records a finished job from its notification payload
/// (`<id> <kind> <status> <queue wait ms> <run ms>`).
pub fn record_finished(payload: &str) {
    let fields: Vec<&str> = payload.split(' ').collect();
    let [_, kind, status, wait_ms, run_ms] = fields[..] else { return };
    let kind = kind.to_owned();
    metrics::counter!("pool_jobs_finished_total", "kind" => kind.clone(), "status" => status.to_owned()).increment(1);
    if let Ok(ms) = wait_ms.parse::<i64>()
        && ms >= 0
    {
        metrics::histogram!("pool_job_queue_wait_seconds", "kind" => kind.clone()).record(ms as f64 / 1000.0);
    }
    if let Ok(ms) = run_ms.parse::<i64>()
        && ms >= 0
    {
        metrics::histogram!("pool_job_run_seconds", "kind" => kind).record(ms as f64 / 1000.0);
    }
}

/// `(kind, state, jobs)`.
type KindTotal = (String, String, i64);

/// The full `/metrics` page: scrape-time gauges from the database, then the fleet
/// counters, then this process's recorder (histograms).
pub async fn render(db: &PgPool, min_idle: u32) -> sqlx::Result<String> {
    let counts = instances::counts(db).await?;
    let by_status = [
        ("provisioning", counts.provisioning),
        ("idle", counts.idle),
        ("claiming", counts.claiming),
        ("claimed", counts.claimed),
        ("crashed", counts.crashed),
        ("draining", counts.draining),
    ];
    let commit = option_env!("POOL_GIT_COMMIT").unwrap_or("unknown");
    let mut out = format!(
        "# HELP pool_build_info The running build.\n# TYPE pool_build_info gauge\n\
         pool_build_info{{version=\"{}\",commit=\"{commit}\"}} 1\n\
         # HELP pool_min_idle POOL_MIN_IDLE: idle + provisioning is kept at least this high.\n\
         # TYPE pool_min_idle gauge\npool_min_idle {min_idle}\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("# HELP pool_instances Instances by status.\n# TYPE pool_instances gauge\n");
    for (status, n) in by_status {
        out.push_str(&format!("pool_instances{{status=\"{status}\"}} {n}\n"));
    }
    // Rescue presumes a worker dead after 12 s of silence; the same horizon here.
    let workers = jobs::lifecycle::live_workers(db, std::time::Duration::from_secs(12)).await?;
    out.push_str("# HELP pool_workers_alive Worker processes whose heartbeat is recent.\n");
    out.push_str(&format!("# TYPE pool_workers_alive gauge\npool_workers_alive {workers}\n"));
    out.push_str("# HELP pool_jobs Jobs in the table by kind and status.\n# TYPE pool_jobs gauge\n");
    // Scrapes need no fresher totals than this; the table may be large.
    static TOTALS: crate::memo::Memo<Vec<KindTotal>> = crate::memo::Memo::new(Duration::from_secs(5));
    for (kind, state, n) in TOTALS.get_or_try(|| jobs::totals_by_kind(db)).await? {
        out.push_str(&format!("pool_jobs{{kind=\"{kind}\",status=\"{state}\"}} {n}\n"));
    }
    let counters: Vec<(String, String, f64)> =
        sqlx::query_as("SELECT name, labels, value FROM pool_counters ORDER BY name, labels").fetch_all(db).await?;
    let mut last = "";
    for (name, labels, value) in &counters {
        if name != last {
            out.push_str(&format!("# TYPE {name} counter\n"));
            last = name;
        }
        out.push_str(&format!("{name}{{{labels}}} {value}\n"));
    }
    handle().run_upkeep();
    out.push_str(&handle().render());
    Ok(out)
}
