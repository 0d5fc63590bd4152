//! The cost side of `availability`: warm instances (`idle + provisioning`) sampled
//! from `/api/pool/counts` every second and integrated over the trace.

use std::time::Duration;

use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

use super::harness::API_KEY;

/// How often the cost is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Warm instances (`idle + provisioning`) over the trace, from `/api/pool/counts`.
#[derive(Clone, Debug, Default)]
pub struct Cost {
    /// Warm instance-seconds: each sample's warm count times the time to the next one.
    pub warm_secs: f64,
    /// The window sampled (the trace's length).
    pub window: Duration,
    /// The largest `idle + provisioning` sampled.
    pub max_warm: i64,
    /// Samples with more than `max(POOL_MAX_WARM, waiting)` warm: over the ceiling,
    /// which gives way only to more waiting claims than it.
    pub over_ceiling: usize,
    /// Samples taken, and those whose request failed (the previous value was kept).
    pub samples: usize,
    pub missed: usize,
    /// The largest warm target (`buffer.target`) the counts reported, if any.
    pub max_target: Option<i64>,
    /// The most claims the counts showed `waiting` for an instance.
    pub max_waiting: Option<i64>,
}

impl Cost {
    pub fn warm_minutes(&self) -> f64 {
        self.warm_secs / 60.0
    }

    /// The average number of warm instances over the window.
    pub fn avg_warm(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 { self.warm_secs / secs } else { 0.0 }
    }
}

/// What the cost is made of, from one read of `/api/pool/counts`.
pub struct Counts {
    pub idle: i64,
    pub provisioning: i64,
    /// `buffer.target` and `waiting`, when the counts have them.
    pub target: Option<i64>,
    pub waiting: Option<i64>,
}

/// Reads `/api/pool/counts`; `None` when it does not answer 200 with the counts.
pub async fn counts(http: &reqwest::Client, web_url: &str) -> Option<Counts> {
    let response = http.get(format!("{web_url}/api/pool/counts")).bearer_auth(API_KEY).send().await.ok()?;
    let body: Value = response.error_for_status().ok()?.json().await.ok()?;
    Some(Counts {
        idle: body["idle"].as_i64()?,
        provisioning: body["provisioning"].as_i64()?,
        target: body["buffer"]["target"].as_i64(),
        waiting: body["waiting"].as_i64(),
    })
}

/// Samples the counts every second for `window` and integrates `idle + provisioning`,
/// checking each sample against `ceiling`; `timeline` prints every sample to stderr.
pub async fn sample_cost(
    http: &reqwest::Client,
    web_url: &str,
    window: Duration,
    ceiling: i64,
    timeline: bool,
) -> Cost {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut cost = Cost { window, ..Cost::default() };
    let mut last: Option<(f64, i64)> = None;
    loop {
        ticker.tick().await;
        let now = start.elapsed().min(window).as_secs_f64();
        let sample = counts(http, web_url).await;
        if let Some((at, warm)) = last {
            cost.warm_secs += warm as f64 * (now - at);
        }
        cost.samples += 1;
        match sample {
            Some(counts) => {
                let warm = counts.idle + counts.provisioning;
                if timeline {
                    eprintln!(
                        "  t={now:>5.1}s idle={} provisioning={} waiting={:?} target={:?}",
                        counts.idle, counts.provisioning, counts.waiting, counts.target
                    );
                }
                cost.max_warm = cost.max_warm.max(warm);
                cost.over_ceiling += usize::from(warm > ceiling.max(counts.waiting.unwrap_or(0)));
                cost.max_target = counts.target.max(cost.max_target);
                cost.max_waiting = counts.waiting.max(cost.max_waiting);
                last = Some((now, warm));
            }
            None => {
                cost.missed += 1;
                last = last.map(|(_, warm)| (now, warm));
            }
        }
        if now >= window.as_secs_f64() {
            return cost;
        }
    }
}
